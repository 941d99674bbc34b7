// A local resource failure (out of descriptors, ports or buffers: errors.ts LOCAL_RESOURCE_ERRORS) is
// the balancer's own, never a backend's: it is counted by cause and by what was being done, and
// logged once per interval with how many happened, so that a storm of them costs one line, not one
// per upgrade. Works the same in the primary (health checks) and in workers (connects, accepts).
import type { LocalResourceError } from './errors';
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

/**
 * Lets one event through per interval and counts the rest (pure: the caller passes the time).
 */
export class Throttle {
  private windowEnd = -Infinity;
  private held = 0;

  constructor(private readonly intervalMs: number) {}

  /** True when this event opens a new interval (log it); otherwise it is counted as held. */
  admit(now: number): boolean {
    if (now >= this.windowEnd) {
      this.windowEnd = now + this.intervalMs;
      return true;
    }
    this.held++;
    return false;
  }

  /** Events held since the last call. */
  takeHeld(): number {
    const held = this.held;
    this.held = 0;
    return held;
  }
}

let log: Logger | undefined;
const throttles = new Map<string, Throttle>();

/** The process's logger; until bound, failures are counted only. */
export function bindLocalFailureLog(logger: Logger): void {
  log = logger;
}

/**
 * Counts one local failure and logs it unless a line for the same cause and operation went out less
 * than LOG_INTERVAL_MS ago; a held line is reported with its count at the end of that interval.
 */
export function reportLocalFailure(cause: LocalResourceError, op: LocalFailureOp, fields: Record<string, unknown> = {}): void {
  const key = `${cause} ${op}`;
  counters.localFailures[key] = (counters.localFailures[key] ?? 0) + 1;
  let throttle = throttles.get(key);
  if (throttle === undefined) throttles.set(key, (throttle = new Throttle(LOG_INTERVAL_MS)));
  const now = Date.now();
  if (!throttle.admit(now)) return;
  log?.warn({ cause, op, ...fields, hint: HINTS[cause] }, 'local resource failure (not counted against any backend)');
  // The ones held back in this interval get one line when it ends.
  setTimeout(flushHeld, LOG_INTERVAL_MS, cause, op, throttle).unref();
}

function flushHeld(cause: LocalResourceError, op: LocalFailureOp, throttle: Throttle): void {
  const held = throttle.takeHeld();
  if (held > 0) log?.warn({ cause, op, count: held, intervalMs: LOG_INTERVAL_MS, hint: HINTS[cause] }, 'local resource failures since the last line');
}
