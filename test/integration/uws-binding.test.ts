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
import { BINDING_ENV, closeListenSocket, httpIdleCloseMs, listenSocketPort, oldBuild, uws, uwsBindingName, type ListenSocket } from '../../src/uws';

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

void describe('the uWebSockets.js build', { timeout: 90_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;
  let tunnel: TestClient;
  // Connections that sent the start of a request (or bytes uWS cannot judge yet) and stopped.
  const stalled: { socket: Socket; closedAt?: number; answer: string }[] = [];
  let stalledAt = 0;

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
  });

  after(async () => {
    for (const s of stalled) s.socket.destroy();
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
    for (const head of ['GET /x HTTP/1.0\r\nHost: y\r\n\r\n', 'GET /x HTTP/1.0\r\n\r\n']) {
      const socket = await openSocket(balancer.port);
      socket.write(head);
      const res = await readResponseHead(socket);
      socket.destroy();
      assert.equal(res.status, 505, JSON.stringify(head));
    }
    assert.equal(backend.httpRequests.length, 0, 'nothing reached the backend');
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
});
