// What crosses the balancer byte for byte, and what it refuses rather than alter: the client address
// behind trusted proxies, Host, Connection tokens, a backend's interim and bodiless answers, a
// response head that stalls half way, and header bytes outside ASCII. Backends are raw TCP servers,
// so every byte either side sends is the test's.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { acceptKey, closeAll, startRawHttpBackend, type RawHttpBackend } from '../helpers/backends';
import { openSocket, readResponseHead, upgradeRequest } from '../helpers/raw-client';
import { waitFor } from '../helpers/wait';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const HINTS = 'HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n';

/** The plain-HTTP backend's answers, by path. */
function answerHttp(socket: Socket, head: string): void {
  const path = head.split(' ')[1] ?? '';
  if (path.startsWith('/half-head')) socket.write('HTTP/1.1 200 OK\r\nContent-Le'); // and nothing more
  else if (path.startsWith('/hints/')) socket.write(HINTS.repeat(Number(path.slice('/hints/'.length))) + OK);
  else if (path.startsWith('/latin1')) socket.write(Buffer.from('HTTP/1.1 200 D\xe9j\xe0 vu\r\nX-A: caf\xe9\r\nX-B: \xff\x80 mid \xa0!\r\nContent-Length: 2\r\n\r\nok', 'latin1'));
  else socket.write(OK);
}

interface UpgradeBackend {
  port: number;
  url: string;
  /** Upgrade request heads received, as latin1 text. */
  heads: string[];
  close(): Promise<void>;
}

/** A WebSocket backend whose answer to each upgrade is chosen by its path. */
async function startUpgradeBackend(): Promise<UpgradeBackend> {
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.on('data', () => undefined);
      const head = buf.subarray(0, end).toString('latin1');
      heads.push(head);
      const path = head.split(' ')[1] ?? '';
      const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head)?.[1] ?? '';
      const switching = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`;
      if (path.startsWith('/ws/204')) socket.write('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello');
      else if (path.startsWith('/ws/304')) socket.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello');
      else if (path.startsWith('/ws/interim/')) socket.write(HINTS.repeat(Number(path.slice('/ws/interim/'.length))) + switching);
      else if (path.startsWith('/ws/latin1')) socket.write(Buffer.from('HTTP/1.1 403 Verbot\xe9n\r\nWWW-Authenticate: Basic realm="caf\xe9"\r\nContent-Length: 0\r\n\r\n', 'latin1'));
      else socket.write(switching);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    heads,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Answer {
  status: number;
  statusLine: string;
  headers: Record<string, string>;
  /** Bytes after the head that came with it. */
  rest: Buffer;
  socket: Socket;
}

/** Sends `bytes` on a fresh connection (from `localAddress`) and reads one response head; the socket stays open. */
async function send(port: number, bytes: string | Buffer, localAddress?: string, timeoutMs = 5000): Promise<Answer> {
  const socket = await openSocket(port, localAddress);
  socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  try {
    return { ...(await readResponseHead(socket, timeoutMs)), socket };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

const get = (path: string, lines: string[] = ['Host: h']): string => `GET ${path} HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
/** The value of header `name` in a head received by a backend (latin1 text: one character a byte). */
const valueIn = (head: string, name: string): string[] =>
  head
    .split('\r\n')
    .filter((l) => l.toLowerCase().startsWith(`${name}:`))
    .map((l) => l.slice(name.length + 1).trim());

void describe('exact header handling', { timeout: 60_000 }, () => {
  let http: RawHttpBackend;
  /** The backend of the route that names a host. */
  let named: RawHttpBackend;
  let ws: UpgradeBackend;
  let balancer: Balancer;
  const opened: Socket[] = [];
  const keep = (a: Answer): Answer => {
    opened.push(a.socket);
    return a;
  };
  /** The head the HTTP backend received for the request whose path starts with `path`. */
  const receivedHttp = (path: string): Promise<string> => waitFor(() => http.heads.find((h) => h.split(' ')[1]?.startsWith(path)), 5000, `a request for ${path} at the backend`);

  before(async () => {
    http = await startRawHttpBackend(answerHttp);
    named = await startRawHttpBackend(answerHttp);
    ws = await startUpgradeBackend();
    balancer = await startBalancer({
      workers: 1,
      config: {
        accessLog: true,
        trustedProxies: ['127.0.0.1'],
        pools: {
          web: { responseTimeout: '1s', retries: 0, backends: [{ url: http.url }] },
          named: { retries: 0, backends: [{ url: named.url }] },
          chat: { retries: 0, backends: [{ url: ws.url }] },
        },
        routes: [
          { path: '/ws', pool: 'chat', mode: 'websocket' },
          { host: 'named.example', path: '/', pool: 'named', mode: 'http' },
          { path: '/', pool: 'web', mode: 'http' },
        ],
      },
    });
  });

  after(async () => {
    for (const s of opened) s.destroy();
    await stopAll(balancer);
    await closeAll(http, named, ws);
  });

  void describe('the client address behind a trusted proxy', () => {
    void it("takes the address the trusted proxy appended, not a line the client wrote (HAProxy's option forwardfor)", async () => {
      // 127.0.0.1 is trusted: it plays HAProxy, which adds its own X-Forwarded-For line after the client's.
      const a = keep(await send(balancer.port, get('/xff', ['Host: h', 'X-Forwarded-For: 6.6.6.6', 'X-Forwarded-For: 203.0.113.7'])));
      assert.equal(a.status, 200);
      const head = await receivedHttp('/xff');
      assert.deepEqual(valueIn(head, 'x-real-ip'), ['203.0.113.7']);
      assert.deepEqual(valueIn(head, 'x-forwarded-for'), ['6.6.6.6, 203.0.113.7, 127.0.0.1']);
      const line = await balancer.waitForLog((l) => l.log === 'access' && l.url === '/xff', 5000, 'the access line');
      assert.equal(line.client, '203.0.113.7');
    });

    void it('replaces X-Forwarded-Proto and X-Forwarded-Host from a peer that is not trusted', async () => {
      keep(await send(balancer.port, get('/untrusted', ['Host: h', 'X-Forwarded-Proto: https', 'X-Forwarded-Host: evil.example', 'X-Forwarded-For: 6.6.6.6']), '127.0.0.2'));
      const head = await receivedHttp('/untrusted');
      assert.deepEqual(valueIn(head, 'x-forwarded-proto'), ['http']);
      assert.deepEqual(valueIn(head, 'x-forwarded-host'), ['h']);
      assert.deepEqual(valueIn(head, 'x-forwarded-for'), ['127.0.0.2']);
      assert.deepEqual(valueIn(head, 'x-real-ip'), ['127.0.0.2']);
    });
  });

  void describe('Host', () => {
    void it('answers two Host lines with 400, upgrade or not, and forwards nothing (as NGINX)', async () => {
      const before = http.heads.length + named.heads.length + ws.heads.length;
      const plain = keep(await send(balancer.port, get('/two-hosts', ['Host: a.example', 'Host: named.example'])));
      assert.equal(plain.status, 400);
      const upgrade = keep(await send(balancer.port, upgradeRequest({ path: '/ws/two-hosts', headers: { Host: 'a.example\r\nHost: b.example' } }).text));
      assert.equal(upgrade.status, 400);
      assert.equal(http.heads.length + named.heads.length + ws.heads.length, before, 'nothing reached a backend');
    });

    void it('ignores a trailing dot when matching routes', async () => {
      keep(await send(balancer.port, get('/dotted', ['Host: named.example.'])));
      const head = await waitFor(() => named.heads.find((h) => h.startsWith('GET /dotted ')), 5000, 'the request at the named route\'s backend');
      assert.deepEqual(valueIn(head, 'host'), ['named.example.'], 'the Host itself passes unchanged');
    });
  });

  void it('never lets a Connection token remove Host', async () => {
    const a = keep(await send(balancer.port, get('/conn-host', ['Host: h.example', 'Connection: keep-alive, host'])));
    assert.equal(a.status, 200);
    assert.deepEqual(valueIn(await receivedHttp('/conn-host'), 'host'), ['h.example']);
    const up = keep(await send(balancer.port, upgradeRequest({ path: '/ws/conn-host', headers: { Connection: 'Upgrade, Host' } }).text));
    assert.equal(up.status, 101);
    assert.deepEqual(valueIn(ws.heads.find((h) => h.includes('/ws/conn-host'))!, 'host'), ['127.0.0.1']);
  });

  void describe("a backend's response head", () => {
    void it('times out (504) when it stops half way: responseTimeout lasts until the head is complete', async () => {
      const started = Date.now();
      const a = keep(await send(balancer.port, get('/half-head'), undefined, 8000));
      assert.equal(a.status, 504);
      assert.ok(Date.now() - started < 7000);
    });

    void it('skips interim (1xx) responses, up to 5; more is a broken backend (502)', async () => {
      const some = keep(await send(balancer.port, get('/hints/5')));
      assert.equal(some.status, 200);
      assert.equal(some.rest.toString(), 'ok');
      const many = keep(await send(balancer.port, get('/hints/6')));
      assert.equal(many.status, 502);
    });

    void it('skips interim responses before a 101 too, up to 5', async () => {
      const some = keep(await send(balancer.port, upgradeRequest({ path: '/ws/interim/2' }).text));
      assert.equal(some.status, 101);
      const many = keep(await send(balancer.port, upgradeRequest({ path: '/ws/interim/6' }).text));
      assert.equal(many.status, 502);
    });

    for (const status of [204, 304]) {
      void it(`relays a ${status} refusing an upgrade without the body the backend sent with it`, async () => {
        const a = keep(await send(balancer.port, upgradeRequest({ path: `/ws/${status}` }).text));
        assert.equal(a.status, status);
        assert.equal(a.headers['content-length'] ?? '0', '0');
        // The connection stays open: the next answer on it must be the next request's, not the body.
        const rest = a.rest.length;
        a.socket.write(get('/after-refusal'));
        const next = await readResponseHead(a.socket);
        assert.equal(rest, 0, 'nothing after the head');
        assert.equal(next.status, 200);
      });
    }
  });

  void describe('bytes outside ASCII', () => {
    void it("passes a response's header and reason bytes unchanged (latin1 in, the same bytes out)", async () => {
      const a = keep(await send(balancer.port, get('/latin1')));
      assert.equal(a.statusLine, 'HTTP/1.1 200 D\xe9j\xe0 vu');
      assert.equal(a.headers['x-a'], 'caf\xe9');
      assert.equal(a.headers['x-b'], '\xff\x80 mid \xa0!');
    });

    void it("passes an upgrade refusal's header bytes unchanged", async () => {
      const a = keep(await send(balancer.port, upgradeRequest({ path: '/ws/latin1' }).text));
      assert.equal(a.statusLine, 'HTTP/1.1 403 Verbot\xe9n');
      assert.equal(a.headers['www-authenticate'], 'Basic realm="caf\xe9"');
    });

    void it('passes request header bytes unchanged, UTF-8 or not', async () => {
      const request = Buffer.concat([
        Buffer.from('GET /bytes HTTP/1.1\r\nHost: h\r\nX-Latin1: ca\xe9f\r\nX-Utf8: ', 'latin1'),
        Buffer.from('ca\u00e9f \u4e2d!', 'utf8'),
        Buffer.from('\r\nX-Mixed: a\xff\x80 \xef\xbf\xbd!\r\n\r\n', 'latin1'),
      ]);
      assert.equal(keep(await send(balancer.port, request)).status, 200);
      const head = await receivedHttp('/bytes');
      assert.deepEqual(valueIn(head, 'x-latin1'), ['ca\xe9f']);
      assert.deepEqual(valueIn(head, 'x-utf8'), [Buffer.from('ca\u00e9f \u4e2d!', 'utf8').toString('latin1')]);
      assert.deepEqual(valueIn(head, 'x-mixed'), ['a\xff\x80 \xef\xbf\xbd!']);
      const up = Buffer.concat([Buffer.from(upgradeRequest({ path: '/ws/bytes', headers: { 'X-Latin1': 'ca\xe9f' } }).text, 'latin1')]);
      assert.equal(keep(await send(balancer.port, up)).status, 101);
      assert.deepEqual(valueIn(ws.heads.find((h) => h.includes('/ws/bytes'))!, 'x-latin1'), ['ca\xe9f']);
    });

    void it('passes a URL in UTF-8 unchanged', async () => {
      const path = Buffer.from('/caf\u00e9?q=\u00e9', 'utf8').toString('latin1');
      assert.equal(keep(await send(balancer.port, get(path))).status, 200);
      assert.ok(await receivedHttp(path));
    });

    void it('refuses with 400 what uWS hands over altered: a URL not in UTF-8, a repeated header not in UTF-8', async () => {
      const before = http.heads.length + ws.heads.length;
      assert.equal(keep(await send(balancer.port, get('/caf\xe9'))).status, 400);
      assert.equal(keep(await send(balancer.port, get('/q?x=\xe9'))).status, 400);
      assert.equal(keep(await send(balancer.port, get('/dup', ['Host: h', 'X-A: 1\xe92', 'X-A: 3\xe94']))).status, 400);
      assert.equal(keep(await send(balancer.port, upgradeRequest({ path: '/ws/caf\xe9' }).text)).status, 400);
      assert.equal(http.heads.length + ws.heads.length, before, 'nothing reached a backend');
    });
  });
});
