// Limits and backpressure: maxPayload (1009), a client that stops reading (the balancer stops
// reading the backend instead of buffering), a backend that stops reading (1013), compression.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, toBuffer, startRawWsBackend, type EchoBackend, type RawWsBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { rawWebSocket, ServerFrameParser } from '../helpers/raw-client';
import { connect, type TestClient } from '../helpers/ws-client';
import { waitFor, waitStable, withTimeout } from '../helpers/wait';

const KiB = 1024;
const MiB = 1024 * KiB;
const FLOOD_MESSAGES = 200;
const FILL = 0x61;
const chunk = Buffer.alloc(MiB, FILL);

void describe('limits', { timeout: 120_000 }, () => {
  let echo: EchoBackend;
  let flooder: EchoBackend;
  let sink: RawWsBackend;
  let balancer: Balancer;
  const clients: TestClient[] = [];

  before(async () => {
    echo = await startEchoBackend({
      name: 'limits-echo',
      onConnection: (conn) => {
        conn.ws.on('message', (data, isBinary) => {
          if (!isBinary && toBuffer(data).toString() === 'send-100KiB') conn.ws.send(Buffer.alloc(100 * KiB, 7), { binary: true });
        });
      },
    });
    flooder = await startEchoBackend({
      name: 'flooder',
      onConnection: (conn) => {
        if (!conn.url.startsWith('/flood')) return;
        for (let i = 0; i < FLOOD_MESSAGES; i++) conn.ws.send(chunk, { binary: true });
      },
    });
    sink = await startRawWsBackend('stop-reading');
    balancer = await startBalancer({
      config: {
        pools: {
          echo: { backends: [{ url: echo.url }] },
          flood: { backends: [{ url: flooder.url }] },
          sink: { backends: [{ url: sink.url }] },
        },
        routes: [
          { path: '/small', pool: 'echo', maxPayload: '64KiB' },
          { path: '/big', pool: 'echo', maxPayload: '16MiB' },
          { path: '/deflate', pool: 'echo', compression: true },
          { path: '/flood', pool: 'flood', clientBufferLimit: '1MiB' },
          { path: '/sink', pool: 'sink', backendBufferLimit: '4MiB' },
          { path: '/', pool: 'echo' },
        ],
      },
    });
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await stopAll(balancer);
    await closeAll(echo, flooder, sink);
  });

  void it('relays messages up to maxPayload and closes with 1009 beyond it (client to backend)', async () => {
    const c = await connect(balancer.url('/small?case=up'));
    clients.push(c);
    const conn = await echo.waitForConnection((x) => x.url.includes('case=up'), 2000);
    const fits = Buffer.alloc(60 * KiB, 1);
    assert.equal((await c.request(fits, 5000, true)).data.length, fits.length);
    c.send(Buffer.alloc(64 * KiB + 1, 2), true);
    const info = await c.waitClose(5000);
    assert.equal(info.code, 1009, `closed with ${info.code} ${info.reason}`);
    await waitFor(() => conn.closeInfo, 3000, 'the backend side to close too');
    assert.equal(conn.received, 1, 'the oversized message never reached the backend');
  });

  void it('carries a 12 MiB message both ways with maxPayload 16 MiB and the default buffers (1-4 MiB)', async () => {
    const c = await connect(balancer.url('/big'));
    clients.push(c);
    const big = Buffer.alloc(12 * MiB);
    for (let i = 0; i < big.length; i += 4096) big[i] = i / 4096;
    const echoed = await c.request(big, 15_000, true);
    assert.ok(echoed.data.equals(big), 'the 12 MiB message came back intact');
  });

  void it('closes with 1009 when the backend sends more than maxPayload', async () => {
    const c = await connect(balancer.url('/small?case=down'));
    clients.push(c);
    c.send('send-100KiB');
    const info = await c.waitClose(5000);
    assert.equal(info.code, 1009, `closed with ${info.code} ${info.reason}`);
    assert.ok(!c.messages.some((m) => m.data.length === 100 * KiB), 'the oversized message was not delivered');
  });

  void it('negotiates permessage-deflate only on routes with compression: true', async () => {
    const plain = await connect(balancer.url('/plain'), { perMessageDeflate: true });
    clients.push(plain);
    assert.equal(plain.ws.extensions, '', 'compression is off by default');
    const deflate = await connect(balancer.url('/deflate'), { perMessageDeflate: true });
    clients.push(deflate);
    assert.match(deflate.ws.extensions, /permessage-deflate/);
    const text = 'compress me '.repeat(10_000);
    assert.equal((await deflate.request(text)).text, text);
    const conn = await echo.waitForConnection((x) => x.url === '/deflate', 2000);
    assert.equal(conn.ws.extensions, '', 'the backend hop is never compressed');
  });

  void it('slow client: stops reading the backend instead of buffering 200 MiB', async () => {
    const baseline = balancer.rss();
    const { socket, rest } = await rawWebSocket(balancer.port, { path: '/flood?case=slow' });
    try {
      // The socket is paused: the client reads nothing from here on.
      const conn = await flooder.waitForConnection((x) => x.url.includes('case=slow'), 2000);
      const queued = await waitStable(() => conn.ws.bufferedAmount, { stableMs: 1500, timeoutMs: 20_000, tolerance: 64 * KiB, what: "the backend's bufferedAmount" });
      const grown = balancer.rss() - baseline;
      assert.ok(queued >= 120 * MiB, `backend still has ${(queued / MiB).toFixed(1)} MiB queued: the balancer kept reading for a client that does not read`);
      assert.ok(grown < 150 * MiB, `balancer RSS grew by ${(grown / MiB).toFixed(1)} MiB`);

      // Nothing was lost or damaged: once the client reads again, all 200 messages arrive intact.
      let damaged = 0;
      const parser = new ServerFrameParser((frame, piece) => {
        if (frame.opcode === 2 && !piece.equals(chunk.subarray(0, piece.length))) damaged++;
      });
      parser.push(rest);
      socket.on('data', (d: Buffer) => parser.push(d));
      socket.resume();
      const binaryFrames = (): number => parser.frames.filter((f) => f.opcode === 2).length;
      await waitFor(
        () => parser.error !== undefined || (binaryFrames() === FLOOD_MESSAGES && parser.payloadBytes >= FLOOD_MESSAGES * MiB),
        30_000,
        `all ${FLOOD_MESSAGES} messages to reach the client once it reads again`,
        50,
      ).catch((err: Error) => {
        throw new Error(`${err.message}: got ${binaryFrames()} frames, ${parser.payloadBytes} payload bytes; backend still queues ${conn.ws.bufferedAmount} bytes`);
      });
      assert.equal(parser.error, undefined, `the client's byte stream is corrupt: ${parser.error}`);
      assert.equal(damaged, 0, 'payload bytes were altered');
      assert.ok(parser.frames.filter((f) => f.opcode === 2).every((f) => f.fin && f.length === MiB), 'every message arrived whole');
      await waitFor(() => conn.ws.bufferedAmount === 0, 5000, "the backend's queue to drain");
      const metrics = await scrape(balancer.adminUrl('/metrics'));
      assert.ok(metrics.sum('switchyard_backpressure_events_total') >= 1, 'the pause is counted as a backpressure event');
    } finally {
      socket.destroy();
    }
  });

  void it('slow backend: closes the client with 1013 when more than backendBufferLimit waits', async () => {
    const c = await connect(balancer.url('/sink'));
    clients.push(c);
    const piece = Buffer.alloc(MiB, 0x62);
    for (let i = 0; i < 64 && c.isOpen; i++) c.send(piece, true);
    const info = await withTimeout(c.closed, 15_000, 'the 1013 close');
    assert.equal(info.code, 1013, `closed with ${info.code} ${info.reason}`);
    assert.ok(sink.handshakes() >= 1);
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_slow_peer_closes_total', { peer: 'backend' }), 1, 'counted as a slow backend');
  });
});
