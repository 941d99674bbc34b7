// Affinity by key (a client IP, a room, a user: hash-key.ts extracts it) by weighted rendezvous
// hashing (highest random weight): each key ranks every backend by hash(key, backend) and weight,
// and takes the best. Removing one of N backends moves only the keys that were on it (about 1/N),
// each to its second choice; adding one takes about 1/(N+1) of the keys, all from the others, and
// no key whose backend stayed moves. NGINX's ip_hash (hash modulo the server count) moves most keys
// when N changes.
//
// Bounded loads (Mirrokni, Thorup and Zadimoghaddam's consistent hashing with bounded loads, as
// HAProxy's hash-balance-factor and Envoy's hash_balance_factor): with `balanceFactor` set, a
// backend holding its share of balanceFactor x the pool's tunnels takes no new tunnel; the key goes
// to the next backend of its own ranking. A hot room spills over deterministically (every member
// past the bound goes to the same second backend) and comes back as the load falls.
//
// A request without a key is balanced by least-connections (`fallback`).
import { Decision, type Candidate, type LoadBalancer } from './load-balancer';
import type { LeastConnections } from './least-connections';
import { slowStartFactor } from './slow-start';

/** 32-bit FNV-1a of a string, then a murmur3 finaliser for avalanche. */
export function hash32(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** -1 / ln(u), u uniform in (0, 1) from hash(key, backend): a backend's rank for a key, before its weight. */
function spread(keyHash: number, backendName: string): number {
  return -1 / Math.log((hash32(backendName, keyHash) + 1) / 4294967297);
}

/** Weighted rendezvous score of a backend for a key: weight x -1/ln(u). The key's backends in descending score are its own order. */
export function rendezvousScore(key: string, backendName: string, weight: number): number {
  return weight * spread(hash32(key), backendName);
}

export interface HashOptions {
  /** Picks for requests without a key. */
  fallback: LeastConnections;
  /** > 1: bounded loads; 0: unbounded. */
  balanceFactor?: number;
  /** Slow start, ms; 0: off. */
  slowStart?: number;
}

export class Hash implements LoadBalancer {
  decision: Decision = Decision.Hashed;
  private readonly fallback: LeastConnections;
  private readonly balanceFactor: number;
  private readonly slowStart: number;

  constructor(options: HashOptions) {
    this.fallback = options.fallback;
    this.balanceFactor = options.balanceFactor ?? 0;
    this.slowStart = options.slowStart ?? 0;
  }

  pick<T extends Candidate>(candidates: readonly T[], key: string | undefined, now: number): T {
    if (key === undefined) {
      this.decision = Decision.Fallback;
      return this.fallback.pick(candidates, undefined, now);
    }
    const slowStart = this.slowStart;
    // Bounded loads: a backend may take a new tunnel while it holds fewer than
    // ceil(balanceFactor x (tunnels + 1) x weight / weights), where `tunnels` counts the live
    // tunnels of the candidates (the eligible backends with room, fleet-wide as last synced plus this
    // worker's exact own), the + 1 is the tunnel being placed, and weights are the candidates'
    // (ramped by slow start). The capacities sum to more than tunnels + 1, so some backend has room.
    let perWeight = Infinity;
    if (this.balanceFactor > 0) {
      let tunnels = 0;
      let weights = 0;
      for (const c of candidates) {
        tunnels += c.connections ?? c.active;
        weights += slowStart === 0 ? c.weight : c.weight * slowStartFactor(c.eligibleSince ?? 0, now, slowStart);
      }
      perWeight = (this.balanceFactor * (tunnels + 1)) / weights;
    }
    const keyHash = hash32(key);
    // One pass: the key's first backend, its first with room, and (slow start) the first by full weights.
    let best = candidates[0];
    let bestScore = -1;
    let open: T | undefined;
    let openScore = -1;
    let full = best;
    let fullScore = -1;
    for (const c of candidates) {
      const s = spread(keyHash, c.name);
      const weight = slowStart === 0 ? c.weight : c.weight * slowStartFactor(c.eligibleSince ?? 0, now, slowStart);
      const score = weight * s;
      if (score > bestScore) {
        best = c;
        bestScore = score;
      }
      if (score > openScore && (c.connections ?? c.active) < Math.ceil(perWeight * weight)) {
        open = c;
        openScore = score;
      }
      if (slowStart !== 0 && c.weight * s > fullScore) {
        full = c;
        fullScore = c.weight * s;
      }
    }
    if (open !== undefined && open !== best) {
      this.decision = Decision.Spilled;
      return open;
    }
    this.decision = slowStart !== 0 && full !== best ? Decision.SlowStart : Decision.Hashed;
    return best;
  }
}
