// Memory per connection: what one client or one backend can make a worker hold. A client announcing
// a huge message (uWS assembles client messages whole), backends whose large messages arrive slowly
// (the worker's messageAssemblyLimit), a backend that pings without reading (its pongs).
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FrameReader, type FrameSink } from '../../src/proxy/frame-reader';
import { acceptKey, closeAll, PING_FLOOD, startEchoBackend, startRawWsBackend, type EchoBackend, type RawWsBackend } from '../helpers/backends';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { scrape } from '../helpers/metrics';
import { rssBytes } from '../helpers/proc';
import { unfinishedMessages } from '../helpers/raw-client';
import { connect, type TestClient } from '../helpers/ws-client';
import { waitFor, waitStable } from '../helpers/wait';

const KiB = 1024;
const MiB = 1024 * KiB;

void describe('memory per connection', { timeout: 120_000 }, () => {
  let echo: EchoBackend;
  let pinger: RawWsBackend;
  let balancer: Balancer;
  let worker: number;

  before(async () => {
    echo = await startEchoBackend({ name: 'mem-echo' });
    pinger = await startRawWsBackend('ping-flood');
    balancer = await startBalancer({
      workers: 1,
      config: {
        pools: { echo: { backends: [{ url: echo.url }] }, pinger: { backends: [{ url: pinger.url }] } },
        routes: [
          { path: '/ping-flood', pool: 'pinger' },
          { path: '/', pool: 'echo' }, // maxPayload left at its default
        ],
      },
    });
    worker = balancer.pids[0];
  });

  after(async () => {
    await stopAll(balancer);
    await closeAll(echo, pinger);
  });

  void it('three clients announcing 30 MiB messages and sending all but the last byte: cut at once, the worker does not grow', async () => {
    const before = rssBytes(worker);
    const sockets = await unfinishedMessages(balancer.port, 3, 30 * MiB);
    try {
      // What the kernel took, the worker has read (or refused) once its RSS holds still.
      const grown = (await waitStable(() => rssBytes(worker), { stableMs: 1000, timeoutMs: 20_000, tolerance: MiB, what: "the worker's RSS" })) - before;
      assert.ok(grown < 16 * MiB, `the worker grew by ${(grown / MiB).toFixed(1)} MiB holding three unfinished 30 MiB messages`);
      await waitFor(() => sockets.every((s) => s.destroyed || s.readableEnded), 5000, 'the balancer to close the three connections');
      await waitFor(async () => (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_messages_too_big_total', { from: 'client' }) === 3, 5000, 'three messages counted as too big');
      const backendSides = echo.connections.filter((c) => c.url.startsWith('/big-'));
      await waitFor(() => backendSides.every((c) => c.closeInfo?.code === 1009), 5000, 'each backend to hear 1009');
    } finally {
      for (const s of sockets) s.destroy();
    }
    // The route's limit is the default, 1 MiB: a message of that size still passes.
    const c = await connect(balancer.url('/one-mib'));
    const payload = Buffer.alloc(MiB, 7);
    assert.ok((await c.request(payload, 10_000, true)).data.equals(payload));
    await c.close();
  });

  void it('a backend that sends 200,000 pings and reads nothing: pongs are coalesced, the worker does not grow, the last ping gets its pong', async () => {
    const before = rssBytes(worker);
    const c = await connect(balancer.url('/ping-flood'));
    try {
      await waitFor(() => pinger.upgraded.length === 1, 5000, 'the backend to upgrade');
      const backend = pinger.upgraded[0];
      await waitFor(() => backend.writableLength === 0, 20_000, 'the backend to have sent every ping', 50);
      // Every ping reached the worker: the client gets nothing of them, and the tunnel is still open.
      await waitFor(async () => (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_tunnels_active') === 1, 5000, 'the tunnel in the metrics');
      const grown = rssBytes(worker) - before;
      assert.ok(grown < 16 * MiB, `the worker grew by ${(grown / MiB).toFixed(1)} MiB answering pings the backend does not read`);
      // The backend reads again: a few pongs, the last one answering the last ping.
      const pongs: number[] = [];
      const sink: FrameSink = {
        onMessage: () => {},
        onPing: () => {},
        onPong: (data) => pongs.push(Buffer.from(data).readUInt32BE(0)),
        onClose: () => {},
        onProtocolError: (code, reason) => assert.fail(`the balancer sent a broken frame: ${code} ${reason}`),
      };
      const reader = new FrameReader(sink, MiB, true);
      backend.on('data', (d: Buffer) => reader.push(d));
      backend.resume();
      await waitFor(() => pongs.at(-1) === PING_FLOOD - 1, 10_000, 'the pong of the last ping', 20);
      assert.ok(pongs.length < PING_FLOOD / 10, `${pongs.length} pongs for ${PING_FLOOD} pings`);
      assert.ok(pongs.every((n, i) => i === 0 || n > pongs[i - 1]), 'each pong answers a later ping than the one before');
      assert.ok(c.isOpen, 'the tunnel stays open');
    } finally {
      c.terminate();
    }
  });
});

void describe('messageAssemblyLimit', { timeout: 60_000 }, () => {
  const held: Socket[] = [];
  let balancer: Balancer;
  /** After its 101, each backend connection sends the header and the first 100 KiB of a 900 KiB message, then waits for `finish`. */
  const server = createServer((socket) => {
    held.push(socket);
    socket.once('data', (head: Buffer) => {
      const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head.toString('latin1'))?.[1] ?? '';
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
      const frameHead = Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0]);
      frameHead.writeUInt32BE(900 * KiB, 6);
      socket.write(Buffer.concat([frameHead, Buffer.alloc(100 * KiB, held.length)]));
      socket.on('data', () => {});
    });
  });
  const finish = (socket: Socket, n: number): void => void socket.write(Buffer.alloc(800 * KiB, n));

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    balancer = await startBalancer({
      workers: 1,
      config: {
        messageAssemblyLimit: '1MiB',
        pools: { slow: { backends: [{ url: `ws://127.0.0.1:${port}` }] } },
        routes: [{ path: '/', pool: 'slow' }],
      },
    });
  });

  after(async () => {
    await stopAll(balancer);
    for (const s of held) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  void it('closes a tunnel with 1009 when its large message does not fit in what the others are assembling; the others finish', async () => {
    const clients: TestClient[] = [];
    try {
      clients.push(await connect(balancer.url('/a')));
      await waitFor(async () => (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_message_assembly_bytes') === 900 * KiB, 5000, 'the first message to hold 900 KiB');
      clients.push(await connect(balancer.url('/b')));
      const closed = await clients[1].waitClose(5000);
      assert.equal(closed.code, 1009, `closed with ${closed.code} ${closed.reason}`);
      assert.ok(clients[0].isOpen, 'the tunnel assembling the first message is untouched');
      finish(held[0], 1);
      const message = await clients[0].nextMessage(5000);
      assert.equal(message.data.length, 900 * KiB);
      const metrics = await scrape(balancer.adminUrl('/metrics'));
      assert.equal(metrics.sum('switchyard_messages_too_big_total', { from: 'backend', limit: 'assembly' }), 1);
      assert.equal(metrics.sum('switchyard_message_assembly_bytes'), 0, 'the delivered message gave its bytes back');
      // With the budget free again, a new large message is assembled.
      clients.push(await connect(balancer.url('/c')));
      finish(held[2], 3);
      assert.equal((await clients[2].nextMessage(5000)).data.length, 900 * KiB);
    } finally {
      for (const c of clients) c.terminate();
    }
  });
});
