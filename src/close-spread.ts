// Spreading the closes of many tunnels over time (closeSpread), as HAProxy's close-spread-time:
// when the balancer itself ends its tunnels (drain on SIGTERM, old workers at the end of
// retireTimeout after a reload), their clients reconnect as they are closed, so closing them all in
// one instant sends all of them back at once. The schedule is pure (randomness injected); the
// driver is one timer chain for all the tunnels of a worker.

/** How long a close handshake may take: the tunnel cuts a backend off after it, and a drain leaves it after the last close. */
export const CLOSE_HANDSHAKE_MS = 2000;

/** A worker closes at least this many tunnels a second: a handful of tunnels do not wait the whole window. */
export const MIN_CLOSES_PER_SECOND = 50;

/** The longest window: closeSpread, bounded by what the drain's timeout leaves after the last close handshake. */
export function fullCloseWindow(closeSpread: number, drainTimeout: number): number {
  return Math.max(0, Math.min(closeSpread, drainTimeout - CLOSE_HANDSHAKE_MS));
}

/**
 * The window over which one worker spreads the closes of `n` tunnels: the full window, shorter when
 * `n` is so small that they would close slower than MIN_CLOSES_PER_SECOND.
 */
export function closeWindow(n: number, closeSpread: number, drainTimeout: number): number {
  return Math.min(fullCloseWindow(closeSpread, drainTimeout), (n / MIN_CLOSES_PER_SECOND) * 1000);
}

/**
 * When (ms from the start, ascending) each of `n` closes happens: the window cut into n equal slots,
 * each close at a random moment of its own slot (stratified jitter). Even: no second holds more
 * than its share and one; jittered: no fixed rhythm that clients would reconnect in step with.
 */
export function closeTimes(n: number, windowMs: number, random: () => number): number[] {
  const slot = windowMs / n;
  const times = new Array<number>(n);
  for (let i = 0; i < n; i++) times[i] = (i + random()) * slot;
  return times;
}

/** Timers closer than this are one batch: at thousands of closes a second, one timer per close is waste. */
const BATCH_MS = 10;

/**
 * Calls `close` on each of `items` at its time of `times` (ms from now, ascending); returns a
 * function that stops what is left.
 */
export function spreadCloses<T>(items: readonly T[], times: readonly number[], close: (item: T) => void): () => void {
  const start = performance.now();
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  const step = (): void => {
    const elapsed = performance.now() - start;
    while (next < items.length && times[next] <= elapsed) close(items[next++]);
    if (next < items.length) timer = setTimeout(step, Math.max(BATCH_MS, times[next] - elapsed));
  };
  step();
  return () => clearTimeout(timer);
}
