// Pacing of new upgrades to one backend (a pool's maxUpgradesPerSecond), so that the clients of a
// backend that died, all reconnecting at once, reach its neighbours at a rate they can take rather
// than in one instant. Pure: the caller passes the time (and the randomness for Retry-After).
//
// A token bucket kept as GCRA (the generic cell rate algorithm of ATM, as NGINX's limit_req keeps
// it): one number, `tat`, the time at which the next upgrade may start on schedule. An upgrade that
// comes early waits until its turn, in a queue bounded in time (maxWaitMs; so in count too, by at
// most rate x maxWaitMs); past it, it is refused (503 with Retry-After). Each worker paces its
// own upgrades at its share of the rate (rate / workers, as NGINX divides per-worker limits): the
// kernel spreads connections evenly over the workers, and no upgrade waits on a round trip to the
// primary.

/** Upgrades that may start at once (the bucket's depth), as a fraction of a second's share. */
const BURST_SECONDS = 0.1;

export class UpgradePacer {
  /** When the next upgrade may start on schedule (ms). */
  private tat = 0;
  /** Milliseconds between two upgrades at this worker's share of the rate. */
  private readonly interval: number;
  /** How early an upgrade may start: the bucket's depth beyond one (burst - 1) x interval. */
  private readonly tolerance: number;

  /**
   * `ratePerSecond`: this worker's share of maxUpgradesPerSecond (> 0); `maxWaitMs`: the longest
   * an upgrade waits for its turn before it is refused.
   */
  constructor(
    ratePerSecond: number,
    readonly maxWaitMs: number,
  ) {
    this.interval = 1000 / ratePerSecond;
    const burst = Math.max(1, Math.ceil(ratePerSecond * BURST_SECONDS));
    this.tolerance = (burst - 1) * this.interval;
  }

  /**
   * An upgrade to this backend at `now` (ms): how long it waits before it may start (0: now), or -1
   * when the queue is full (its wait would pass maxWaitMs); a refused upgrade takes no turn.
   */
  schedule(now: number): number {
    const tat = this.tat > now ? this.tat : now;
    const wait = tat - this.tolerance - now;
    if (wait > this.maxWaitMs) return -1;
    this.tat = tat + this.interval;
    return wait > 0 ? wait : 0;
  }

  /**
   * Seconds for the Retry-After of an upgrade refused at `now`: until the queue has drained, and a
   * random part of as much again, so that the refused clients do not all come back in one second.
   */
  retryAfter(now: number, random: () => number): number {
    const base = Math.max(1, Math.ceil((this.tat - now) / 1000));
    return base + Math.floor(random() * (base + 1));
  }
}
