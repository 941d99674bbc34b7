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
//
// Slow start divides the score by the ramped weight (as HAProxy's eweight): a backend that came back
// empty holds at most its ramp's share of what it would hold at full weight, so it fills at about
// (tunnels per backend) / slowStart per second instead of taking every new tunnel at once.
import { Decision, type Candidate, type LoadBalancer } from './load-balancer';
import { slowStartFactor } from './slow-start';

const load = (c: Candidate): number => (c.connections ?? c.active) + 1;

export interface LeastConnectionsOptions {
  /** Compare two random candidates (p2c) rather than all. */
  twoChoices?: boolean;
  /** [0, 1) source for p2c; injectable for deterministic tests. */
  random?: () => number;
  /** Slow start, ms; 0: off. */
  slowStart?: number;
}

export class LeastConnections implements LoadBalancer {
  decision: Decision = Decision.Balanced;
  private start = 0;
  private readonly twoChoices: boolean;
  private readonly random: () => number;
  private readonly slowStart: number;

  constructor(options: LeastConnectionsOptions = {}) {
    this.twoChoices = options.twoChoices ?? false;
    this.random = options.random ?? Math.random;
    this.slowStart = options.slowStart ?? 0;
  }

  pick<T extends Candidate>(candidates: readonly T[], _key: string | undefined, now: number): T {
    const n = candidates.length;
    const slowStart = this.slowStart;
    this.decision = Decision.Balanced;
    if (this.twoChoices && n > 2) {
      const i = Math.floor(this.random() * n);
      let j = Math.floor(this.random() * (n - 1));
      if (j >= i) j++;
      const a = candidates[i];
      const b = candidates[j];
      const la = load(a) / a.weight;
      const lb = load(b) / b.weight;
      if (slowStart === 0) return lb < la ? b : a;
      const pick = lb / slowStartFactor(b.eligibleSince ?? 0, now, slowStart) < la / slowStartFactor(a.eligibleSince ?? 0, now, slowStart) ? b : a;
      if (pick !== (lb < la ? b : a)) this.decision = Decision.SlowStart;
      return pick;
    }
    const first = this.start++ % n;
    let best = candidates[first];
    let bestScore = load(best) / best.weight;
    if (slowStart === 0) {
      for (let i = 1; i < n; i++) {
        const c = candidates[(first + i) % n];
        const s = load(c) / c.weight;
        if (s < bestScore) {
          best = c;
          bestScore = s;
        }
      }
      return best;
    }
    // With slow start: the pick by ramped weights, and the one full weights would make (to count
    // the picks the ramp changed).
    let full = best;
    let fullScore = bestScore;
    bestScore /= slowStartFactor(best.eligibleSince ?? 0, now, slowStart);
    for (let i = 1; i < n; i++) {
      const c = candidates[(first + i) % n];
      const s = load(c) / c.weight;
      if (s < fullScore) {
        full = c;
        fullScore = s;
      }
      const ramped = s / slowStartFactor(c.eligibleSince ?? 0, now, slowStart);
      if (ramped < bestScore) {
        best = c;
        bestScore = ramped;
      }
    }
    if (best !== full) this.decision = Decision.SlowStart;
    return best;
  }
}
