// PROXY protocol on the public listener (config listen.proxyProtocol): whose address a connection
// carries, and which peers may say so. Pure: the front (proxy-protocol-front.ts) hands in what it read.
import { ProxyProtocolRefusals, type Outcome } from './errors';
import type { TrustedProxies } from './proxy/forwarded-headers';

/**
 * The client address of a connection from `peer` whose PROXY header carried `carried` ('' when it
 * sent none), or why it must be closed: peers in trustedProxies must send a header and no other
 * peer may (the others are clients speaking for themselves, as with HAProxy's
 * `tcp-request connection expect-proxy layer4 if { src -f trusted }`). Without listen.proxyProtocol
 * no peer may send one (ProxyProtocolRefusals.notConfigured, in the listener).
 */
export function proxiedClient(peer: string, carried: string, trusted: TrustedProxies): string | Outcome {
  if (!trusted.has(peer)) return carried === '' ? peer : ProxyProtocolRefusals.untrustedPeer;
  return carried === '' ? ProxyProtocolRefusals.missingHeader : carried;
}
