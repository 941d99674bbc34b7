// One DNS lookup of a pool's DNS source, with node:dns's Resolver (c-ares): A and AAAA with their
// TTLs, or SRV (RFC 2782 priority and weight) and then its targets' addresses. Knows nothing of pools or backends.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isSrvName, type LookupSettings } from '../config/schema';
import type { Address, Answer } from './backend-set';

/** Answers that mean "no such record" rather than "could not ask". */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

/** tries: 2 by default, so a lost UDP datagram is sent again once before the lookup fails. */
export function createResolver(d: Pick<LookupSettings, 'resolver' | 'timeout'>, tries = 2): Resolver {
  const resolver = new Resolver({ timeout: d.timeout, tries });
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
 * SRV weights as backend weights (1..256), keeping their ratios: as they are when none is above 256
 * (0, "rarely", counts as 1), else scaled so the largest is 256.
 */
export function srvWeights(weights: readonly number[]): number[] {
  const max = Math.max(0, ...weights);
  const scale = max > 256 ? 256 / max : 1;
  return weights.map((w) => Math.max(1, Math.round(w * scale)));
}

/**
 * The name's addresses. A/AAAA: each with `port`. SRV: as RFC 2782 says, only the targets of the
 * lowest priority value that has an address (a priority whose targets all fail to resolve gives way
 * to the next), each address with its record's port and weight; the TTL is the targets' (c-ares
 * gives no TTL for SRV records).
 */
export async function lookup(resolver: Resolver, d: { dns: string; port?: number | undefined }): Promise<Answer> {
  if (!isSrvName(d.dns)) {
    const { hosts, ttl } = await addressesOf(resolver, d.dns);
    return { addresses: hosts.map((host) => ({ host, port: d.port! })), ttl };
  }
  const records = await resolver.resolveSrv(d.dns);
  const priorities = [...new Set(records.map((r) => r.priority))].sort((x, y) => x - y);
  let failure: unknown;
  for (const priority of priorities) {
    const group = records.filter((r) => r.priority === priority);
    const weights = srvWeights(group.map((r) => r.weight));
    const targets = await Promise.allSettled(group.map((r) => addressesOf(resolver, r.name)));
    const addresses: Address[] = [];
    let ttl = Infinity;
    targets.forEach((t, i) => {
      if (t.status === 'rejected') return void (failure ??= t.reason);
      for (const host of t.value.hosts) addresses.push({ host, port: group[i].port, weight: weights[i] });
      ttl = Math.min(ttl, t.value.ttl);
    });
    if (addresses.length !== 0) return { addresses, ttl };
  }
  throw (failure as Error | undefined) ?? new Error(`no SRV record for ${d.dns}`);
}
