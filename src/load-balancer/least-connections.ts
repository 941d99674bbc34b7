// Least connections, weight-aware: the lowest (connections + 1) / weight wins (HAProxy's leastconn).
// `connections` is fleet-wide when shared state feeds it: this worker's own live tunnels (exact) plus
// the other workers' and machines' (as of the last sync, ~100 ms old).
//
// Stale counts make plain least-connections herd: during one sync interval every balancer sends its
// new tunnels to the same emptiest backend. The herding guard (`herdingGuard: p2c`, the default)
// compares two backends drawn at random instead of all of them (power of two choices, as HAProxy's
// random(2) and Traefik's p2c): balancers then disagree on the winner, while the least loaded of each
// pair still wins. test/load-balancer/herding.test.ts measures both.
//
// Ties are common (every backend at 0 after a restart); a full scan starts from a rotating index to
// spread them instead of piling the first burst onto the first backend.
import type { Candidate, LoadBalancer } from './load-balancer';

const score = (c: Candidate): number => ((c.connections ?? c.active) + 1) / c.weight;

export interface LeastConnectionsOptions {
  /** Compare two random candidates (p2c) rather than all. */
  twoChoices?: boolean;
  /** [0, 1) source for p2c; injectable for deterministic tests. */
  random?: () => number;
}

export class LeastConnections implements LoadBalancer {
  private start = 0;
  private readonly twoChoices: boolean;
  private readonly random: () => number;

  constructor(options: LeastConnectionsOptions = {}) {
    this.twoChoices = options.twoChoices ?? false;
    this.random = options.random ?? Math.random;
  }

  pick<T extends Candidate>(candidates: readonly T[], _key: string): T {
    const n = candidates.length;
    if (this.twoChoices && n > 2) {
      const i = Math.floor(this.random() * n);
      let j = Math.floor(this.random() * (n - 1));
      if (j >= i) j++;
      const a = candidates[i];
      const b = candidates[j];
      return score(b) < score(a) ? b : a;
    }
    const first = this.start++ % n;
    let best = candidates[first];
    let bestScore = score(best);
    for (let i = 1; i < n; i++) {
      const c = candidates[(first + i) % n];
      const s = score(c);
      if (s < bestScore) {
        best = c;
        bestScore = s;
      }
    }
    return best;
  }
}
