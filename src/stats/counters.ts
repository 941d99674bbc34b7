// Per-worker counters, bumped on the hot path as plain integer increments (no labels, no calls).
// The metrics layer (src/stats/metrics.ts: prom-client, aggregated over workers) reads and
// publishes them at scrape time; nothing on the per-message path talks to it directly.
import { OutcomeLabels, Outcomes, ProxyProtocolRefusals, type Outcome } from '../errors';

/** Who started a tunnel's close: the client, the backend, or the balancer itself (limits, drain, dead peer). */
export const CLOSE_SIDES = ['client', 'backend', 'balancer'] as const;
export type CloseSide = (typeof CLOSE_SIDES)[number];

/**
 * Close-code label values, bounded: each code of the 1000-1015 range as itself, application codes
 * by class. 1005 = closed without a code, 1006 = connection lost without a close frame.
 */
export const CLOSE_CODE_LABELS = [...Array.from({ length: 16 }, (_, i) => String(1000 + i)), '3xxx', '4xxx', 'other'] as const;

/** Index into CLOSE_CODE_LABELS for a close code. */
export function closeCodeIndex(code: number): number {
  if (code >= 1000 && code <= 1015) return code - 1000;
  if (code >= 3000 && code <= 3999) return 16;
  if (code >= 4000 && code <= 4999) return 17;
  return 18;
}

/** Status-class label values, bounded; statuses outside 100-599 (which a backend may send) are "other". */
export const STATUS_CLASS_LABELS = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'] as const;

export const counters = {
  /** Upgrade attempts by outcome label (errors.ts), plus "ok" for tunnels opened. */
  upgrades: Object.fromEntries([[OutcomeLabels.ok, 0], ...Object.values(Outcomes).map((o) => [o.label, 0])]) as Record<string, number>,
  /**
   * Plain HTTP requests by outcome label (errors.ts), plus "ok" (a backend's response head was relayed)
   * and "client_gone" (the client left before any answer).
   */
  httpRequests: Object.fromEntries([[OutcomeLabels.ok, 0], [OutcomeLabels.clientGone, 0], ...Object.values(Outcomes).map((o) => [o.label, 0])]) as Record<string, number>,
  /** Responses to plain HTTP requests by status / 100 (0-9): the index is the status's first digit, no lookup. */
  httpResponses: new Array<number>(10).fill(0),
  messagesToBackend: 0,
  bytesToBackend: 0,
  messagesToClient: 0,
  bytesToClient: 0,
  /** Times a slow client made the balancer stop reading a backend. */
  backendReadsPaused: 0,
  /** Tunnels closed because the backend could not keep up (1013) / the client could not (send dropped). */
  slowBackendCloses: 0,
  slowClientCloses: 0,
  /** Tunnels closed with 1009 for a message over maxPayload from the client / from the backend (messageAssemblyLimit counts its own). */
  tooBigFromClient: 0,
  tooBigFromBackend: 0,
  /** Tunnels closed because the backend stopped answering pings / uWS timed out an unresponsive client. */
  idleBackendCloses: 0,
  idleClientCloses: 0,
  /** Client connections closed for their PROXY protocol header (or its absence), by errors.ts label. */
  proxyProtocolRefused: Object.fromEntries(Object.values(ProxyProtocolRefusals).map((o) => [o.label, 0])) as Record<string, number>,
  /** Local resource failures by "CAUSE op" (local-failures.ts): a handful of keys, made on first use. */
  localFailures: {} as Record<string, number>,
  /** Closed tunnels by [side * CLOSE_CODE_LABELS.length + closeCodeIndex(code)]. */
  closes: new Array<number>(CLOSE_SIDES.length * CLOSE_CODE_LABELS.length).fill(0),
};

/** Counts a finished tunnel by who closed first and with which code (once per tunnel, not per message). */
export function countClose(side: CloseSide, code: number): void {
  counters.closes[CLOSE_SIDES.indexOf(side) * CLOSE_CODE_LABELS.length + closeCodeIndex(code)]++;
}

/** The balancer answered a plain HTTP request itself (once per request, never on the relayed path). */
export function countHttpAnswer(outcome: Outcome): void {
  counters.httpRequests[outcome.label]++;
  counters.httpResponses[(outcome.status / 100) | 0]++;
}

/** Answers after which an HTTP/1.1 connection stays open for another request: plain responses and refused upgrades. */
export function keptAliveAnswers(): number {
  let n = 0;
  for (const c of counters.httpResponses) n += c;
  for (const label in counters.upgrades) if (label !== OutcomeLabels.ok) n += counters.upgrades[label];
  return n;
}
