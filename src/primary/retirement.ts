// Old generations' workers after a reload: each stops accepting and finishes its tunnels within
// retireTimeout, and HAProxy's mworker-max-reloads cap keeps reloads in a row from piling them up.
import type { LoadedConfig } from '../config/load';
import type { PrimaryMessage } from '../ipc';
import type { Logger } from '../log';
import { KILL_AFTER_MS, type Timers } from './timers';
import { overRetiringCap, type Slot } from './worker-slots';

export class Retirement {
  /** Workers finishing their tunnels (and a failed or stopped reload's, until they exit). */
  private readonly retiring = new Set<Slot>();
  /** Retiring workers told to close their tunnels now (past maxRetiringGenerations), until they exit. */
  private readonly closingNow = new Set<Slot>();

  constructor(
    private readonly log: Logger,
    private readonly timers: Timers,
  ) {}

  slots(): IterableIterator<Slot> {
    return this.retiring.values();
  }

  /** Retiring workers still finishing their tunnels, not told to close them now. */
  get finishing(): number {
    return this.retiring.size - this.closingNow.size;
  }

  get closingNowCount(): number {
    return this.closingNow.size;
  }

  /** `slot`'s worker stops accepting and finishes its tunnels within `timeoutMs`. */
  retire(slot: Slot, timeoutMs: number): void {
    slot.role = 'retiring';
    slot.listening = false;
    this.retiring.add(slot);
    if (slot.worker?.isConnected()) slot.worker.send({ type: 'retire', timeoutMs } satisfies PrimaryMessage);
  }

  /** Waited for until it exits, without a message (it was told something else already). */
  keep(slot: Slot): void {
    this.retiring.add(slot);
  }

  /** `slot`'s worker exited (whatever its role). */
  exited(slot: Slot, fields: { workerPid: number | undefined; code: number | null; signal: string | null }): void {
    this.closingNow.delete(slot);
    if (this.retiring.delete(slot) && slot.role === 'retiring') {
      this.log.info({ workerPid: fields.workerPid, generation: slot.generation.id, code: fields.code, signal: fields.signal, retiring: this.retiring.size }, 'old worker exited');
    }
  }

  /**
   * Past `maxRetiringGenerations` older generations finishing their tunnels, the oldest are told to
   * close them now (1001, then drainTimeout; killed if still there 3 s later). With the reload refused
   * while they do (reloadRefusal), at most maxRetiringGenerations + 2 generations run at once.
   * Returns how many workers were told.
   */
  cap(c: LoadedConfig): number {
    const { generations: over, slots: told } = overRetiringCap(this.retiring, this.closingNow, c.maxRetiringGenerations);
    if (told.length === 0) return 0;
    const message: PrimaryMessage = { type: 'drain', timeoutMs: c.drainTimeout };
    for (const s of told) {
      this.closingNow.add(s);
      if (s.worker?.isConnected()) s.worker.send(message);
    }
    this.log.warn(
      { generations: over, pids: told.map((s) => s.worker?.process.pid), maxRetiringGenerations: c.maxRetiringGenerations, drainTimeoutMs: c.drainTimeout },
      'old workers closing their tunnels now: more generations finishing their tunnels than maxRetiringGenerations',
    );
    this.timers.setTimeout(() => {
      for (const s of told) if (this.closingNow.has(s)) s.worker?.process.kill('SIGKILL');
    }, c.drainTimeout + KILL_AFTER_MS, true);
    return told.length;
  }
}
