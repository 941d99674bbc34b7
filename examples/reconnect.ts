// When a chat client tries again after its connection closed or its upgrade was refused: jittered
// exponential backoff, and never sooner than a Retry-After the balancer sent. Pure (randomness
// injected). examples/chat.html carries the same rules in its own script; a browser never shows a
// page the status or headers of a refused WebSocket handshake, so only clients that see the HTTP
// answer (this Node client, native apps) can honour Retry-After.

/** The first wait; each failed attempt in a row doubles it, up to MAX_MS. */
export const BASE_MS = 1000;
export const MAX_MS = 30_000;

/**
 * Milliseconds to wait before attempt number `failures` + 1 (`failures`: attempts that failed in a
 * row, 0 after a connection that had opened): a random point of the upper half of
 * min(MAX_MS, BASE_MS x 2^failures), so clients that lost their connections together come back
 * spread over the window, not in step. `retryAfterS`: the balancer's Retry-After, when the client saw one.
 */
export function reconnectDelay(failures: number, random: () => number, retryAfterS?: number): number {
  const ceiling = Math.min(MAX_MS, BASE_MS * 2 ** Math.min(failures, 16));
  const backoff = ceiling * (0.5 + random() / 2);
  if (retryAfterS === undefined || !(retryAfterS > 0)) return backoff;
  // Retry-After says when, at the earliest; the balancer already jittered it. Up to one more second of
  // our own keeps clients told the same second from arriving in the same millisecond.
  return Math.max(backoff, retryAfterS * 1000 + random() * 1000);
}

/** Retry-After in seconds from a header value (delta-seconds; an HTTP date is not worth a chat client's trouble). */
export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d{1,6}$/.test(text.trim())) return undefined;
  return Number(text.trim());
}
