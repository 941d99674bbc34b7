// Client-IP affinity by weighted rendezvous hashing (highest random weight): each client IP ranks
// every backend by hash(ip, backend) and takes the best. Removing one of N backends moves only the
// clients that were on it (about 1/N), and a failed backend's clients fall to their second choice.
// NGINX's ip_hash (hash of the /24 modulo the server count) moves most clients when N changes.
import type { Candidate, LoadBalancer } from './load-balancer';

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

/** Weighted rendezvous score: -weight / ln(u) with u uniform in (0, 1) from the hash. */
export function rendezvousScore(key: string, backendName: string, weight: number): number {
  const h = hash32(backendName, hash32(key));
  const u = (h + 1) / 4294967297;
  return -weight / Math.log(u);
}

export class IpHash implements LoadBalancer {
  pick<T extends Candidate>(candidates: readonly T[], key: string): T {
    let best = candidates[0];
    let bestScore = -1;
    for (const c of candidates) {
      const score = rendezvousScore(key, c.name, c.weight);
      if (score > bestScore) {
        best = c;
        bestScore = score;
      }
    }
    return best;
  }
}
