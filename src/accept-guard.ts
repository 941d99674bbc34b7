// Keeps a worker from spinning at its descriptor limit. uWS (uSockets) accepts in its own loop and
// has no answer to EMFILE: accept() fails, the listen socket stays readable, and the loop calls it
// again at once, a whole core for nothing (measured: docs/operations.md, "At the descriptor limit").
// Connections that have sent nothing yet are invisible to JavaScript, so counting connections
// (workerConnections) cannot prevent it alone.
//
// So the guard holds a small reserve of descriptors and, every tick, opens one more: when that
// fails, the table is full and accept() is failing too. It then stops listening (the kernel sends
// new connections to the other workers, or refuses them when none listens) and frees the reserve,
// so that what is under way (backend connects of upgrades already accepted, metrics, logs) has room.
// Once it can take the reserve back and as much again, it listens again. Open tunnels are never
// touched. NGINX does the same on "accept() failed (24: Too many open files)": it disables accept
// events for a while (ngx_event_accept.c); libuv keeps one spare descriptor for the same reason.
import { closeSync, openSync } from 'node:fs';
import { isLocalResourceError, type LocalResourceError } from './errors';
import { reportLocalFailure } from './local-failures';
import type { Logger } from './log';

/** What the guard stops and starts: a listener's listen socket. */
export interface Acceptor {
  /** Closes the listen socket; connections already accepted go on. */
  pauseAccepting(): void;
  /** Listens again; false when it could not (or should not, e.g. while draining). */
  resumeAccepting(): Promise<boolean>;
}

/** Descriptors held back for what must still happen once the table is full. */
export const RESERVE = 16;
const TICK_MS = 100;

/** Opens /dev/null up to `n` times, stopping at the first failure; returns what it opened and the errno name of the failure. */
function openSome(n: number): { fds: number[]; failure: string | undefined } {
  const fds: number[] = [];
  for (let i = 0; i < n; i++) {
    try {
      fds.push(openSync('/dev/null', 'r'));
    } catch (err) {
      return { fds, failure: (err as NodeJS.ErrnoException).code };
    }
  }
  return { fds, failure: undefined };
}

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) closeSync(fd);
}

export class AcceptGuard {
  private reserve: number[] = [];
  private paused = false;
  private busy = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly acceptors: readonly Acceptor[],
    private readonly log: Logger,
  ) {}

  /** Takes the reserve and starts watching. */
  start(): void {
    this.reserve = openSome(RESERVE).fds;
    this.timer = setInterval(() => void this.check(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    closeAll(this.reserve);
  }

  /** False while stopped at the descriptor limit. */
  get accepting(): boolean {
    return !this.paused;
  }

  /** A tick: is the table full (stop accepting), or is there room again (listen again)? */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (!this.paused) {
        const probe = openSome(1);
        closeAll(probe.fds);
        if (isLocalResourceError(probe.failure)) this.pause(probe.failure);
      } else {
        // Room for the reserve and as much again: take the reserve back and listen again.
        const room = openSome(2 * RESERVE);
        if (room.failure === undefined) {
          this.reserve = room.fds.splice(0, RESERVE);
          closeAll(room.fds);
          await this.resume();
        } else closeAll(room.fds);
      }
    } catch (err) {
      this.log.error({ err }, 'accept guard check failed');
    } finally {
      this.busy = false;
    }
  }

  private pause(cause: LocalResourceError): void {
    this.paused = true;
    // Stop accepting first: with the reserve freed while still listening, uWS would accept into it.
    for (const a of this.acceptors) a.pauseAccepting();
    closeAll(this.reserve);
    reportLocalFailure(cause, 'accept', { action: 'stopped accepting new connections until descriptors are free again' });
  }

  private async resume(): Promise<void> {
    for (const a of this.acceptors) {
      if (!(await a.resumeAccepting())) {
        // Not listening after all (draining, or the listen failed): stay stopped, try again next tick.
        for (const b of this.acceptors) b.pauseAccepting();
        closeAll(this.reserve);
        return;
      }
    }
    this.paused = false;
    this.log.info({ reserve: RESERVE }, 'descriptors free again: accepting new connections');
  }
}
