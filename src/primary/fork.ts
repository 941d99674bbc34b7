// The process side of the supervisor: worker processes forked with node:cluster. Kept apart so the
// supervisor's logic is tested with fake workers, and so one file says how a worker is started.
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import { ADMIN_TOKEN_ENV } from '../config/load';
import { LOG_FD_ENV, WORKER_COUNT_ENV, WORKER_LOG_FD, WORKER_SLOT_ENV, WORKER_STDIO } from '../ipc';
import type { Slot } from './worker-slots';

/** Once, before the first fork: what every worker runs and with which descriptors. */
export function setupWorkers(): void {
  // A 4 MiB young generation (V8's default grows to 16 MiB a semi-space): a burst of upgrades
  // otherwise leaves ~32 MiB of young-generation pages resident per worker, ~1.3 KB per tunnel at
  // 10k tunnels, for 0.6% more instructions per relayed message (bench/README.md).
  cluster.setupPrimary({ exec: join(__dirname, '../../workers/edge-worker.js'), execArgv: ['--max-semi-space-size=4', ...process.execArgv], stdio: [...WORKER_STDIO] });
}

/** Starts the worker process of `slot`; it asks for its config over IPC once it runs. */
export function forkWorker(slot: Slot): Worker {
  // undefined drops the variable from the worker's environment: the admin token stays in the primary.
  return cluster.fork({
    [LOG_FD_ENV]: String(WORKER_LOG_FD),
    [WORKER_SLOT_ENV]: String(slot.index),
    [WORKER_COUNT_ENV]: String(slot.generation.config.workerCount),
    [ADMIN_TOKEN_ENV]: undefined,
  });
}
