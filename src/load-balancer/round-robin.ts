// Weighted round robin, smooth (NGINX's algorithm): a weight-3 and a weight-1 backend go A A B A,
// not A A A B, so bursts are interleaved. Slow start uses the ramped weight, so a backend that came
// back gets a share of new tunnels that grows linearly to its full share.
import { Decision, type Candidate, type LoadBalancer } from './load-balancer';
import { slowStartFactor } from './slow-start';

export class RoundRobin implements LoadBalancer {
  decision: Decision = Decision.Balanced;
  private readonly current = new Map<string, number>();

  /** `slowStart`: ms; 0: off. */
  constructor(private readonly slowStart = 0) {}

  forget(name: string): void {
    this.current.delete(name);
  }

  pick<T extends Candidate>(candidates: readonly T[], _key: string | undefined, now: number): T {
    const slowStart = this.slowStart;
    let total = 0;
    let best: T | undefined;
    let bestCurrent = -Infinity;
    // With slow start: the pick full weights would make this turn (to count the picks the ramp changed).
    let full: T | undefined;
    let fullCurrent = -Infinity;
    for (const c of candidates) {
      const before = this.current.get(c.name) ?? 0;
      const weight = slowStart === 0 ? c.weight : c.weight * slowStartFactor(c.eligibleSince ?? 0, now, slowStart);
      const cur = before + weight;
      this.current.set(c.name, cur);
      total += weight;
      if (cur > bestCurrent) {
        best = c;
        bestCurrent = cur;
      }
      if (slowStart !== 0 && before + c.weight > fullCurrent) {
        full = c;
        fullCurrent = before + c.weight;
      }
    }
    this.current.set(best!.name, bestCurrent - total);
    this.decision = full !== undefined && full !== best ? Decision.SlowStart : Decision.Balanced;
    return best!;
  }
}
