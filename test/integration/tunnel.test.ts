// The tunnel itself: messages both ways, subprotocols, forwarded headers, refusals, close codes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, startRawHttpBackend, toBuffer, type EchoBackend, type RawHttpBackend } from '../helpers/backends';
import { rawWebSocket } from '../helpers/raw-client';
import { connect, upgradeStatus, type Message, type TestClient } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';

const MiB = 1024 * 1024;
const BURST = 64;

/** 1 MiB in which every 4-byte word is unique across the whole burst. */
function burstMessage(i: number): Buffer {
  const b = Buffer.allocUnsafe(MiB);
  for (let j = 0; j < MiB; j += 4) b.writeUInt32BE((i * MiB + j) >>> 0, j);
  return b;
}

void describe('tunnel', { timeout: 60_000 }, () => {
  let echo: EchoBackend;
  let refusing: EchoBackend;
  /** Refuses every upgrade with a header line that hides a second one behind a bare LF. */
  let smuggling: RawHttpBackend;
  let balancer: Balancer;
  let trusting: Balancer;
  const clients: TestClient[] = [];

  const open = async (path: string, options: Parameters<typeof connect>[1] = {}, b: Balancer = balancer): Promise<TestClient> => {
    const c = await connect(b.url(path), options);
    clients.push(c);
    return c;
  };
  const tunnelId = (): string => randomBytes(6).toString('hex');

  before(async () => {
    const burst = Array.from({ length: BURST }, (_, i) => burstMessage(i));
    echo = await startEchoBackend({
      name: 'echo',
      onConnection: (conn) =>
        conn.ws.on('message', (data, isBinary) => {
          const m = isBinary ? null : /^burst (\d+)$/.exec(toBuffer(data).toString());
          if (m) for (const b of burst.slice(0, Number(m[1]))) conn.ws.send(b, { binary: true });
        }),
    });
    refusing = await startEchoBackend({
      name: 'refusing',
      refuse: (req) => {
        const m = /\/refuse\/(\d{3})/.exec(req.url ?? '');
        return m ? Number(m[1]) : undefined;
      },
    });
    smuggling = await startRawHttpBackend((socket) => socket.end('HTTP/1.1 403 Forbidden\r\nLocation: /x\nSet-Cookie: admin=1\r\nContent-Length: 0\r\n\r\n'));
    const config = (trustedProxies: string[]): Record<string, unknown> => ({
      trustedProxies,
      pools: {
        echo: { backends: [{ url: echo.url }] },
        refusing: { backends: [{ url: refusing.url }] },
        smuggling: { backends: [{ url: smuggling.url }] },
      },
      routes: [
        { path: '/refuse', pool: 'refusing', mode: 'websocket' },
        { path: '/smuggle', pool: 'smuggling', mode: 'websocket' },
        { path: '/', pool: 'echo', mode: 'both' },
      ],
    });
    [balancer, trusting] = await Promise.all([startBalancer({ config: config([]) }), startBalancer({ config: config(['127.0.0.1']) })]);
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await stopAll(balancer, trusting);
    await closeAll(echo, refusing, smuggling);
  });

  void it('echoes a text message through the balancer', async () => {
    const c = await open('/echo');
    const reply = await c.request('hello through switchyard');
    assert.equal(reply.text, 'hello through switchyard');
    assert.equal(reply.isBinary, false);
    assert.equal(await c.whoami(), 'echo');
    assert.ok(echo.connections.length >= 1, 'the backend saw the tunnel');
  });

  void it('preserves text vs binary frames and their bytes', async () => {
    const c = await open('/types');
    const text = await c.request('héllo wörld ✓', 5000, false);
    assert.equal(text.isBinary, false);
    assert.equal(text.text, 'héllo wörld ✓');

    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x7f, 0]);
    const bin = await c.request(bytes, 5000, true);
    assert.equal(bin.isBinary, true);
    assert.deepEqual(bin.data, bytes);

    // Binary that happens to be valid UTF-8 stays binary; an empty binary message survives too.
    const looksLikeText = await c.request(Buffer.from('just ascii'), 5000, true);
    assert.equal(looksLikeText.isBinary, true);
    const empty = await c.request(Buffer.alloc(0), 5000, true);
    assert.equal(empty.isBinary, true);
    assert.equal(empty.data.length, 0);
  });

  void it('carries a 1 MiB message both ways (binary and text)', async () => {
    const c = await open('/big');
    const payload = randomBytes(MiB);
    const reply = await c.request(payload, 10_000, true);
    assert.equal(reply.isBinary, true);
    assert.equal(reply.data.length, MiB);
    assert.ok(reply.data.equals(payload), '1 MiB binary echoed intact');

    const text = 'x'.repeat(MiB - 3) + 'end';
    const textReply = await c.request(text, 10_000, false);
    assert.equal(textReply.isBinary, false);
    assert.equal(textReply.text, text);
  });

  void it('relays a backend burst of 64 distinct 1 MiB messages intact and in order', async () => {
    const c = await open('/burst-down');
    c.send(`burst ${BURST}`);
    const binary = (): Message[] => c.messages.filter((m) => m.isBinary);
    await waitFor(() => binary().length >= BURST || c.closeInfo, 20_000, `${BURST} burst messages`);
    assert.equal(
      c.closeInfo,
      undefined,
      `tunnel closed during the burst after ${binary().length} messages: ${JSON.stringify(c.closeInfo)} ${c.error?.message ?? ''}`,
    );
    binary().forEach((m, i) => {
      const expected = burstMessage(i);
      if (!m.data.equals(expected)) {
        let at = 0;
        while (at < m.data.length && m.data[at] === expected[at]) at++;
        assert.fail(`message ${i} of the burst differs at byte ${at} (length ${m.data.length})`);
      }
    });
  });

  void it('relays a client burst of 3 distinct 1 MiB messages (within backendBufferLimit) intact', async () => {
    const c = await open('/burst-up');
    const sent = [0, 1, 2].map(burstMessage);
    for (const b of sent) c.send(b, true);
    await waitFor(() => c.messages.length >= sent.length || c.closeInfo, 10_000, 'the echoes');
    assert.equal(c.closeInfo, undefined, `tunnel closed: ${JSON.stringify(c.closeInfo)}`);
    c.messages.forEach((m, i) => assert.ok(m.data.equals(sent[i]), `echo ${i} differs`));
  });

  void it("passes the backend's chosen subprotocol to the client", async () => {
    const id = tunnelId();
    const c = await open(`/proto?id=${id}`, { protocols: ['a', 'chat.v2'] });
    assert.equal(c.ws.protocol, 'chat.v2');
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    const offered = (conn.headers['sec-websocket-protocol'] ?? '').split(',').map((x) => x.trim());
    assert.deepEqual(offered, ['a', 'chat.v2'], 'the backend saw the client\'s offer');
    assert.equal(conn.ws.protocol, 'chat.v2');
    assert.equal((await c.request('still works')).text, 'still works');
  });

  void it('answers without a subprotocol when the backend selects none', async () => {
    // (`ws` refuses such an answer itself, so a raw client checks the 101.)
    const { socket, headers } = await rawWebSocket(balancer.port, { path: '/proto-none', headers: { 'Sec-WebSocket-Protocol': 'a, b' } });
    socket.destroy();
    assert.equal(headers['sec-websocket-protocol'], undefined);
  });

  void it('forwards path, query, identity headers and X-Forwarded-* to the backend (untrusted peer: XFF replaced)', async () => {
    const id = tunnelId();
    const c = await open(`/fwd/deep/path?id=${id}&q=a%20b`, {
      localAddress: '127.0.0.5',
      headers: {
        Cookie: 'session=abc; theme=dark',
        Authorization: 'Bearer t0ken',
        Origin: 'https://app.example.test',
        'User-Agent': 'switchyard-test/1.0',
        'X-Forwarded-For': '10.9.8.7',
        'X-Real-IP': '10.9.8.7',
      },
    });
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    assert.equal(conn.url, `/fwd/deep/path?id=${id}&q=a%20b`);
    assert.equal(conn.headers.cookie, 'session=abc; theme=dark');
    assert.equal(conn.headers.authorization, 'Bearer t0ken');
    assert.equal(conn.headers.origin, 'https://app.example.test');
    assert.equal(conn.headers['user-agent'], 'switchyard-test/1.0');
    assert.equal(conn.headers['x-forwarded-for'], '127.0.0.5', 'XFF from an untrusted peer is replaced by the peer IP');
    assert.equal(conn.headers['x-real-ip'], '127.0.0.5');
    assert.equal(conn.headers['x-forwarded-proto'], 'http');
    assert.equal(conn.headers['x-forwarded-host'], `127.0.0.1:${balancer.port}`);
    await c.close();
  });

  void it('appends to X-Forwarded-For only when the peer is a trusted proxy', async () => {
    const idTrusted = tunnelId();
    await open(`/xff?id=${idTrusted}`, { localAddress: '127.0.0.1', headers: { 'X-Forwarded-For': '10.1.2.3' } }, trusting);
    const trusted = await echo.waitForConnection((x) => x.url.includes(idTrusted), 2000);
    assert.equal(trusted.headers['x-forwarded-for'], '10.1.2.3, 127.0.0.1');

    // Same balancer, a peer that is not in trustedProxies: replaced.
    const idOther = tunnelId();
    await open(`/xff?id=${idOther}`, { localAddress: '127.0.0.7', headers: { 'X-Forwarded-For': '10.1.2.3' } }, trusting);
    const untrusted = await echo.waitForConnection((x) => x.url.includes(idOther), 2000);
    assert.equal(untrusted.headers['x-forwarded-for'], '127.0.0.7');

    // And the balancer without trustedProxies never appends, even for 127.0.0.1.
    const idPlain = tunnelId();
    await open(`/xff?id=${idPlain}`, { localAddress: '127.0.0.1', headers: { 'X-Forwarded-For': '10.1.2.3' } });
    const plain = await echo.waitForConnection((x) => x.url.includes(idPlain), 2000);
    assert.equal(plain.headers['x-forwarded-for'], '127.0.0.1');

    // Without any incoming XFF the trusted balancer sends just the peer.
    const idNone = tunnelId();
    await open(`/xff?id=${idNone}`, { localAddress: '127.0.0.1' }, trusting);
    const none = await echo.waitForConnection((x) => x.url.includes(idNone), 2000);
    assert.equal(none.headers['x-forwarded-for'], '127.0.0.1');
  });

  void it('does not forward hop-by-hop headers', async () => {
    const id = tunnelId();
    const { socket } = await rawWebSocket(balancer.port, {
      path: `/hop?id=${id}`,
      host: `127.0.0.1:${balancer.port}`,
      headers: {
        Connection: 'Upgrade, X-Hop-Secret',
        'X-Hop-Secret': 'do-not-forward',
        'Keep-Alive': 'timeout=5',
        'Proxy-Authorization': 'Basic cHJveHk6c2VjcmV0',
        'Proxy-Connection': 'keep-alive',
        TE: 'trailers',
        Trailer: 'X-Checksum',
        'X-End-To-End': 'forward-me',
      },
    });
    try {
      const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
      assert.equal(conn.headers['x-end-to-end'], 'forward-me', 'ordinary headers are forwarded');
      for (const h of ['x-hop-secret', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding']) {
        assert.equal(conn.headers[h], undefined, `${h} must not reach the backend`);
      }
    } finally {
      socket.destroy();
    }
  });

  void it("passes the backend's refusal status (401/403/404) to the client", async () => {
    for (const status of [403, 401, 404]) {
      assert.equal(await upgradeStatus(balancer.url(`/refuse/${status}`)), status, `backend refused with ${status}`);
    }
    assert.ok(refusing.refused.length >= 3, 'the refusing backend saw the upgrades');
    assert.equal(refusing.connections.length, 0);
  });

  void it('answers 502 to a refusal whose header lines would smuggle a header to the client', async () => {
    assert.equal(await upgradeStatus(balancer.url('/smuggle')), 502);
    assert.ok(smuggling.heads.length >= 1, 'the backend was asked');
  });

  void it('relays the close code and reason from client to backend', async () => {
    const id = tunnelId();
    const c = await open(`/close-c?id=${id}`);
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    c.ws.close(4001, 'bye');
    const seen = await waitFor(() => conn.closeInfo, 5000, 'the backend to see the close');
    assert.deepEqual(seen, { code: 4001, reason: 'bye' });
    await c.waitClose(); // the closing handshake completes
  });

  void it('relays the close code and reason from backend to client', async () => {
    const id = tunnelId();
    const c = await open(`/close-b?id=${id}`);
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    conn.ws.close(4002, 'later');
    assert.deepEqual(await c.waitClose(5000), { code: 4002, reason: 'later' });
    assert.equal((await conn.closed).code, 4002);
  });

  void it('closes the client with 1012 when the backend TCP connection drops without a close frame', async () => {
    const id = tunnelId();
    const c = await open(`/lost?id=${id}`);
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    assert.equal((await c.request('before')).text, 'before');
    conn.ws.terminate();
    const info = await c.waitClose(5000);
    assert.equal(info.code, 1012);
  });

  void it('closes the client with 1012 when the backend resets mid-tunnel, while the client keeps sending', async () => {
    const id = tunnelId();
    const c = await open(`/reset?id=${id}`);
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    assert.equal((await c.request('before')).text, 'before');
    const piece = Buffer.alloc(64 * 1024, 0x72);
    for (let i = 0; i < 8; i++) c.send(piece, true);
    conn.socket.resetAndDestroy(); // RST: the balancer's next read or write fails with ECONNRESET/EPIPE
    for (let i = 0; i < 8 && c.isOpen; i++) c.send(piece, true);
    const info = await c.waitClose(5000);
    assert.equal(info.code, 1012);
    const after = await open(`/after-reset?id=${id}`);
    assert.equal((await after.request('still here')).text, 'still here', 'the worker survived the reset');
  });

  void it('closes the backend side promptly when the client vanishes', async () => {
    const id = tunnelId();
    const { socket } = await rawWebSocket(balancer.port, { path: `/vanish?id=${id}` });
    const conn = await echo.waitForConnection((x) => x.url.includes(id), 2000);
    assert.equal(conn.closeInfo, undefined);
    socket.destroy();
    const started = Date.now();
    await waitFor(() => conn.closeInfo, 2500, 'the backend side to be closed after the client vanished');
    assert.ok(Date.now() - started < 2500);
  });
});
