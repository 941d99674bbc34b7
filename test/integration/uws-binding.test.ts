// What the uWebSockets.js build this runtime loads does on its own, before any JavaScript runs,
// pinned so that a binding change shows up here first. CI runs this on both builds: Node 20 on
// Debian 12 loads @rjweb/uws (the old build), Node 24 on Debian 13 @btc-vision/uwebsockets.js (the
// current one); each assertion says what each build does (docs/design.md, "uWebSockets.js").
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { runCli, startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { openSocket, readResponseHead } from '../helpers/raw-client';
import { waitFor } from '../helpers/wait';
import { connect, type TestClient } from '../helpers/ws-client';
import { BINDING_ENV, closeListenSocket, forEachHeader, httpIdleCloseMs, listenSocketPort, oldBuild, uws, uwsBindingName, type ListenSocket } from '../../src/uws';

/** The C library's version, as Node reports it ('' on a C library other than glibc). */
function glibc(): [number, number] {
  const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
  const [major, minor] = (header.glibcVersionRuntime ?? '0.0').split('.').map(Number);
  return [major, minor];
}

/** The build that must load on this runtime: the current one wherever it can, else the old one (Node 20). */
function expectedBinding(): string {
  const [major, minor] = glibc();
  const node = Number(process.versions.node.split('.')[0]);
  const currentLoads = (major > 2 || (major === 2 && minor >= 38)) && [20, 22, 24, 25].includes(node);
  return currentLoads ? '@btc-vision/uwebsockets.js' : '@rjweb/uws';
}

/** Sends `first`, waits, sends `rest` (a request split across TCP segments); the status, 0 for none. */
async function splitRequest(port: number, first: string, rest: string): Promise<number> {
  const socket = await openSocket(port);
  socket.setNoDelay(true);
  socket.write(first);
  await delay(30);
  socket.write(rest);
  try {
    return (await readResponseHead(socket)).status;
  } catch {
    return 0;
  } finally {
    socket.destroy();
  }
}

/** A connection the test watches to its end: what it was answered and when it closed. */
interface Watched {
  socket: Socket;
  openedAt: number;
  closedAt?: number;
  answer: string;
}

/** Connects and calls `start` with the socket; records every byte answered and when it closed. */
function watch(port: number, start: (socket: Socket) => void): Watched {
  const entry: Watched = { socket: netConnect(port, '127.0.0.1', () => start(entry.socket)), openedAt: Date.now(), answer: '' };
  entry.socket.setNoDelay(true);
  entry.socket.on('data', (d: Buffer) => (entry.answer += d.toString('latin1')));
  entry.socket.on('error', () => undefined);
  entry.socket.on('close', () => (entry.closedAt = Date.now()));
  return entry;
}

/** Writes `bytesPerSecond` in ten pieces a second until `total` bytes went or the socket closed. */
function pace(socket: Socket, bytesPerSecond: number, total: number): void {
  let sent = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || sent >= total) return clearInterval(timer);
    const n = Math.min(Math.floor(bytesPerSecond / 10), total - sent);
    socket.write(Buffer.alloc(n, 0x61));
    sent += n;
  }, 100);
}

/** A request with `lines` header lines (Host included), `Host: y` first. */
function withHeaderLines(lines: number): string {
  return `GET /x HTTP/1.1\r\nHost: y\r\n${Array.from({ length: lines - 1 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`;
}

/** A request head of exactly `bytes` bytes. */
function headOfSize(bytes: number): string {
  const bare = 'GET /x HTTP/1.1\r\nHost: y\r\nX-Big: \r\n\r\n';
  return `GET /x HTTP/1.1\r\nHost: y\r\nX-Big: ${'a'.repeat(bytes - bare.length)}\r\n\r\n`;
}

/** The status uWS or the balancer answers `head` with, sent in `pieces` writes 20 ms apart; 0 when the connection closed unanswered or nothing came within 2 s. */
async function statusOf(port: number, head: string, pieces = 1): Promise<number> {
  const socket = await openSocket(port);
  socket.setNoDelay(true);
  const step = Math.ceil(head.length / pieces);
  for (let at = 0; at < head.length; at += step) {
    if (at > 0) await delay(20);
    socket.write(Buffer.from(head.slice(at, at + step), 'latin1'));
  }
  try {
    return (await readResponseHead(socket, 2000)).status;
  } catch {
    return 0;
  } finally {
    socket.destroy();
  }
}

/** Listens on a free port with a bare uWS app of this process (no balancer in the way); resolves with the port and a close function. */
async function listenBare(app: ReturnType<typeof uws.App>): Promise<{ port: number; close: () => void }> {
  let listen: ListenSocket | false = false;
  const port = await new Promise<number>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (l) => {
      listen = l;
      if (l) resolve(listenSocketPort(l));
      else reject(new Error('uWS could not listen'));
    });
  });
  return { port, close: () => listen && closeListenSocket(listen) };
}

/** Sends `bytes` (latin1) and collects what comes back until the connection closes or 1 s passes. */
async function rawExchange(port: number, bytes: string): Promise<{ answer: string; closed: boolean }> {
  const socket = await openSocket(port);
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  socket.write(Buffer.from(bytes, 'latin1'));
  const wasClosed = await Promise.race([closed, delay(1000).then(() => false)]);
  socket.destroy();
  return { answer, closed: wasClosed };
}

/** The request head limit the current build runs with (src/uws.ts sets it unless the environment did). */
const headLimit = Number(process.env.UWS_HTTP_MAX_HEADERS_SIZE);
const KiB = 1024;

void describe('the uWebSockets.js build', { timeout: 90_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;
  let tunnel: TestClient;
  // Connections that sent the start of a request (or bytes uWS cannot judge yet) and stopped.
  const stalled: { socket: Socket; closedAt?: number; answer: string }[] = [];
  let stalledAt = 0;
  // Slow things watched from the start, so that their waits overlap the stalled connections' one.
  let manyLines: Watched;
  let noHost: Watched;
  let slowUpload: Watched;
  let steadyUpload: Watched;
  /** Seconds the steady upload lasts: past the time the slow one is cut. */
  const uploadSeconds = Math.ceil(httpIdleCloseMs / 1000) + 4;

  before(async () => {
    backend = await startEchoBackend({ name: 'a' });
    balancer = await startBalancer({ workers: 1, config: { pools: { p: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'p' }] } });
    tunnel = await connect(balancer.url('/chat'));
    stalledAt = Date.now();
    for (const bytes of [Buffer.from('GET'), Buffer.from('GET /x HTTP/1.1\r\nHost: y\r\n'), Buffer.from([0x0f, 0xdf])]) {
      const entry: (typeof stalled)[number] = { socket: netConnect(balancer.port, '127.0.0.1', () => entry.socket.write(bytes)), answer: '' };
      entry.socket.on('data', (d: Buffer) => (entry.answer += d.toString('latin1')));
      entry.socket.on('error', () => undefined);
      entry.socket.on('close', () => (entry.closedAt = Date.now()));
      stalled.push(entry);
    }
    manyLines = watch(balancer.port, (socket) => socket.write(withHeaderLines(49)));
    noHost = watch(balancer.port, (socket) => socket.write('GET /no-host HTTP/1.1\r\n\r\n'));
    const upload = (bytesPerSecond: number, total: number) => (socket: Socket) => {
      socket.write(`POST /upload HTTP/1.1\r\nHost: y\r\nContent-Length: ${total}\r\n\r\n`);
      pace(socket, bytesPerSecond, total);
    };
    slowUpload = watch(balancer.port, upload(8 * KiB, 8 * KiB * 60));
    steadyUpload = watch(balancer.port, upload(32 * KiB, 32 * KiB * uploadSeconds));
  });

  after(async () => {
    for (const s of [...stalled, manyLines, noHost, slowUpload, steadyUpload]) s?.socket.destroy();
    tunnel?.terminate();
    await stopAll(balancer);
    await closeAll(backend);
  });

  void it('is the one this runtime supports, and the startup log names it', () => {
    assert.equal(uwsBindingName, expectedBinding(), `Node ${process.version}, glibc ${glibc().join('.')}`);
    const ready = balancer.logs.find((l) => l.msg === 'switchyard ready');
    assert.equal(ready?.binding, uwsBindingName);
    assert.equal(balancer.logs.find((l) => l.msg === 'uWebSockets.js binding loaded')?.binding, uwsBindingName);
  });

  void it(`${BINDING_ENV} restricts loading to one build; one that cannot load fails the start with one line saying why`, async () => {
    const other = uwsBindingName === '@rjweb/uws' ? '@btc-vision/uwebsockets.js' : '@rjweb/uws';
    const run = (binding: string) => runCli(['start', '--port', '0', '--no-admin', '--backend', backend.url], 15_000, { [BINDING_ENV]: binding });
    const unknown = await run('uWebSockets.js');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /SWITCHYARD_UWS_BINDING=uWebSockets\.js: must be one of @btc-vision\/uwebsockets\.js, @rjweb\/uws/);
    const forced = await run(other);
    const node = Number(process.versions.node.split('.')[0]);
    const [major, minor] = glibc();
    const otherLoads = other === '@rjweb/uws' ? node === 20 : major === 2 && minor >= 38;
    if (otherLoads) {
      // Node 20 on a current C library loads either: the forced one must be the one named.
      assert.equal(forced.code, null, forced.stderr);
      assert.match(forced.stdout, new RegExp(`"binding":"${other.replace('/', '\\/')}"`));
    } else {
      assert.equal(forced.code, 1);
      const lines = forced.stderr.trim().split('\n');
      assert.equal(lines.length, 1, forced.stderr);
      assert.match(lines[0], new RegExp(`^switchyard: no uWebSockets\\.js binding could be loaded on Node ${process.version.replaceAll('.', '\\.')}.*Tried: ${other}: `));
      assert.match(lines[0], other === '@rjweb/uws' ? /uws_linux_\w+_\d+\.node/ : /GLIBC_2\.38/, 'the reason: the Node ABI the build lacks, or the C library it needs');
    }
  });

  void it('answers HTTP/1.0 with 505 (both builds)', async () => {
    for (const head of ['GET /http10 HTTP/1.0\r\nHost: y\r\n\r\n', 'GET /http10 HTTP/1.0\r\n\r\n']) {
      const socket = await openSocket(balancer.port);
      socket.write(head);
      const res = await readResponseHead(socket);
      socket.destroy();
      assert.equal(res.status, 505, JSON.stringify(head));
    }
    assert.equal(backend.httpRequests.filter((r) => r.url === '/http10').length, 0, 'nothing reached the backend');
  });

  void it(oldBuild ? 'answers 505 to a request line split after its method (uNetworking/uWebSockets#1776)' : 'parses a request line split at any point', async () => {
    const line = 'GET /x HTTP/1.1\r\n';
    const statuses: number[] = [];
    for (let i = 1; i < line.length; i++) statuses.push(await splitRequest(balancer.port, line.slice(0, i), `${line.slice(i)}Host: y\r\n\r\n`));
    // The old build: 200 while the first segment ends within the method, 505 once it holds "GET ".
    const expected = statuses.map((_, i) => (oldBuild && i + 1 >= 'GET '.length ? 505 : 200));
    assert.deepEqual(statuses, expected, `split after byte 1..${line.length - 1}`);
  });

  void it(oldBuild ? 'corrupts a 16 KiB+ message sent uncompressed to a slow reader (the tunnel sends with compress=true)' : 'sends 16 KiB+ messages uncompressed intact to a slow reader', async () => {
    // A bare uWS app in this process: the binding's own send(), without the tunnel's workaround.
    const MiB = 1 << 20;
    const messages = Array.from({ length: 16 }, (_, m) => {
      const b = Buffer.alloc(MiB);
      for (let j = 0; j < MiB; j += 4) b.writeUInt32LE((m * MiB + j) >>> 0, j);
      return b;
    });
    let listen: ListenSocket | false = false;
    const port = await new Promise<number>((resolve, reject) => {
      uws
        .App()
        .ws('/*', { maxBackpressure: 256 * MiB, open: (ws) => messages.forEach((m) => ws.send(m, true, false)) })
        .listen('127.0.0.1', 0, (s) => {
          listen = s;
          if (s) resolve(listenSocketPort(s));
          else reject(new Error('uWS could not listen'));
        });
    });
    try {
      const socket = await openSocket(port);
      socket.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      const head = await readResponseHead(socket); // leaves the socket paused: the kernel takes only part
      assert.equal(head.status, 101);
      await delay(500);
      let buf = head.rest;
      let intact = 0;
      let damaged = false;
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (!damaged && buf.length >= 10) {
          const len = (buf[1] & 127) === 127 ? Number(buf.readBigUInt64BE(2)) : -1;
          if (len < 0 || (buf[0] & 15) !== 2) return void (damaged = true);
          if (buf.length < 10 + len) return;
          if (!buf.subarray(10, 10 + len).equals(messages[intact])) return void (damaged = true);
          intact++;
          buf = buf.subarray(10 + len);
        }
      });
      socket.resume();
      await waitFor(() => damaged || intact === messages.length, 15_000, 'the messages or a damaged one');
      socket.destroy();
      assert.equal(damaged, oldBuild, `${intact} intact before ${damaged ? 'a damaged frame' : 'the end'}`);
    } finally {
      if (listen) closeListenSocket(listen);
    }
  });

  void it(`closes a connection that stalls inside a request, unanswered, after ~${httpIdleCloseMs / 1000} s; others are undisturbed`, async () => {
    assert.equal((await tunnel.request('while they stall')).text, 'while they stall');
    await waitFor(() => stalled.every((s) => s.closedAt !== undefined), httpIdleCloseMs + 8000, 'the stalled connections to be closed');
    for (const s of stalled) {
      const after = s.closedAt! - stalledAt;
      assert.equal(s.answer, '', 'no answer');
      assert.ok(after > httpIdleCloseMs - 8000 && after < httpIdleCloseMs + 5000, `closed ${after} ms after it stalled`);
    }
    assert.equal((await tunnel.request('after')).text, 'after');
  });
  void it(
    oldBuild
      ? 'leaves a request with 49 or more header lines unanswered until the idle close (48 are answered)'
      : 'answers up to 98 header lines, and 431 from 99 on',
    async () => {
      if (oldBuild) {
        assert.equal(await statusOf(balancer.port, withHeaderLines(48)), 200);
        await waitFor(() => manyLines.closedAt !== undefined, httpIdleCloseMs + 8000, 'the 49-line request to be closed');
        assert.equal(manyLines.answer, '', 'no answer, not even a 431');
        assert.ok(manyLines.closedAt! - manyLines.openedAt > httpIdleCloseMs - 8000, 'closed by the idle timeout');
      } else {
        assert.equal(await statusOf(balancer.port, withHeaderLines(98)), 200);
        assert.equal(await statusOf(balancer.port, withHeaderLines(99)), 431);
        await waitFor(() => manyLines.answer.includes('\r\n\r\n'), 5000, 'the 49-line request to be answered');
        assert.match(manyLines.answer, /^HTTP\/1\.1 200 /);
      }
    },
  );

  void it(
    oldBuild
      ? 'takes a request head of 4 KiB that arrives in pieces (431 beyond); a larger one only when it comes in one read'
      : `takes a request head up to UWS_HTTP_MAX_HEADERS_SIZE (${headLimit / KiB} KiB, set by src/uws.ts), 431 beyond`,
    async () => {
      // A bare app: through the balancer the backend's own limit (Node's is 16 KiB) would answer first.
      const bare = await listenBare(uws.App().any('/*', (res) => void res.end('ok')));
      try {
        if (oldBuild) {
          assert.equal(await statusOf(bare.port, headOfSize(4 * KiB), 2), 200);
          assert.equal(await statusOf(bare.port, headOfSize(4 * KiB + 1), 2), 431);
          // One read: the head is parsed where it lies, not copied aside, and the 4 KiB do not apply.
          assert.equal(await statusOf(bare.port, headOfSize(64 * KiB), 1), 200);
          assert.equal(await statusOf(bare.port, headOfSize(8 * KiB), 4), 431);
        } else {
          assert.equal(headLimit, 16 * KiB);
          for (const pieces of [1, 4]) {
            assert.equal(await statusOf(bare.port, headOfSize(headLimit), pieces), 200);
            assert.equal(await statusOf(bare.port, headOfSize(headLimit + 1), pieces), 431);
          }
        }
      } finally {
        bare.close();
      }
    },
  );

  void it(oldBuild ? 'leaves an HTTP/1.1 request without Host unanswered until the idle close' : 'answers an HTTP/1.1 request without Host with its own 400 and closes the connection', async () => {
    if (oldBuild) {
      await waitFor(() => noHost.closedAt !== undefined, httpIdleCloseMs + 8000, 'the request without Host to be closed');
      assert.equal(noHost.answer, '');
      assert.ok(noHost.closedAt! - noHost.openedAt > httpIdleCloseMs - 8000, 'closed by the idle timeout');
    } else {
      await waitFor(() => noHost.closedAt !== undefined, 5000, 'the request without Host to be answered and closed');
      assert.match(noHost.answer, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*<h1>Bad Request<\/h1>/);
    }
    assert.equal(backend.httpRequests.filter((r) => r.url === '/no-host').length, 0);
  });

  void it(oldBuild ? 'passes two Host lines to JavaScript (the balancer answers 400)' : 'answers two Host lines with its own 400 and closes the connection', async () => {
    const { answer, closed } = await rawExchange(balancer.port, 'GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    if (oldBuild) assert.ok(answer.endsWith('more than one Host header\n') && !closed, answer);
    else assert.ok(answer.includes('<h1>Bad Request</h1>') && closed, answer);
  });

  void it('closes the connection, unanswered, when a request arrives while an earlier one waits for its backend (no pipelining)', async () => {
    const answered = await rawExchange(balancer.port, `GET /one HTTP/1.1\r\nHost: y\r\n\r\nGET /two HTTP/1.1\r\nHost: y\r\n\r\n`);
    assert.deepEqual(answered, { answer: '', closed: true });
    // Answers the balancer gives at once (here 400s: an Upgrade that is no WebSocket handshake) are pipelined fine.
    const immediate = await rawExchange(balancer.port, 'GET /a HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n'.repeat(2));
    assert.equal(immediate.answer.match(/HTTP\/1\.1 400 /g)?.length, 2, immediate.answer);
  });

  void it(`cuts an upload slower than 16 KiB/s after ~${httpIdleCloseMs / 1000} s without an answer; a faster one completes`, async () => {
    await waitFor(() => slowUpload.closedAt !== undefined, httpIdleCloseMs + 10_000, 'the slow upload to be cut');
    const after = slowUpload.closedAt! - slowUpload.openedAt;
    assert.equal(slowUpload.answer, '', 'no answer (no 408): the connection is closed');
    assert.ok(after > httpIdleCloseMs - 8000 && after < httpIdleCloseMs + 5000, `cut ${after} ms after it began`);
    await waitFor(() => steadyUpload.answer.includes('\r\n\r\n'), (uploadSeconds + 10) * 1000, 'the steady upload to be answered');
    assert.match(steadyUpload.answer, /^HTTP\/1\.1 200 /);
    assert.ok(steadyUpload.closedAt === undefined || steadyUpload.closedAt - steadyUpload.openedAt > uploadSeconds * 1000 - 2000);
  });

  void it('hands header values and the URL to JavaScript decoded as UTF-8 (U+FFFD for other bytes), getHeader() as bytes, and trims bytes 0x80-0xFF at both ends of a value', async () => {
    const seen: { url: string; each: [string, string][]; first: string }[] = [];
    const bare = await listenBare(
      uws.App().any('/*', (res, req) => {
        const each: [string, string][] = [];
        forEachHeader(req, (k, v) => each.push([k, v]));
        seen.push({ url: req.getUrl(), each, first: req.getHeader('x-a') });
        res.end('ok');
      }),
    );
    const port = bare.port;
    try {
      const head = 'GET /caf\xe9/\xc3\xa9 HTTP/1.1\r\nHost: y\r\nX-A: a\xe9b\r\nX-A: c\r\nX-B: \xe9mid\xe9\r\nX-C: \xc3\xa9t\xc3\xa9\r\n\r\n';
      assert.equal(await statusOf(port, head), 200);
      assert.deepEqual(seen, [
        {
          url: '/caf\ufffd/\u00e9',
          each: [['host', 'y'], ['x-a', 'a\ufffdb'], ['x-a', 'c'], ['x-b', 'mid'], ['x-c', 't']],
          first: 'a\xe9b',
        },
      ]);
    } finally {
      bare.close();
    }
  });
});
