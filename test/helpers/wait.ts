// Waiting on conditions and promises with deadlines. Nothing here sleeps to "let things settle"
// as an assertion: every wait ends as soon as its condition holds, or fails with a message.
import { setTimeout as delay } from 'node:timers/promises';

export { delay };

export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`timed out after ${ms} ms waiting for ${what}`);
    this.name = 'TimeoutError';
  }
}

/** Polls `check` until it returns a truthy value (returned) or `timeoutMs` passes (throws). */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs: number,
  what = 'condition',
  intervalMs = 20,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const e = new TimeoutError(what, timeoutMs);
      if (lastError instanceof Error) e.message += ` (last error: ${lastError.message})`;
      throw e;
    }
    await delay(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}

/** Resolves/rejects like `promise`, or rejects with a TimeoutError after `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what = 'promise'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits until `read()` stops changing (by at most `tolerance`) for `stableMs`, bounded by `timeoutMs`.
 * Returns the settled value; throws if it never settles.
 */
export async function waitStable(
  read: () => number,
  { stableMs, timeoutMs, tolerance = 0, what = 'value to settle' }: { stableMs: number; timeoutMs: number; tolerance?: number; what?: string },
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await delay(50);
    const now = read();
    if (Math.abs(now - last) > tolerance) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= stableMs) {
      return now;
    }
  }
  throw new TimeoutError(`${what} (last ${last})`, timeoutMs);
}
