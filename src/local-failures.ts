// A local resource failure (out of descriptors, ports or buffers: errors.ts LOCAL_RESOURCE_ERRORS) is
// the balancer's own, never a backend's: it is counted by cause and by what was being done, and
// logged at most once per interval per cause and operation, with how many were held back, so that a
// storm of them costs a line per interval, not one per upgrade. The same in the primary (health
// checks, forks, the admin listener) and in workers (connects, accepts).
import type { LocalResourceError } from './errors';
import { LogThrottle } from './log-throttle';
import type { Logger } from './log';
import { counters } from './stats/counters';

/** What the balancer was doing when it ran out. */
export const LOCAL_FAILURE_OPS = ['backend_connect', 'http_connect', 'health_check', 'accept', 'fork'] as const;
export type LocalFailureOp = (typeof LOCAL_FAILURE_OPS)[number];

/** At most one line per cause and operation in this long. */
const LOG_INTERVAL_MS = 10_000;

const HINTS: Record<LocalResourceError, string> = {
  EMFILE: 'the process is at its descriptor limit: raise LimitNOFILE / ulimit -n, or lower workerConnections',
  ENFILE: 'the system is at its descriptor limit (fs.file-max)',
  ENOBUFS: 'the kernel is short of socket buffers',
  ENOMEM: 'the kernel is short of memory',
  EADDRNOTAVAIL: 'no local port is free for a new backend connection (net.ipv4.ip_local_port_range, TIME_WAIT)',
};

let log: Logger | undefined;
const throttle = new LogThrottle(LOG_INTERVAL_MS);

/** The process's logger; until bound, failures are counted only. */
export function bindLocalFailureLog(logger: Logger): void {
  log = logger;
}

/**
 * Counts one local failure and logs it unless a line for the same cause and operation went out less
 * than LOG_INTERVAL_MS ago; the next line that goes out says how many were held back.
 */
export function reportLocalFailure(cause: LocalResourceError, op: LocalFailureOp, fields: Record<string, unknown> = {}): void {
  const key = `${cause} ${op}`;
  counters.localFailures[key] = (counters.localFailures[key] ?? 0) + 1;
  const heldBack = throttle.pass(key);
  if (heldBack !== undefined) log?.warn({ cause, op, ...fields, heldBack, hint: HINTS[cause] }, 'local resource failure (not counted against any backend)');
}
