// At most one log line per key and interval: a script hammering the admin listener with a wrong
// token, or a storm of local resource failures, must not flood the log. The line that passes says
// how many were held back. Pure: the clock is injected; keys are a bounded set.
export class LogThrottle {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** undefined: stay quiet this time; else log, noting this many lines held back since the last one. */
  pass(key: string): number | undefined {
    const t = this.now();
    const entry = this.last.get(key);
    if (entry !== undefined && t - entry.at < this.intervalMs) {
      entry.held++;
      return undefined;
    }
    const held = entry?.held ?? 0;
    this.last.set(key, { at: t, held: 0 });
    return held;
  }
}
