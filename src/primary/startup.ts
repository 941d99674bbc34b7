// What the primary checks before it forks anything: a port already held is refused with one line,
// since SO_REUSEPORT would otherwise let the workers share it with a stranger.
import { createServer } from 'node:net';

/** A startup failure worth one line to the operator and a non-zero exit. */
export class StartupError extends Error {
  readonly code = 'ERR_STARTUP';
}

/** Refuses early, with a clear line, when something already holds the port; resolves the port (0 picks one). */
export function checkPortFree(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(new StartupError(err.code === 'EADDRINUSE' ? `port ${port} on ${host} is already in use` : `cannot listen on ${host}:${port}: ${err.code ?? err.message}`));
    });
    probe.listen({ host, port, exclusive: true }, () => {
      const actual = (probe.address() as { port: number }).port;
      probe.close(() => resolve(actual));
    });
  });
}
