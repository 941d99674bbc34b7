// Messages between the primary and its workers (node:cluster IPC).

export type WorkerMessage =
  | { type: 'listening'; port: number; binding: string }
  | { type: 'listen-failed'; error: string }
  | { type: 'drained'; tunnelsLeft: number };

export type PrimaryMessage = { type: 'drain'; timeoutMs: number };

/** The environment variable carrying the validated config (JSON) to each worker. */
export const CONFIG_ENV = 'SWITCHYARD_CONFIG';

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
