// Interoperability of the tunnel with other WebSocket implementations and with the protocol's
// corners: fragmented messages and control frames from a `ws` backend and from a raw client,
// undici's WHATWG WebSocket client, and a uWebSockets.js backend.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { WebSocket as UndiciWebSocket } from 'undici';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, startRawWsBackend, toBuffer, type BackendConnection, type EchoBackend, type RawWsBackend } from '../helpers/backends';
import { clientFrame, openSocket, rawWebSocket, ServerFrameParser, upgradeRequest } from '../helpers/raw-client';
import { freePort } from '../helpers/ports';
import { connect, upgradeStatus, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';
import { WebSocket, WebSocketServer } from 'ws';
import { closeListenSocket, uws, type ListenSocket } from '../../src/uws';

const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

void describe('interop', { timeout: 60_000 }, () => {
  let backend: EchoBackend;
  let uwsPort: number;
  let uwsListen: ListenSocket | false = false;
  let broken: RawWsBackend;
  let liar: RawWsBackend;
  let balancer: Balancer;
  const clients: TestClient[] = [];
  const pongs: { conn: string; data: string }[] = [];

  before(async () => {
    backend = await startEchoBackend({
      name: 'ws-backend',
      onConnection: (conn: BackendConnection) => {
        conn.ws.on('pong', (data) => pongs.push({ conn: conn.url, data: toBuffer(data).toString() }));
        conn.ws.on('message', (data, isBinary) => {
          const cmd = isBinary ? '' : toBuffer(data).toString();
          if (cmd === 'fragmented') {
            // "Hello, " + ping + "fragmented " + "world": one text message in three frames, a ping between.
            conn.ws.send('Hello, ', { fin: false });
            conn.ws.ping('between-fragments');
            conn.ws.send('fragmented ', { fin: false });
            conn.ws.send('world', { fin: true });
          } else if (cmd === 'fragmented-binary') {
            conn.ws.send(Buffer.alloc(70_000, 1), { binary: true, fin: false });
            conn.ws.send(Buffer.alloc(70_000, 2), { binary: true, fin: true });
          } else if (cmd === 'ping-me') {
            conn.ws.ping('are-you-there');
          }
        });
      },
    });
    // A backend on uWebSockets.js itself: a different server implementation on the backend hop.
    uwsPort = await freePort();
    await new Promise<void>((resolve, reject) => {
      uws
        .App()
        .ws('/*', { maxPayloadLength: 16 * 1024 * 1024, idleTimeout: 0, message: (ws, message, isBinary) => void ws.send(message, isBinary, true) })
        .listen('127.0.0.1', uwsPort, (s) => {
          uwsListen = s;
          if (s) resolve();
          else reject(new Error('uWS backend could not listen'));
        });
    });
    broken = await startRawWsBackend('masked-frame');
    liar = await startRawWsBackend('bad-accept');
    balancer = await startBalancer({
      config: {
        pools: {
          ws: { backends: [{ url: backend.url }] },
          uws: { backends: [{ url: `ws://127.0.0.1:${uwsPort}` }] },
          broken: { backends: [{ url: broken.url }] },
          liar: { retries: 0, backends: [{ url: liar.url }] },
        },
        routes: [
          { path: '/uws', pool: 'uws' },
          { path: '/broken', pool: 'broken' },
          { path: '/liar', pool: 'liar' },
          { path: '/', pool: 'ws' },
        ],
      },
    });
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await stopAll(balancer);
    await closeAll(backend, broken, liar);
    if (uwsListen) closeListenSocket(uwsListen);
  });

  void it('reassembles a fragmented backend message, with a ping between fragments, into one client message', async () => {
    const c = await connect(balancer.url('/frag'));
    clients.push(c);
    assert.equal((await c.request('fragmented')).text, 'fragmented'); // the backend echoes commands first
    const m = await c.nextMessage();
    assert.equal(m.text, 'Hello, fragmented world');
    assert.equal(m.isBinary, false);
    await waitFor(() => pongs.find((p) => p.conn === '/frag'), 3000, 'the pong to the backend ping');
    assert.equal(pongs.find((p) => p.conn === '/frag')!.data, 'between-fragments', 'the balancer answers the backend ping with its payload');

    await c.request('fragmented-binary');
    const big = await c.nextMessage();
    assert.equal(big.isBinary, true);
    assert.equal(big.data.length, 140_000);
    assert.equal(big.data[0], 1);
    assert.equal(big.data[139_999], 2);
  });

  void it('answers backend pings on an idle tunnel', async () => {
    const c = await connect(balancer.url('/pinged'));
    clients.push(c);
    c.send('ping-me');
    await waitFor(() => pongs.find((p) => p.conn === '/pinged'), 3000, 'the pong');
    assert.equal(pongs.find((p) => p.conn === '/pinged')!.data, 'are-you-there');
  });

  void it('accepts a fragmented client message with a ping in between, and pongs the client itself', async () => {
    const { socket, rest } = await rawWebSocket(balancer.port, { path: '/raw-frag' });
    try {
      const frames: { opcode: number; payload: Buffer }[] = [];
      const parser = new ServerFrameParser((frame, piece) => {
        const last = frames.at(-1);
        if (last && last.opcode === frame.opcode && last.payload.length < frame.length) last.payload = Buffer.concat([last.payload, piece]);
        else frames.push({ opcode: frame.opcode, payload: Buffer.from(piece) });
      });
      socket.on('data', (d: Buffer) => parser.push(d));
      parser.push(rest);
      socket.resume();
      const first = clientFrame(OP.text, Buffer.from('abc'));
      first[0] = 0x00 | OP.text; // FIN clear: first fragment
      socket.write(Buffer.concat([first, clientFrame(OP.ping, Buffer.from('p1'))]));
      const last = clientFrame(OP.continuation, Buffer.from('def'));
      socket.write(last);
      await waitFor(() => frames.find((f) => f.opcode === OP.text), 3000, 'the echo');
      assert.equal(frames.find((f) => f.opcode === OP.pong)?.payload.toString(), 'p1');
      assert.equal(frames.find((f) => f.opcode === OP.text)!.payload.toString(), 'abcdef');
      const conn = await backend.waitForConnection((x) => x.url === '/raw-frag', 2000);
      assert.equal(conn.received, 1, 'the backend got one whole message');
    } finally {
      socket.destroy();
    }
  });

  void it("works with undici's WHATWG WebSocket client (subprotocol, text, binary, close code)", async () => {
    const ws = new UndiciWebSocket(balancer.url('/undici'), ['x', 'chat.v2']);
    ws.binaryType = 'arraybuffer';
    await once(ws as unknown as EventTarget, 'open');
    assert.equal(ws.protocol, 'chat.v2');
    const next = (): Promise<string | ArrayBuffer> =>
      new Promise((resolve) => ws.addEventListener('message', (e) => resolve(e.data as string | ArrayBuffer), { once: true }));
    let reply = next();
    ws.send('hi undici');
    assert.equal(await reply, 'hi undici');
    reply = next();
    ws.send(new Uint8Array([1, 2, 3]));
    assert.deepEqual([...new Uint8Array((await reply) as ArrayBuffer)], [1, 2, 3]);
    const closed = new Promise<{ code: number }>((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code }), { once: true }));
    ws.close(4100, 'done');
    assert.equal((await closed).code, 4100);
    const conn = await backend.waitForConnection((x) => x.url === '/undici', 2000);
    assert.deepEqual(await conn.closed, { code: 4100, reason: 'done' });
  });

  void it('relays to and from a uWebSockets.js backend', async () => {
    const c = await connect(balancer.url('/uws'));
    clients.push(c);
    assert.equal((await c.request('hello uws')).text, 'hello uws');
    const big = Buffer.alloc(300_000, 9);
    const m = await c.request(big, 5000, true);
    assert.equal(m.isBinary, true);
    assert.ok(m.data.equals(big));
  });

  void it('a backend that breaks the protocol ends only its own tunnel, with 1011; one with a wrong accept key gets 502', async () => {
    const bystander = await connect(balancer.url('/bystander'));
    clients.push(bystander);
    const victim = await connect(balancer.url('/broken'));
    clients.push(victim);
    const info = await victim.waitClose(5000);
    assert.equal(info.code, 1011, `closed with ${info.code} ${info.reason}`);
    await waitFor(() => broken.sockets.size === 0, 5000, 'the broken backend connection to be closed');

    const status = await upgradeStatus(balancer.url('/liar'));
    assert.equal(status, 502);
    assert.equal((await bystander.request('still fine')).text, 'still fine', 'the other tunnel is undisturbed');
    assert.equal(balancer.exitInfo(), undefined, 'the balancer is still running');
    assert.ok(!balancer.logs.some((l) => l.msg === 'worker exited'), 'no worker died');
  });

  void it('a client that gives up during the upgrade leaves no backend connection behind', async () => {
    // A backend that takes 500 ms to accept; the client disconnects after 100 ms.
    const port = await freePort();
    const opened: WebSocket[] = [];
    const slow = new WebSocketServer({ port, host: '127.0.0.1', verifyClient: (_info, cb) => void setTimeout(() => cb(true), 500) });
    slow.on('connection', (ws) => {
      opened.push(ws);
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
    const quick = await startBalancer({ args: ['--backend', `ws://127.0.0.1:${port}`], workers: 1 });
    try {
      const socket = await openSocket(quick.port);
      socket.write(upgradeRequest({ path: '/impatient' }).text);
      await delay(100);
      socket.destroy();
      await waitFor(() => opened.length === 1, 3000, 'the backend to accept the late upgrade');
      await waitFor(() => opened[0].readyState === WebSocket.CLOSED, 3000, 'the balancer to close the orphaned backend side');
      const c = await connect(quick.url('/patient'));
      clients.push(c);
      assert.equal((await c.request('after')).text, 'after');
    } finally {
      await stopAll(quick);
      for (const ws of slow.clients) ws.terminate();
      slow.close();
    }
  });
});
