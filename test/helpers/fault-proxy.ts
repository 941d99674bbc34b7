// A TCP relay on loopback in front of a real server (redis-server in the fleet-totals tests) that
// cuts a connection at a chosen point of one exchange: before a request reaches the server, halfway
// through it, or after the server ran it but before its reply gets back; or holds a connection's
// requests for a while (a partition that heals). Real sockets both sides: what a dropped network,
// a stalled machine or a killed process does to a client in the middle of a call.
import { createServer, connect, type Server, type Socket } from 'node:net';

/** Where to cut: `request` (nothing reaches the server), `partial` (half of it does), `reply` (the server runs it, the reply is lost). */
export type CutPoint = 'request' | 'partial' | 'reply';

export interface FaultProxy {
  port: number;
  url: string;
  /**
   * Cuts the connection that next sends bytes matching `match` (all bytes when absent), at `point`.
   * Resolves once it was cut.
   */
  cutNext(point: CutPoint, match?: string): Promise<void>;
  /**
   * Holds what the client sends from the next bytes matching `match` on, for `ms`, then lets it all
   * through in order (a partition that heals, the connection kept). Resolves once released.
   */
  stallNext(ms: number, match?: string): Promise<void>;
  close(): Promise<void>;
}

interface Armed {
  point: CutPoint | { stall: number };
  match: string | undefined;
  done: () => void;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const sockets = new Set<Socket>();
  let armed: Armed | undefined;
  const server: Server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(client).add(upstream);
    let cutOnReply: (() => void) | undefined;
    let held: Buffer[] | undefined;
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (held !== undefined) return void held.push(chunk);
      const a = armed;
      if (a === undefined || (a.match !== undefined && !chunk.includes(a.match))) return void upstream.write(chunk);
      armed = undefined;
      if (typeof a.point === 'object') {
        const queue = (held = [chunk]);
        setTimeout(() => {
          held = undefined;
          for (const c of queue) upstream.write(c);
          a.done();
        }, a.point.stall);
        return;
      }
      if (a.point === 'request') {
        cut();
        return a.done();
      }
      if (a.point === 'partial') {
        upstream.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)), () => {
          cut();
          a.done();
        });
        return;
      }
      cutOnReply = a.done;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutOnReply === undefined) return void client.write(chunk);
      const done = cutOnReply;
      cutOnReply = undefined;
      cut();
      done();
    });
    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        cut();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cutNext: (point, match) => new Promise<void>((done) => (armed = { point, match, done })),
    stallNext: (ms, match) => new Promise<void>((done) => (armed = { point: { stall: ms }, match, done })),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
