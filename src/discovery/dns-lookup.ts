// One DNS lookup of a pool's discovery name, with node:dns's Resolver (c-ares): A and AAAA with their
// TTLs, or SRV and then its targets' addresses. Knows nothing of pools or backends.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isSrvName, type DiscoveryConfig } from '../config/schema';
import type { Address, Answer } from './backend-set';

/** Answers that mean "no such record" rather than "could not ask". */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

export function createResolver(d: Pick<DiscoveryConfig, 'resolver' | 'timeout'>): Resolver {
  // tries: 2, so a lost UDP datagram is sent again once before the lookup fails.
  const resolver = new Resolver({ timeout: d.timeout, tries: 2 });
  if (d.resolver !== undefined) resolver.setServers(d.resolver);
  return resolver;
}

/** The addresses of `host` (A and AAAA) with the smallest TTL, seconds; an IP address is itself (TTL Infinity). */
async function addressesOf(resolver: Resolver, host: string): Promise<{ hosts: string[]; ttl: number }> {
  if (isIP(host) !== 0) return { hosts: [host], ttl: Infinity };
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(host, { ttl: true }), resolver.resolve6(host, { ttl: true })]);
  const records = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
  if (records.length === 0) {
    // Neither family answered: the A query's error says why (ENOTFOUND, ESERVFAIL, ETIMEOUT, ECONNREFUSED).
    const failed = [v4, v6].find((r): r is PromiseRejectedResult => r.status === 'rejected' && !NO_RECORDS.has((r.reason as NodeJS.ErrnoException).code ?? ''));
    throw (failed?.reason as Error | undefined) ?? ((v4 as PromiseRejectedResult).reason as Error | undefined) ?? new Error(`no A or AAAA record for ${host}`);
  }
  return { hosts: records.map((r) => r.address), ttl: Math.min(...records.map((r) => r.ttl)) };
}

/**
 * The name's addresses. A/AAAA: each with `port`. SRV: each target's addresses with the record's
 * port, the TTL being the targets' (c-ares gives no TTL for SRV records); a target that does not
 * resolve is left out, unless none does.
 */
export async function lookup(resolver: Resolver, d: Pick<DiscoveryConfig, 'dns' | 'port'>): Promise<Answer> {
  if (!isSrvName(d.dns)) {
    const { hosts, ttl } = await addressesOf(resolver, d.dns);
    return { addresses: hosts.map((host) => ({ host, port: d.port! })), ttl };
  }
  const records = await resolver.resolveSrv(d.dns);
  const targets = await Promise.allSettled(records.map((r) => addressesOf(resolver, r.name)));
  const addresses: Address[] = [];
  let ttl = Infinity;
  let failure: unknown;
  targets.forEach((t, i) => {
    if (t.status === 'rejected') return void (failure ??= t.reason);
    for (const host of t.value.hosts) addresses.push({ host, port: records[i].port });
    ttl = Math.min(ttl, t.value.ttl);
  });
  if (addresses.length === 0) throw (failure as Error | undefined) ?? new Error(`no SRV record for ${d.dns}`);
  return { addresses, ttl };
}
