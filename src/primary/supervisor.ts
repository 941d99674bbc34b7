// The supervisor keeps a worker process in every slot of the current generation: a dead one is
// replaced with backoff (a crash loop does not spin the CPU), a reload's generation starts beside it
// and the old one retires, and at shutdown all of them drain. Processes come from an injected `fork`
// and time from injected timers, so it is tested alone with fake workers (test/primary/).
import type { Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { LoadedConfig } from '../config/load';
import { isLocalResourceError } from '../errors';
import { isWorkerMessage, type PrimaryMessage, type WorkerMessage } from '../ipc';
import { reportLocalFailure } from '../local-failures';
import type { Logger } from '../log';
import { countWorkerRestart, type WorkerView } from '../stats/metrics';
import { forkWorker } from './fork';
import { StartupError } from './startup';
import { Retirement } from './retirement';
import { realTimers, type Timers } from './timers';
import { newGeneration, newSlots, nextRestartDelay, type Generation, type Slot } from './worker-slots';

type Listening = Extract<WorkerMessage, { type: 'listening' }>;

export interface SupervisorEvents {
  /** A worker process was started (coordination hears its reports from now on). */
  forked: [worker: Worker];
  /** A worker process is gone, or could not be started. */
  exited: [worker: Worker];
  /** Every worker of the first generation listens. */
  ready: [m: Listening];
  /** The first generation could not start. */
  failed: [err: StartupError];
  /** Stopping, and no worker process is left. */
  idle: [];
}

/** A reload's new generation: listening and ready to take over, or why not (nothing else changed). */
export type Started = { ok: true; generation: Generation; slots: Slot[] } | { ok: false; error: string; stopping: boolean };

export class Supervisor extends EventEmitter<SupervisorEvents> {
  private current: Generation;
  private generations = 1;
  private slots: Slot[];
  /** The workers of a reload in progress. */
  private starting: Slot[] = [];
  private readonly retirement: Retirement;
  private settleStart: ((error?: string) => void) | null = null;
  private listening = 0;
  private started = false;
  private stopped = false;

  constructor(
    first: LoadedConfig,
    /** The public port every worker shares (port 0 already resolved). */
    private readonly port: number,
    private readonly log: Logger,
    /** Starts a slot's worker process: node:cluster's by default, fake workers in tests. */
    private readonly fork: (slot: Slot) => Worker = forkWorker,
    private readonly timers: Timers = realTimers,
  ) {
    super();
    this.retirement = new Retirement(log, timers);
    this.current = newGeneration(1, first, port);
    this.slots = newSlots(this.current, 'current');
  }

  /** The config the current generation runs. */
  get config(): LoadedConfig {
    return this.current.config;
  }

  /** Forks the first generation; 'ready' or 'failed' follows. */
  start(): void {
    for (const slot of this.slots) this.spawn(slot);
  }

  /** Every worker of the first generation has listened. */
  get ready(): boolean {
    return this.started;
  }

  /** What decides whether a reload may start now (reloadRefusal): stopping, a reload's workers starting, old ones closing now. */
  phase(): { ready: boolean; shuttingDown: boolean; starting: number; closingNow: number } {
    return { ready: this.started, shuttingDown: this.stopped, starting: this.starting.length, closingNow: this.retirement.closingNowCount };
  }

  /** No worker process is left (after drain or kill). */
  get idle(): boolean {
    return this.allSlots().every((s) => s.worker === null);
  }

  pids(): (number | undefined)[] {
    return this.slots.map((s) => s.worker?.process.pid);
  }

  views(): WorkerView[] {
    return [...this.slots, ...this.retirement.slots()].map((s) => ({ slot: s.index, pid: s.worker?.process.pid, listening: s.listening, restarts: s.restarts, startedAt: s.startedAt, retiring: s.role === 'retiring' }));
  }

  /** The next generation's number and what its workers get. */
  generation(config: LoadedConfig): Generation {
    return newGeneration(++this.generations, config, this.port);
  }

  /**
   * Forks `g` beside the current generation and waits (up to `timeoutMs`) for all of its workers to
   * listen. If they do not, the ones that listened retire (they may hold connections already) and
   * the others are killed; the current generation is untouched either way. `promote` follows success.
   */
  async startGeneration(g: Generation, timeoutMs: number): Promise<Started> {
    this.starting = newSlots(g, 'starting');
    const error = await new Promise<string | undefined>((resolve) => {
      const timer = this.timers.setTimeout(() => resolve(`the new workers did not listen within ${timeoutMs / 1000}s`), timeoutMs);
      this.settleStart = (e) => {
        this.timers.clearTimeout(timer);
        resolve(e);
      };
      for (const slot of this.starting) this.spawn(slot);
    });
    this.settleStart = null;
    const fresh = this.starting;
    this.starting = [];
    if (this.stopped) {
      // They were told to drain with the rest; the primary waits for them too.
      for (const s of fresh) {
        s.role = 'abandoned';
        if (s.worker !== null) this.retirement.keep(s);
      }
      return { ok: false, error: 'switchyard is stopping', stopping: true };
    }
    if (error === undefined) return { ok: true, generation: g, slots: fresh };
    for (const s of fresh) {
      if (s.worker?.isConnected() && s.listening) this.retirement.retire(s, this.config.retireTimeout);
      else {
        s.role = 'abandoned';
        s.worker?.process.kill('SIGKILL');
      }
    }
    this.retirement.cap(this.config);
    return { ok: false, error, stopping: false };
  }

  /** The started generation serves; the old one retires: it stops accepting and keeps its tunnels up to retireTimeout. */
  promote(started: Extract<Started, { ok: true }>): { retiring: number; closingNow: number } {
    const old = this.slots;
    for (const s of started.slots) s.role = 'current';
    this.slots = started.slots;
    this.current = started.generation;
    for (const s of old) {
      this.timers.clearTimeout(s.restartTimer);
      s.listening = false;
      if (s.worker !== null) this.retirement.retire(s, this.config.retireTimeout);
    }
    const closingNow = this.retirement.cap(this.config);
    return { retiring: this.retirement.finishing, closingNow };
  }

  /** Every worker drains within `timeoutMs` and exits; none is restarted, a reload in progress ends. */
  drain(timeoutMs: number): void {
    this.stopped = true;
    this.settleStart?.('switchyard is stopping');
    const message: PrimaryMessage = { type: 'drain', timeoutMs };
    for (const slot of this.allSlots()) {
      this.timers.clearTimeout(slot.restartTimer);
      if (slot.worker?.isConnected()) slot.worker.send(message);
    }
  }

  /** Kills every worker at once (the backstop, or a failed start); none is restarted. */
  kill(): void {
    this.stopped = true;
    for (const s of this.allSlots()) s.worker?.process.kill('SIGKILL');
  }

  private allSlots(): Slot[] {
    return [...this.slots, ...this.starting, ...this.retirement.slots()];
  }

  private spawn(slot: Slot): void {
    const worker = this.fork(slot);
    slot.worker = worker;
    slot.startedAt = this.timers.now();
    this.emit('forked', worker);
    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      if (m.type === 'config-request') {
        if (worker.isConnected()) worker.send({ type: 'config', json: slot.generation.workerConfig } satisfies PrimaryMessage);
      } else if (m.type === 'listen-failed') {
        if (!this.ready) this.emit('failed', new StartupError(`cannot listen on ${this.config.listen.host}:${this.port}: ${m.error}`));
        else if (slot.role === 'starting') this.settleStart?.(`a new worker could not listen: ${m.error}`);
        else this.log.error({ workerPid: worker.process.pid, error: m.error }, 'worker could not listen');
      } else if (m.type === 'listening') this.onListening(slot, worker, m);
    });
    // A fork that failed (spawn EMFILE at the descriptor limit) emits 'error' and no 'exit': it is
    // handled as an exit, so the slot is tried again with backoff. Other errors (a message to a
    // worker that just died) are logged; an 'error' nobody hears would take the primary down.
    worker.on('error', (err: NodeJS.ErrnoException) => {
      if (worker.process.pid !== undefined) return void this.log.warn({ workerPid: worker.process.pid, err }, 'worker channel error');
      if (isLocalResourceError(err.code)) reportLocalFailure(err.code, 'fork');
      else this.log.error({ err }, 'could not start a worker');
      this.gone(slot, worker, null, null, `could not be started: ${err.message}`);
    });
    worker.on('exit', (code: number | null, signal: string | null) => this.gone(slot, worker, code, signal));
  }

  private onListening(slot: Slot, worker: Worker, m: Listening): void {
    if (slot.role === 'abandoned' || slot.role === 'retiring') return;
    slot.listening = true;
    if (slot.role === 'starting') {
      if (this.starting.every((s) => s.listening)) this.settleStart?.();
    } else if (this.ready) this.log.info({ workerPid: worker.process.pid }, 'worker started');
    else if (this.slots.every((s) => s.worker !== null) && ++this.listening === this.slots.length) {
      this.started = true;
      this.emit('ready', m);
    }
  }

  private gone(slot: Slot, worker: Worker, code: number | null, signal: string | null, why = `exited (code ${code}, signal ${signal ?? 'none'})`): void {
    this.emit('exited', worker);
    if (slot.worker === worker) {
      slot.worker = null;
      slot.listening = false;
    }
    this.retirement.exited(slot, { workerPid: worker.process.pid, code, signal });
    if (this.stopped) {
      if (this.idle) this.emit('idle');
      return;
    }
    if (slot.role === 'retiring' || slot.role === 'abandoned') return;
    if (slot.role === 'starting') return this.settleStart?.(`a new worker ${why} while starting`);
    if (!this.ready) return void this.emit('failed', new StartupError(`a worker ${why} during startup`));
    const delay = nextRestartDelay(slot, this.timers.now());
    this.log.warn({ workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'worker exited');
    slot.restartTimer = this.timers.setTimeout(() => {
      slot.restarts++;
      countWorkerRestart(slot.index);
      this.spawn(slot);
    }, delay);
  }
}
