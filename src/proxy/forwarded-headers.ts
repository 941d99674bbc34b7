// Which request headers cross the balancer, for WebSocket upgrades and plain HTTP alike.
// End-to-end headers pass unchanged (Host, Cookie, Authorization, Origin, User-Agent, Sec-WebSocket-Protocol ...);
// hop-by-hop ones (RFC 9110 7.6.1, plus any the Connection header lists but Host) stop here;
// X-Forwarded-* and X-Real-IP are set.
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { header, headerCount, headerList, type ClientRequest } from '../client-request';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers',
  'transfer-encoding', 'upgrade', 'http2-settings',
]);
// Generated per hop by the balancer for the backend side, or set below.
const REPLACED = new Set([
  'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-accept',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip',
]);

// Both kinds in one set: one lookup per header (forwardedHeaders runs once per upgrade and request),
// and only for names of a length some dropped name has: a Set lookup hashes the name, which uWS
// hands over as a fresh string every request.
const DROPPED = new Set([...HOP_BY_HOP, ...REPLACED]);
const DROPPED_LENGTHS = new Uint8Array(64);
for (const name of DROPPED) DROPPED_LENGTHS[name.length] = 1;
const NOTHING_LISTED: readonly string[] = [];

/** Header pairs for the backend request; `bytes` as in ClientRequest: the head is written as latin1. */
export type ForwardedHeaders = [string, string][] & { bytes?: boolean };

/**
 * A peer address from uWS's raw bytes (`getRemoteAddress()`): IPv4 dotted, an IPv4-mapped IPv6
 * address as its IPv4, other IPv6 in RFC 5952's short form. uWS's own text form costs a `sprintf`
 * per request and prints IPv6 at full length (`0000:0000:...:0001`).
 */
export function formatPeerAddress(b: Uint8Array): string {
  if (b.length === 4) return ipv4(b, 0);
  if (b.length !== 16) return '';
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) mapped = b[i] === 0;
  if (mapped) return ipv4(b, 12);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  // The longest run of two or more zero groups (the first of equals) becomes "::".
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  return best < 0 ? hex(0, 8) : `${hex(0, best)}::${hex(best + bestLength, 8)}`;
}

// The last IPv4 peer formatted: consecutive requests mostly come from one address (a kept-alive
// connection, or a few fronting proxies), so formatting is usually one comparison.
let lastIpv4 = -1;
let lastIpv4Text = '';

function ipv4(b: Uint8Array, at: number): string {
  const key = ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
  if (key !== lastIpv4) {
    lastIpv4 = key;
    lastIpv4Text = `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  }
  return lastIpv4Text;
}

/** Peers allowed to speak for the client through X-Forwarded-For: addresses or CIDR ranges. */
export class TrustedProxies {
  private readonly list = new BlockList();
  private readonly empty: boolean;

  constructor(entries: readonly string[]) {
    this.empty = entries.length === 0;
    for (const entry of entries) {
      const [addr, bits] = entry.split('/');
      const family = isIPv6(addr) ? 'ipv6' : 'ipv4';
      if (!isIPv4(addr) && !isIPv6(addr)) throw new Error(`trustedProxies: "${entry}" is not an IP address or CIDR range`);
      if (bits === undefined) this.list.addAddress(addr, family);
      else this.list.addSubnet(addr, Number(bits), family);
    }
  }

  has(ip: string): boolean {
    if (this.empty || ip === '') return false;
    return this.list.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
  }
}

/**
 * The client's IP: the peer; behind a trusted proxy, the X-Forwarded-For list (every line, joined)
 * walked from the right past trusted addresses, as NGINX's realip with `real_ip_recursive on`: the
 * first untrusted address, or the leftmost when all are trusted. Whatever a client wrote to the left
 * of what the trusted proxies appended is never taken. An entry that is not an address ends the
 * walk at the last one that was.
 */
export function clientIp(req: ClientRequest, trusted: TrustedProxies): string {
  let ip = req.peerIp;
  if (!trusted.has(ip)) return ip;
  const xff = headerList(req, 'x-forwarded-for');
  for (let end = xff.length; end > 0; ) {
    const comma = xff.lastIndexOf(',', end - 1);
    const entry = xff.slice(comma + 1, end).trim();
    end = comma;
    if (entry === '') continue;
    if (isIP(entry) === 0) break;
    ip = entry;
    if (!trusted.has(ip)) break;
  }
  return ip;
}

/**
 * uWS hands header values, the path and the query over as text decoded from UTF-8, every byte that is
 * not UTF-8 replaced by U+FFFD; its getHeader() gives the first line of a header as its bytes
 * (latin1). For a request where a U+FFFD appears (the caller looks; a U+FFFD the client sent as
 * UTF-8 looks the same), the values become byte strings, those with U+FFFD read again by
 * `firstLine`. What cannot be read again is `altered`: a path or query, or a header sent twice.
 * Both builds trim bytes 0x80-0xFF from both ends of a value, as if they were spaces: that is
 * lost before JavaScript runs, and not seen here (docs: uWebSockets.js binding).
 */
export function recoverBytes(req: ClientRequest, firstLine: (name: string) => string): void {
  if (req.url.includes('\ufffd')) {
    req.altered = true;
    return;
  }
  for (const pair of req.headers) {
    if (!pair[1].includes('\ufffd')) pair[1] = utf8Bytes(pair[1]);
    else if (headerCount(req, pair[0]) === 1) pair[1] = firstLine(pair[0]);
    else {
      req.altered = true;
      return;
    }
  }
  req.url = utf8Bytes(req.url);
  req.bytes = true;
}

/** Text as the byte string of its UTF-8 encoding (ASCII stays as it is). */
function utf8Bytes(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** Headers for the backend request, as [name, value] pairs. */
export function forwardedHeaders(req: ClientRequest, trusted: TrustedProxies): ForwardedHeaders {
  const connection = headerList(req, 'connection').toLowerCase();
  // Usually one token (or nothing) that names no header beyond the hop-by-hop ones. Host is never
  // taken away (the backend would answer 400), and what the balancer sets is added after this.
  const connectionListed =
    connection === 'upgrade' || connection === '' || connection === 'keep-alive' || connection === 'close'
      ? NOTHING_LISTED
      : connection.split(',').map((s) => s.trim()).filter((t) => t !== 'host');
  const out: ForwardedHeaders = [];
  if (req.bytes === true) out.bytes = true;
  for (const pair of req.headers) {
    const name = pair[0];
    if ((DROPPED_LENGTHS[name.length] === 1 && DROPPED.has(name)) || (connectionListed.length !== 0 && connectionListed.includes(name))) continue;
    out.push(pair);
  }
  const fromTrusted = trusted.has(req.peerIp);
  const incomingXff = fromTrusted ? headerList(req, 'x-forwarded-for') : '';
  out.push(['x-forwarded-for', incomingXff !== '' ? `${incomingXff}, ${req.peerIp}` : req.peerIp]);
  const proto = fromTrusted ? header(req, 'x-forwarded-proto') : '';
  out.push(['x-forwarded-proto', proto !== '' ? proto : req.secure ? 'https' : 'http']);
  const fwdHost = fromTrusted ? header(req, 'x-forwarded-host') : '';
  out.push(['x-forwarded-host', fwdHost !== '' ? fwdHost : header(req, 'host')]);
  out.push(['x-real-ip', clientIp(req, trusted)]);
  return out;
}
