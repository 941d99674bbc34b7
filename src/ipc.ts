// Messages between the primary and its workers (node:cluster IPC): below both, so either side imports it.
import type { ClientCount } from './client-limits';
import type { AdminState, BackendConfig } from './config/schema';
import type { MetricsJson } from './stats/metrics';
import type { HealthState } from './upstream/backend';

export type WorkerMessage =
  /** A worker's first message: it wants its config (a 'config' answer). */
  | { type: 'config-request' }
  /** `workerConnections`: the cap it applies; `descriptors`: its descriptor limit and what it held at start (undefined off Linux). */
  | { type: 'listening'; port: number; binding: string; workerConnections: number; descriptors?: { soft: number; hard: number; inUse: number } }
  | { type: 'listen-failed'; error: string }
  /** Just before a worker exits on its own (drained or retired): its counters, kept by the primary so totals never go back. */
  | { type: 'final-metrics'; metrics: MetricsJson }
  /** Sent before listening: the worker wants the backends' current state. */
  | { type: 'state-request' }
  /** Every sync interval when something changed: live tunnels per backend key, and passive health outcomes in order. */
  | { type: 'backend-report'; counts: Record<string, number>; outcomes: [key: string, ok: boolean][] }
  /** Every sync interval when it changed: this worker's client IPs near a limit (client-limits.ts). */
  | { type: 'client-report'; clients: ClientCount[] }
  | { type: 'metrics'; id: number; metrics: MetricsJson }
  /** The answer to a 'rebalance-close': how many tunnels it is closing (spread over the round's close window). */
  | { type: 'rebalance-closed'; pool: string; backend: string; closed: number };

/** What a worker needs to know of a backend it did not decide itself. */
export interface BackendView {
  key: string;
  health: HealthState;
  admin: AdminState;
  ejections: number;
  /** When it last became eligible (joined by a reload, or came back up), epoch ms; 0: since the start. Slow start ramps from it. */
  eligibleSince: number;
}

export type PrimaryMessage =
  /**
   * The validated config, as JSON (with the port the primary resolved, without the admin token).
   * Over IPC rather than the environment: Linux caps one environment string at 128 KiB, which a
   * config of a few thousand backends passes.
   */
  | { type: 'config'; json: string }
  | { type: 'drain'; timeoutMs: number }
  /**
   * After a reload, to the old generation: stop accepting, finish what is in flight (plain responses
   * get `Connection: close`), keep the tunnels until they end or `timeoutMs` passes, then drain.
   */
  | { type: 'retire'; timeoutMs: number }
  | { type: 'backend-state'; backends: BackendView[] }
  /** A pool with DNS discovery: its whole backend list now (the config's and the discovered, draining ones included); sent before the state that names them. */
  | { type: 'backends'; pool: string; backends: BackendConfig[] }
  /** Tunnels per backend key held by the machine's other workers and by other machines. */
  | { type: 'elsewhere'; counts: Record<string, number> }
  /** Per client IP near a limit, what the machine's other workers and the other machines hold. */
  | { type: 'clients-elsewhere'; clients: ClientCount[] }
  | { type: 'metrics-request'; id: number }
  | RebalanceClose;

/**
 * A rebalance round (src/primary/rebalancer.ts): close up to `count` tunnels of backend key `backend`
 * with 1012, spread over `windowMs`: only tunnels opened before `startedAt` and at least
 * `minTunnelAge` old; under hash (`members` given: the pool's eligible backends as
 * [name, weight, fleet tunnels]) only those whose key's home is now another backend.
 */
export interface RebalanceClose {
  type: 'rebalance-close';
  pool: string;
  backend: string;
  count: number;
  startedAt: number;
  minTunnelAge: number;
  windowMs: number;
  members: [name: string, weight: number, tunnels: number][] | null;
}

/**
 * Where a worker writes its log lines: the primary's stdout, passed on as this descriptor. The
 * worker's own stdout goes nowhere, so that nothing but JSON lines reaches the log: uWS prints debug
 * lines there with C stdio (`domain()`, which certificates chosen by SNI need: src/sni.ts).
 */
export const WORKER_LOG_FD = 4;
/** The workers' descriptors: stdin and stderr the primary's, stdout nowhere, the log on WORKER_LOG_FD. */
export const WORKER_STDIO = [0, 'ignore', 2, 'ipc', 1] as const;
/** Set by the primary to WORKER_LOG_FD; a worker started otherwise (bench/profile.ts) logs to its stdout. */
export const LOG_FD_ENV = 'SWITCHYARD_LOG_FD';

/** The environment variable carrying a worker's slot number (0..workers-1), its metrics label. */
export const WORKER_SLOT_ENV = 'SWITCHYARD_WORKER_SLOT';
/** How many workers its generation has (they share per-machine rates such as maxUpgradesPerSecond). */
export const WORKER_COUNT_ENV = 'SWITCHYARD_WORKER_COUNT';

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
