// Messages between the primary and its workers (node:cluster IPC).
import type { MetricsJson } from '../stats/metrics';

export type WorkerMessage =
  | { type: 'listening'; port: number; binding: string }
  | { type: 'listen-failed'; error: string }
  | { type: 'drained'; tunnelsLeft: number }
  | { type: 'metrics'; id: number; metrics: MetricsJson };

export type PrimaryMessage = { type: 'drain'; timeoutMs: number } | { type: 'metrics-request'; id: number };

/** The environment variable carrying the validated config (JSON) to each worker. */
export const CONFIG_ENV = 'SWITCHYARD_CONFIG';
/** The environment variable carrying a worker's slot number (0..workers-1), its metrics label. */
export const WORKER_SLOT_ENV = 'SWITCHYARD_WORKER_SLOT';

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
