// The primary's bookkeeping of its workers, as pure functions the supervisor calls: slots and
// generations, the restart backoff, when a reload is refused, and which retiring generations are
// past maxRetiringGenerations. No process, no timer, no I/O: each is unit-tested on its own.
import type { Worker } from 'node:cluster';
import type { LoadedConfig } from '../config/load';

const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 30_000;
/** A worker that lived this long is healthy: its slot's backoff starts over. */
export const STABLE_AFTER_MS = 30_000;

/** One set of workers started from one config: the first at startup, a new one at each reload. */
export interface Generation {
  id: number;
  config: LoadedConfig;
  /** The config as the workers get it (JSON, with the port the primary resolved). */
  workerConfig: string;
}

/** Generation `id` of `config`; the workers' copy has the resolved port and none of the admin token. */
export function newGeneration(id: number, config: LoadedConfig, port: number): Generation {
  const c = config;
  // The admin token stays in the primary: workers never need it.
  const workerConfig = JSON.stringify({ ...c, listen: { ...c.listen, port }, admin: { ...c.admin, token: undefined, tokenFile: undefined }, adminToken: undefined, workerCount: undefined, certificates: undefined });
  return { id, config, workerConfig };
}

/** One worker's place: its number (the metrics label), its generation, and the process in it now. */
export interface Slot {
  index: number;
  generation: Generation;
  /**
   * current: serving, restarted when it dies; starting: forked by a reload that has not finished;
   * retiring: an old generation's, finishing its tunnels; abandoned: a failed reload's, killed.
   */
  role: 'current' | 'starting' | 'retiring' | 'abandoned';
  worker: Worker | null;
  startedAt: number;
  failures: number;
  /** The pending restart (a handle of the supervisor's timers). */
  restartTimer?: unknown;
  listening: boolean;
  restarts: number;
}

/** A generation's slots, one per worker, none forked yet. */
export function newSlots(g: Generation, role: Slot['role']): Slot[] {
  return Array.from({ length: g.config.workerCount }, (_, index) => ({ index, generation: g, role, worker: null, startedAt: 0, failures: 0, listening: false, restarts: 0 }));
}

/**
 * How long to wait before restarting the worker of `slot`, which just died at `now`: 100 ms,
 * doubling per consecutive crash up to 30 s; a worker that had lived STABLE_AFTER_MS starts over.
 * Counts the crash on the slot.
 */
export function nextRestartDelay(slot: Pick<Slot, 'startedAt' | 'failures'>, now: number): number {
  if (now - slot.startedAt > STABLE_AFTER_MS) slot.failures = 0;
  const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** slot.failures);
  slot.failures++;
  return delay;
}

/** Why a reload cannot start now (the operator's line), or undefined when it can. */
export function reloadRefusal(s: {
  ready: boolean;
  shuttingDown: boolean;
  canLoad: boolean;
  /** Workers of a reload still starting. */
  starting: number;
  /** Retiring workers told to close their tunnels now, not yet gone. */
  closingNow: number;
  config: Pick<LoadedConfig, 'maxRetiringGenerations' | 'drainTimeout'>;
}): string | undefined {
  if (!s.ready || s.shuttingDown) return 'switchyard is starting or stopping';
  if (!s.canLoad) return 'no config to reload';
  if (s.starting > 0) return 'a reload is already in progress';
  if (s.closingNow > 0) {
    return `old workers told by an earlier reload to close their tunnels (more than maxRetiringGenerations: ${s.config.maxRetiringGenerations}) are still closing them, for at most drainTimeout (${s.config.drainTimeout / 1000}s); try again then`;
  }
  return undefined;
}

/**
 * The retiring generations past `maxRetiringGenerations` (the oldest first) and their slots still
 * finishing tunnels: those are to close their tunnels now. Slots already told are left out.
 */
export function overRetiringCap<S extends Pick<Slot, 'role' | 'generation'>>(retiring: Iterable<S>, closingNow: ReadonlySet<S>, maxRetiringGenerations: number): { generations: number[]; slots: S[] } {
  const finishing = [...retiring].filter((s) => s.role === 'retiring' && !closingNow.has(s));
  const ids = [...new Set(finishing.map((s) => s.generation.id))].sort((a, b) => a - b);
  const generations = ids.slice(0, Math.max(0, ids.length - maxRetiringGenerations));
  return { generations, slots: finishing.filter((s) => generations.includes(s.generation.id)) };
}
