// Logging: pino, JSON lines on stdout. One logger per process, created once from the config's level.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
