// Reloads, as NGINX does them: read the config again; if it is valid, start a new generation of
// workers with it next to the old one (both listen on the port: SO_REUSEPORT), and once every new
// worker listens, retire the old ones. One reload at a time; a config that does not validate, or
// new workers that do not start, change nothing that runs.
import type { ReloadResult } from '../admin/admin-api';
import { checkReloadable, ConfigError, type LoadedConfig } from '../config/load';
import type { Logger } from '../log';
import { countReload } from '../stats/metrics';
import { announceCertificates, warnIfQueuesDrop } from './announce';
import type { Supervisor } from './supervisor';
import { reloadRefusal } from './worker-slots';

/** How long a reload waits for its new workers to listen before giving up (the old ones keep serving). */
export const RELOAD_START_TIMEOUT_MS = 15_000;

export interface ReloaderOptions {
  supervisor: Supervisor;
  /** Health checks and fleet state follow the new pools from the start of the reload, back if it fails. */
  coordination: { reconfigure(config: LoadedConfig): void };
  /** Reads the config again (the same file and flags); without it, reloads are refused. */
  loadNext: (() => LoadedConfig) | undefined;
  log: Logger;
  /** Hands the new config to the parts that outlive a generation (the primary's metrics). */
  applied(config: LoadedConfig): void;
  startTimeoutMs?: number;
}

export class Reloader {
  constructor(private readonly o: ReloaderOptions) {}

  /** `by`: who asked (SIGHUP, admin), for the log. */
  async reload(by: string): Promise<ReloadResult> {
    const { supervisor, coordination, loadNext, log } = this.o;
    const refuse = (error: string): ReloadResult => {
      countReload(false);
      log.error({ by, error }, 'reload refused: still running the previous config');
      return { ok: false, error };
    };
    const previous = supervisor.config;
    // Serialised here: a reload in progress has starting workers until it ends.
    const refusal = reloadRefusal({ ...supervisor.phase(), canLoad: loadNext !== undefined, config: previous });
    if (refusal !== undefined || loadNext === undefined) return refuse(refusal ?? 'no config to reload');
    let next: LoadedConfig;
    try {
      next = loadNext();
      checkReloadable(previous, next);
    } catch (err) {
      if (err instanceof ConfigError) return refuse(err.message);
      throw err;
    }
    warnIfQueuesDrop(log);
    const g = supervisor.generation(next);
    log.info({ by, generation: g.id, workers: next.workerCount }, 'reloading: starting new workers');
    coordination.reconfigure(next);
    const started = await supervisor.startGeneration(g, this.o.startTimeoutMs ?? RELOAD_START_TIMEOUT_MS);
    if (!started.ok) {
      if (started.stopping) return { ok: false, error: started.error };
      coordination.reconfigure(previous);
      return refuse(started.error);
    }
    log.level = next.logLevel;
    const { retiring, closingNow } = supervisor.promote(started);
    this.o.applied(next);
    countReload(true);
    announceCertificates(next, log);
    const workers = started.slots.length;
    log.info({ by, generation: g.id, workers, pids: supervisor.pids(), retiring, closingNow, retireTimeoutMs: next.retireTimeout }, 'reloaded');
    return { ok: true, generation: g.id, workers, retiring, closingNow };
  }
}
