// Time for the primary's roles, injected: the restart backoff, the reload's start timeout and the
// kill backstops run on it, so tests drive them with a manual clock instead of sleeping.

export interface Timers {
  now(): number;
  /** `unref`: the timer alone does not keep the process alive. */
  setTimeout(fn: () => void, ms: number, unref?: boolean): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: Date.now,
  setTimeout: (fn, ms, unref) => {
    const t = setTimeout(fn, ms);
    if (unref === true) t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout | undefined),
};

/** A worker past its drain deadline is killed this much later: the last close handshakes' margin. */
export const KILL_AFTER_MS = 3000;
