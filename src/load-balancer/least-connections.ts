// Least connections, weight-aware: the lowest (active + 1) / weight wins (HAProxy's leastconn).
// Ties are common (every backend at 0 after a restart); scanning from a rotating start spreads
// them instead of piling the first burst onto the first backend.
import type { Candidate, LoadBalancer } from './load-balancer';

export class LeastConnections implements LoadBalancer {
  private start = 0;

  pick<T extends Candidate>(candidates: readonly T[], _key: string): T {
    const n = candidates.length;
    const first = this.start++ % n;
    let best = candidates[first];
    let bestScore = (best.active + 1) / best.weight;
    for (let i = 1; i < n; i++) {
      const c = candidates[(first + i) % n];
      const score = (c.active + 1) / c.weight;
      if (score < bestScore) {
        best = c;
        bestScore = score;
      }
    }
    return best;
  }
}
