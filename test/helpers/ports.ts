// Loopback ports from the kernel: free ones (listen on port 0, read the port, close), and dead ones
// (bound and held, never listening: connections are refused).
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

interface BoundHandle {
  bind(address: string, port: number): number;
  getsockname(out: { port?: number }): number;
  close(): void;
}
const { TCP, constants } = (process as unknown as { binding(name: string): unknown }).binding('tcp_wrap') as { TCP: new (type: number) => BoundHandle; constants: { SOCKET: number } };
/** Sockets holding the dead ports: bound, never listening, kept until the test process exits. */
const held: BoundHandle[] = [];

/**
 * A loopback port nothing listens on and nothing else can take: a TCP socket bound to it that never
 * listens (Node's TCP handle, as lib/net.js binds before listen), so a connect to it is refused
 * (RST), and the kernel does not hand it out for port 0 (what every test server, backend and
 * balancer listens on) while this process lives. A port merely found free could go to the next
 * program that asks for one. (libuv binds with SO_REUSEADDR, so a program naming this very port
 * could still take it: none here does.)
 */
export function deadPort(host = '127.0.0.1'): Promise<number> {
  const handle = new TCP(constants.SOCKET);
  const out: { port?: number } = {};
  const err = handle.bind(host, 0) || handle.getsockname(out);
  if (err !== 0 || out.port === undefined) {
    handle.close();
    return Promise.reject(new Error(`deadPort: bind failed (${err})`));
  }
  held.push(handle);
  return Promise.resolve(out.port);
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
