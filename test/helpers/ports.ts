// Free loopback ports, from the kernel (listen on port 0, read the port, close).
import { connect, createServer } from 'node:net';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port from server.address()');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/** A loopback port nothing listens on (connections to it are refused). */
export async function deadPort(): Promise<number> {
  return freePort();
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` now. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
