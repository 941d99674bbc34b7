// Weighted round robin, smooth (NGINX's algorithm): a weight-3 and a weight-1 backend go A A B A,
// not A A A B, so bursts are interleaved.
import type { Candidate, LoadBalancer } from './load-balancer';

export class RoundRobin implements LoadBalancer {
  private readonly current = new Map<string, number>();

  pick<T extends Candidate>(candidates: readonly T[], _key: string): T {
    let total = 0;
    let best: T | undefined;
    let bestCurrent = -Infinity;
    for (const c of candidates) {
      const cur = (this.current.get(c.name) ?? 0) + c.weight;
      this.current.set(c.name, cur);
      total += c.weight;
      if (cur > bestCurrent) {
        best = c;
        bestCurrent = cur;
      }
    }
    this.current.set(best!.name, bestCurrent - total);
    return best!;
  }
}
