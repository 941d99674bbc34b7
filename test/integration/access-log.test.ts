// The access log (accessLog: true): one line per tunnel when it ends, with who closed it, the code
// and its traffic both ways; one per refused upgrade and per plain request, with the status the
// client got. Off by default.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { startBalancer, type Balancer, type LogLine } from '../helpers/balancer';
import { closeAll, startEchoBackend, startRawHttpBackend, type EchoBackend } from '../helpers/backends';
import { waitFor } from '../helpers/wait';
import { openSocket, readResponseHead } from '../helpers/raw-client';
import { connect, upgradeStatus } from '../helpers/ws-client';

const isAccess = (l: LogLine): boolean => l.log === 'access';

async function get(balancer: Balancer, path: string): Promise<number> {
  const res = await request(balancer.httpUrl(path));
  await res.body.dump();
  return res.statusCode;
}

void describe('access log', { timeout: 60_000 }, () => {
  let backend: EchoBackend;

  void it('logs a tunnel when it ends, refused upgrades and plain requests', async (t) => {
    backend = await startEchoBackend({ name: 'a', refuse: (req) => (req.url?.startsWith('/chat/private') ? 403 : undefined) });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({
      config: {
        accessLog: true,
        pools: { chat: { backends: [{ url: backend.url }] } },
        routes: [
          { path: '/chat', pool: 'chat' },
          { path: '/status', pool: 'chat' }, // the backend answers /status/NNN with NNN
        ],
      },
    });
    t.after(() => balancer.stop());
    const backendName = `127.0.0.1:${backend.port}`;

    const client = await connect(balancer.url('/chat?room=1'));
    const texts = ['one', 'two two', 'three three three'];
    for (const text of texts) assert.equal((await client.request(text)).text, text);
    await client.close(4000, 'bye');
    const bytes = texts.reduce((n, s) => n + s.length, 0);
    const tunnel = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'tunnel', 5000, 'the tunnel line');
    assert.equal(tunnel.client, '127.0.0.1');
    assert.equal(tunnel.url, '/chat?room=1');
    assert.equal(tunnel.status, 101);
    assert.equal(tunnel.pool, 'chat');
    assert.equal(tunnel.backend, backendName);
    assert.equal(tunnel.closedBy, 'client');
    assert.equal(tunnel.code, 4000);
    assert.deepEqual(
      [tunnel.messagesToBackend, tunnel.bytesToBackend, tunnel.messagesToClient, tunnel.bytesToClient],
      [texts.length, bytes, texts.length, bytes],
    );
    assert.ok(typeof tunnel.durationMs === 'number' && tunnel.durationMs > 0, JSON.stringify(tunnel));

    // A tunnel the backend ends.
    const kicked = await connect(balancer.url('/chat?room=2'));
    assert.equal((await kicked.request('hi')).text, 'hi');
    const conn = await backend.waitForConnection((c) => c.url === '/chat?room=2', 3000);
    conn.ws.close(4001, 'kick');
    assert.equal((await kicked.waitClose(3000)).code, 4001);
    const byBackend = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'tunnel' && l.url === '/chat?room=2', 5000, 'the kicked tunnel line');
    assert.deepEqual([byBackend.closedBy, byBackend.code, byBackend.messagesToBackend, byBackend.messagesToClient], ['backend', 4001, 1, 1]);

    assert.equal(await upgradeStatus(balancer.url('/chat/private')), 403);
    const refused = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'upgrade' && l.status === 403, 5000, 'the refused upgrade line');
    assert.deepEqual([refused.url, refused.outcome, refused.pool, refused.backend], ['/chat/private', 'backend_refused', 'chat', backendName]);

    assert.equal(await upgradeStatus(balancer.url('/nowhere')), 404);
    const unrouted = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'upgrade' && l.status === 404, 5000, 'the unrouted upgrade line');
    assert.deepEqual([unrouted.url, unrouted.outcome], ['/nowhere', 'no_route']);

    assert.equal(await get(balancer, '/status/200?x=1'), 200);
    const ok = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'http' && l.status === 200, 5000, 'the plain request line');
    assert.deepEqual([ok.method, ok.url, ok.outcome, ok.pool, ok.backend], ['GET', '/status/200?x=1', 'ok', 'chat', backendName]);
    assert.equal(await get(balancer, '/status/503'), 503); // relayed: the backend's status, outcome ok
    await balancer.waitForLog((l) => isAccess(l) && l.msg === 'http' && l.status === 503 && l.outcome === 'ok', 5000, 'the relayed 503 line');
    assert.equal(await get(balancer, '/elsewhere'), 404);
    await balancer.waitForLog((l) => isAccess(l) && l.msg === 'http' && l.status === 404 && l.outcome === 'no_route', 5000, 'the 404 line');

    // What the client sent is escaped: the line stays one valid JSON object.
    const raw = await openSocket(balancer.port);
    t.after(() => raw.destroy());
    raw.write(Buffer.concat([Buffer.from('GET /status/204?q="a\\b"&n='), Buffer.from('é', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: t\r\n\r\n')]));
    // (Node's HTTP server, the backend here, answers 400 to such a URL: relayed, so outcome ok.)
    const status = (await readResponseHead(raw)).status;
    const escaped = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'http' && typeof l.url === 'string' && l.url.includes('?q='), 5000, 'the line of the request with quotes');
    assert.deepEqual([escaped.url, escaped.status, escaped.outcome], ['/status/204?q="a\\b"&n=é', status, 'ok']);

    // One line each, no more (the ws client's close handshake does not make a second tunnel line).
    assert.deepEqual(
      balancer.logs.filter(isAccess).map((l) => `${String(l.msg)} ${String(l.status)}`),
      ['tunnel 101', 'tunnel 101', 'upgrade 403', 'upgrade 404', 'http 200', 'http 503', 'http 404', `http ${status}`],
    );
  });

  void it('a client that leaves before the answer is logged with status 0 and client_gone', async (t) => {
    const silent = await startRawHttpBackend(() => {}); // takes requests, never answers
    t.after(() => closeAll(silent));
    const balancer = await startBalancer({ args: ['--backend', silent.url, '--access-log', '--workers', '1'] });
    t.after(() => balancer.stop());
    const socket = await openSocket(balancer.port);
    socket.write('GET /slow HTTP/1.1\r\nHost: t\r\n\r\n');
    await waitFor(() => silent.heads.length === 1, 5000, 'the backend to get the request');
    socket.destroy();
    const line = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'http', 5000, 'the abandoned request line');
    assert.deepEqual([line.url, line.status, line.outcome, line.backend], ['/slow', 0, 'client_gone', `127.0.0.1:${silent.port}`]);
  });

  void it('is off by default', async (t) => {
    backend = await startEchoBackend({ name: 'b' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({ args: ['--backend', backend.url, '--log-level', 'info'] });
    t.after(() => balancer.stop());
    const client = await connect(balancer.url('/x'));
    assert.equal((await client.request('x')).text, 'x');
    await client.close();
    assert.equal(await get(balancer, '/status/200'), 200);
    // Access lines are batched and written at the latest when a worker exits: stop, and read to the end.
    await balancer.stop();
    const out = balancer.proc.stdout!;
    if (!out.readableEnded) await once(out, 'end');
    assert.ok(balancer.logs.some((l) => l.msg === 'stopped'), 'read up to the primary\'s last line, after every worker exited');
    assert.deepEqual(balancer.logs.filter(isAccess), []);
  });

  void it('--access-log turns it on', async (t) => {
    backend = await startEchoBackend({ name: 'c' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({ args: ['--backend', backend.url, '--access-log'] });
    t.after(() => balancer.stop());
    assert.equal(await get(balancer, '/status/204'), 204);
    const line = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'http', 5000, 'the plain request line');
    assert.deepEqual([line.status, line.url, line.pool], [204, '/status/204', 'default']);
  });
});
