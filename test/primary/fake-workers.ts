// The supervisor's seams for tests alone: fake worker processes (EventEmitters that capture the IPC
// messages and signals they are sent), a manual clock for its timers, and a log that keeps its lines.
import type { Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import pino from 'pino';
import type { PrimaryMessage, WorkerMessage } from '../../src/ipc';
import type { Logger } from '../../src/log';
import type { Timers } from '../../src/primary/timers';
import type { Slot } from '../../src/primary/worker-slots';

let nextPid = 1000;

/** A worker's IPC channel: messages in through 'message', out through send(), captured. */
export class FakeChannel extends EventEmitter {
  readonly sent: PrimaryMessage[] = [];
  connected = true;
  isConnected(): boolean {
    return this.connected;
  }
  send(m: PrimaryMessage): boolean {
    this.sent.push(m);
    return true;
  }
  report(m: WorkerMessage): void {
    this.emit('message', m);
  }
}

/** A worker process as the supervisor sees one: its channel, a pid, and the signals it was sent. */
export class FakeWorker extends FakeChannel {
  readonly signals: string[] = [];
  readonly process = { pid: nextPid++ as number | undefined, kill: (signal: string): boolean => this.signals.push(signal) > 0 };
  constructor(readonly slot: Slot) {
    super();
  }
  /** Asks for its config and listens, as a worker that started well does. */
  listen(): void {
    this.report({ type: 'config-request' });
    this.report({ type: 'listening', port: 1, binding: 'fake', workerConnections: 100 });
  }
  exit(code: number | null = 0, signal: string | null = null): void {
    this.connected = false;
    this.emit('exit', code, signal);
  }
  types(): string[] {
    return this.sent.map((m) => m.type);
  }
}

/** A `fork` that records every fake worker it starts, in order. */
export function fakeFork(): { fork: (slot: Slot) => Worker; forked: FakeWorker[] } {
  const forked: FakeWorker[] = [];
  const fork = (slot: Slot): Worker => {
    const w = new FakeWorker(slot);
    forked.push(w);
    return w as unknown as Worker;
  };
  return { fork, forked };
}

/** Timers on a clock that moves only when the test says so. */
export class ManualTimers implements Timers {
  private time = 0;
  private pending: { at: number; fn: () => void; unref: boolean }[] = [];
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number, unref = false): unknown {
    const t = { at: this.time + ms, fn, unref };
    this.pending.push(t);
    return t;
  }
  clearTimeout(handle: unknown): void {
    this.pending = this.pending.filter((t) => t !== handle);
  }
  /** Moves the clock by `ms`, running each timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.pending.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.pending = this.pending.filter((t) => t !== due);
      this.time = due.at;
      due.fn();
    }
    this.time = end;
  }
  /** Timers still pending that would keep the process alive. */
  get holding(): number {
    return this.pending.filter((t) => !t.unref).length;
  }
}

/** A logger whose lines the test reads back ({ msg, ...fields }). */
export function capturedLog(): { log: Logger; lines: Record<string, unknown>[]; messages: () => string[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines, messages: () => lines.map((l) => l.msg as string) };
}
