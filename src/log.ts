// Logging: pino, JSON lines on stdout. One logger per process, created once from the config's level.
import pino from 'pino';

export type Logger = pino.Logger;

/** Writes to `fd`: stdout, or in a worker the primary's stdout passed on another descriptor (src/primary/ipc.ts). */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, fd = 1): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: fd, sync: true }));
}
