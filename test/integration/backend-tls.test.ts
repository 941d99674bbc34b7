// TLS to backends: wss:// and https:// backends verified against a CA, mutual TLS, certificates the
// balancer must refuse (expired, wrong name, unknown CA: 502 backend_tls, counted against the backend,
// the cause in the log), verify: false, health checks over TLS, the config checks of the files, and
// PROXY protocol v2 sent to backends (sendProxyProtocol), before TLS.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { backendStatus } from '../helpers/admin';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { runCli, startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { scrape } from '../helpers/metrics';
import { waitFor } from '../helpers/wait';
import { readProxyHeader } from '../../src/proxy-header';
import { freePort } from '../helpers/ports';
import { certificateDir, makeCa, makeSignedCertificate, type TestCertificate } from '../helpers/tls';
import { closeClients, connect, upgradeStatus, type TestClient } from '../helpers/ws-client';

const certs = certificateDir();
const started: EchoBackend[] = [];
const balancers: Balancer[] = [];
const clients: TestClient[] = [];
after(async () => {
  await closeClients(clients);
  await stopAll(...balancers);
  await closeAll(...started);
  certs.cleanup();
});

let ca: TestCertificate;
let otherCa: TestCertificate;
let good: EchoBackend;
/** Requires a client certificate signed by `ca`. */
let mutual: EchoBackend;
let expired: EchoBackend;
let wrongName: EchoBackend;
let unknownCa: EchoBackend;
let clientCert: TestCertificate;

async function tlsBackend(name: string, cert: TestCertificate, requireClientCa?: TestCertificate): Promise<EchoBackend> {
  const b = await startEchoBackend({ name, tls: { cert: cert.cert, key: cert.key, ca: requireClientCa?.cert } });
  started.push(b);
  return b;
}

before(async () => {
  ca = makeCa(certs.dir, 'ca');
  otherCa = makeCa(certs.dir, 'other-ca');
  clientCert = makeSignedCertificate(certs.dir, 'balancer-client', ca, { altNames: 'DNS:balancer.test' });
  good = await tlsBackend('good', makeSignedCertificate(certs.dir, 'good', ca));
  mutual = await tlsBackend('mutual', makeSignedCertificate(certs.dir, 'mutual', ca), ca);
  expired = await tlsBackend('expired', makeSignedCertificate(certs.dir, 'expired', ca, { days: -1 }));
  wrongName = await tlsBackend('wrong-name', makeSignedCertificate(certs.dir, 'wrong-name', ca, { altNames: 'DNS:elsewhere.test' }));
  unknownCa = await tlsBackend('unknown-ca', makeSignedCertificate(certs.dir, 'unknown-ca', otherCa));
});

const nameOf = (b: EchoBackend): string => `127.0.0.1:${b.port}`;
const route = (pool: string): Record<string, unknown> => ({ path: `/${pool}`, pool });
/** A pool of one backend, no retry, no ejection: each failure is the client's answer. */
const single = (b: EchoBackend, tls: Record<string, unknown>): Record<string, unknown> => ({
  backends: [{ url: b.url }],
  tls,
  retries: 0,
  outlierDetection: { enabled: false },
});

async function whoami(url: string): Promise<string> {
  const c = await connect(url);
  clients.push(c);
  return c.whoami();
}

void describe('TLS to backends', { timeout: 90_000 }, () => {
  let balancer: Balancer;

  before(async () => {
    balancer = await startBalancer({
      workers: 1,
      config: {
        pools: {
          good: single(good, { ca: ca.cert }),
          https: { backends: [{ url: `https://127.0.0.1:${good.port}` }], tls: { ca: ca.cert } },
          httpsexpired: { ...single(expired, { ca: ca.cert }), backends: [{ url: `https://127.0.0.1:${expired.port}` }] },
          mtls: single(mutual, { ca: ca.cert, cert: clientCert.cert, key: clientCert.key }),
          nocert: single(mutual, { ca: ca.cert }),
          expired: single(expired, { ca: ca.cert }),
          wrongname: single(wrongName, { ca: ca.cert }),
          unknownca: single(unknownCa, { ca: ca.cert }),
          noverify: single(unknownCa, { verify: false }),
          // The bad backend fails every attempt, the retry reaches the good one; the failures eject it.
          ejecting: {
            algorithm: 'round-robin',
            backends: [{ url: expired.url }, { url: good.url }],
            tls: { ca: ca.cert },
            retries: 1,
            outlierDetection: { consecutiveFailures: 2, maxEjectionPercent: 50 },
          },
        },
        routes: ['good', 'mtls', 'nocert', 'expired', 'wrongname', 'unknownca', 'noverify', 'ejecting'].map(route).concat([
          { path: '/plain', pool: 'https', mode: 'http' },
          { path: '/plainexpired', pool: 'httpsexpired', mode: 'http' },
        ]),
      },
    });
    balancers.push(balancer);
  });

  void it('tunnels to a wss:// backend whose certificate the configured CA signed', async () => {
    const c = await connect(balancer.url('/good'));
    clients.push(c);
    assert.equal(await c.whoami(), 'good');
    assert.equal((await c.request('over TLS both ways')).text, 'over TLS both ways');
    const big = Buffer.alloc(200_000, 7); // several TLS records each way
    assert.deepEqual((await c.request(big)).data, big);
  });

  void it('forwards plain HTTP requests to an https:// backend', async () => {
    const res = await request(balancer.httpUrl('/plain/x?y=1'));
    const body = await res.body.text();
    assert.equal(res.statusCode, 200);
    assert.match(body, /good/);
    assert.ok(good.httpRequests.some((r) => r.url === '/plain/x?y=1'), 'the backend got the request');
  });

  void it('answers a plain request 502 backend_tls when the https:// backend\'s certificate is refused', async () => {
    const res = await request(balancer.httpUrl('/plainexpired/x'));
    await res.body.dump();
    assert.equal(res.statusCode, 502);
    const line = await balancer.waitForLog((l) => l.msg === 'backend TLS failed' && l.pool === 'httpsexpired', 5000, 'the TLS failure logged');
    assert.equal(line.failure, 'tls');
    assert.match(String(line.err), /certificate has expired|CERT_HAS_EXPIRED/);
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_http_requests_total', { outcome: 'backend_tls' }), 1);
  });

  void it('shows its client certificate to a backend that requires one (mutual TLS)', async () => {
    assert.equal(await whoami(balancer.url('/mtls')), 'mutual');
    assert.ok(mutual.tlsClients.includes('switchyard test balancer-client'), `client certificates seen: ${mutual.tlsClients.join(', ')}`);
  });

  void it('answers 502 backend_tls when the backend requires a client certificate and none is configured', async () => {
    assert.equal(await upgradeStatus(balancer.url('/nocert')), 502);
    const line = await balancer.waitForLog((l) => l.msg === 'backend TLS failed' && l.pool === 'nocert', 5000, 'the TLS failure logged');
    assert.match(String(line.err), /certificate required|handshake failure|alert/i);
  });

  const refusals: [pool: string, backend: () => EchoBackend, cause: RegExp][] = [
    ['expired', () => expired, /certificate has expired|CERT_HAS_EXPIRED/],
    ['wrongname', () => wrongName, /does not match|ALTNAME/],
    ['unknownca', () => unknownCa, /unable to verify|UNABLE_TO_VERIFY|self.signed/i],
  ];
  for (const [pool, backend, cause] of refusals) {
    void it(`refuses a backend certificate (${pool}): 502 backend_tls, the cause in the log`, async () => {
      assert.equal(await upgradeStatus(balancer.url(`/${pool}`)), 502);
      const line = await balancer.waitForLog((l) => l.msg === 'backend TLS failed' && l.pool === pool, 5000, `${pool} logged`);
      assert.equal(line.backend, nameOf(backend()));
      assert.equal(line.reason, 'tls');
      assert.match(String(line.err), cause);
      assert.equal(backend().connections.length, 0, 'no upgrade reached the backend');
    });
  }

  void it('counts refused certificates as backend failures: outlier detection ejects the backend', async () => {
    for (let i = 0; i < 4; i++) assert.equal(await whoami(balancer.url('/ejecting')), 'good', 'the retry reaches the good backend');
    const ejected = await balancer.waitForLog((l) => l.msg === 'outlier detection: backend ejected' && l.pool === 'ejecting', 5000, 'the expired backend ejected');
    assert.equal(ejected.backend, nameOf(expired));
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.ok(metrics.sum('switchyard_upgrades_total', { outcome: 'backend_tls' }) >= 4, 'the 502s counted as backend_tls');
  });

  void it('with verify: false, encrypts to a backend whose certificate it does not trust', async () => {
    assert.equal(await whoami(balancer.url('/noverify')), 'unknown-ca');
  });
});

void describe('health checks over TLS', { timeout: 60_000 }, () => {
  for (const type of ['http', 'tcp', 'websocket'] as const) {
    void it(`${type}: a backend with a refused certificate goes down, a good one stays up`, async () => {
      const adminPort = await freePort();
      const balancer = await startBalancer({
        workers: 1,
        config: {
          admin: { port: adminPort },
          pools: {
            chat: {
              backends: [{ url: good.url }, { url: wrongName.url }],
              tls: { ca: ca.cert },
              healthCheck: { type, path: '/health', interval: '100ms', timeout: '1s', fall: 2, rise: 1 },
              outlierDetection: { enabled: false },
            },
          },
          routes: [route('chat')],
        },
      });
      balancers.push(balancer);
      const down = await balancer.waitForLog((l) => l.msg === 'health check: backend down', 5000, 'the wrong-name backend down');
      assert.equal(down.backend, nameOf(wrongName));
      assert.match(String(down.reason), /does not match|ALTNAME/);
      // The good one passes the same checks over TLS (one that could not pass would take it down too).
      if (type === 'http') assert.ok(good.httpRequests.some((r) => r.url === '/health'), 'http checks reached the good backend');
      if (type === 'websocket') assert.ok(good.connections.some((c) => c.url === '/health'), 'websocket checks reached the good backend');
      assert.equal((await backendStatus(adminPort, 'chat', nameOf(good))).health, 'up');
      assert.equal((await backendStatus(adminPort, 'chat', nameOf(wrongName))).health, 'down');
      await stopAll(balancer);
    });
  }
});

void describe('backend TLS config', { timeout: 30_000 }, () => {
  const pools = (tls: Record<string, unknown>, url = 'wss://127.0.0.1:9443'): Record<string, unknown> => ({
    pools: { chat: { backends: [{ url }], tls } },
    routes: [{ path: '/', pool: 'chat' }],
  });

  void it('switchyard check names the backend TLS settings it validated, with paths relative to the config file', async () => {
    const file = join(certs.dir, 'check.yaml');
    const config = pools({ ca: 'ca.pem', cert: 'balancer-client.pem', key: 'balancer-client.key', serverName: 'chat.internal' });
    (config.pools as Record<string, Record<string, unknown>>).chat.sendProxyProtocol = 'v2';
    writeFileSync(file, JSON.stringify(config));
    const res = await runCli(['check', '--config', file]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /pool chat: least-connections, PROXY protocol v2 to its backends/);
    assert.match(res.stdout, /backend wss:\/\/127\.0\.0\.1:9443 \(pool chat\): TLS, certificate verified against \S+ca\.pem \(1 certificate\) for chat\.internal; client certificate \S+balancer-client\.pem/);
  });

  const refused: [what: string, config: Record<string, unknown>, error: RegExp][] = [
    ['a CA file that does not exist', pools({ ca: 'missing-ca.pem' }), /^config error: pools\.chat\.tls\.ca: cannot read \S+missing-ca\.pem/],
    ['a client certificate without its key', pools({ cert: 'x.pem' }), /pools\.chat\.tls\.key: is required with cert/],
    ['a key that does not match the client certificate', pools({ cert: 'balancer-client.pem', key: 'good.key' }), /^config error: pools\.chat\.tls\.key: \S+good\.key does not match/],
    ['tls on a ws:// backend', { pools: { chat: { backends: [{ url: 'ws://127.0.0.1:9000', tls: { verify: false } }] } }, routes: [{ path: '/', pool: 'chat' }] }, /pools\.chat\.backends(\.0|\[0\])\.tls.*only for a wss:\/\/ or https:\/\/ backend/],
  ];
  for (const [what, config, error] of refused) {
    void it(`refuses ${what} with one line naming the key`, async () => {
      const file = join(certs.dir, `bad-${what.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(file, JSON.stringify(config));
      const res = await runCli(['check', '--config', file]);
      assert.equal(res.code, 1);
      const lines = res.stderr.trim().split('\n');
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0], error);
    });
  }

});

/**
 * A backend front that requires a PROXY protocol header, as a backend behind HAProxy's accept-proxy
 * does: it records each header (bytes and source), then relays the rest of the connection to `to`.
 * A connection that does not open with a complete v2 header is recorded as such and closed.
 */
async function startProxyFront(to: number): Promise<{ port: number; headers: Buffer[]; sources: string[]; refused: number; close(): Promise<void> }> {
  const headers: Buffer[] = [];
  const sources: string[] = [];
  const front = { port: 0, headers, sources, refused: 0, close: async () => {} };
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const header = readProxyHeader(buffered);
      if (header.kind === 'incomplete') return;
      socket.off('data', onData);
      if (header.kind !== 'header' || header.version !== 2) {
        front.refused++;
        socket.destroy();
        return;
      }
      headers.push(buffered.subarray(0, header.length));
      sources.push(header.source);
      const backend = netConnect(to, '127.0.0.1');
      sockets.add(backend);
      backend.on('error', () => socket.destroy());
      socket.on('error', () => backend.destroy());
      backend.write(buffered.subarray(header.length));
      socket.pipe(backend);
      backend.pipe(socket);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.port = (server.address() as { port: number }).port;
  front.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return front;
}

void describe('sendProxyProtocol: v2', { timeout: 60_000 }, () => {
  void it('opens each tunnel to a ws:// or wss:// backend with a PROXY v2 header carrying the client address, before TLS', async () => {
    const plain = await startEchoBackend({ name: 'plain-behind-proxy' });
    started.push(plain);
    const plainFront = await startProxyFront(plain.port);
    const tlsFront = await startProxyFront(good.port);
    try {
      const port = await freePort();
      const balancer = await startBalancer({
        workers: 1,
        port,
        config: {
          listen: { host: '127.0.0.1', port },
          trustedProxies: ['127.0.0.1'],
          pools: {
            plain: { backends: [{ url: `ws://127.0.0.1:${plainFront.port}` }], sendProxyProtocol: 'v2' },
            tls: {
              backends: [{ url: `wss://127.0.0.1:${tlsFront.port}` }],
              tls: { ca: ca.cert },
              sendProxyProtocol: 'v2',
              healthCheck: { type: 'websocket', interval: '100ms', fall: 1 },
              outlierDetection: { enabled: false },
            },
          },
          routes: [route('plain'), route('tls')],
        },
      });
      balancers.push(balancer);
      // The client address as the balancer decides it: X-Forwarded-For from a trusted peer.
      const headers = { 'x-forwarded-for': '203.0.113.7' };
      const a = await connect(balancer.url('/plain'), { headers });
      clients.push(a);
      assert.equal(await a.whoami(), 'plain-behind-proxy');
      const b = await connect(balancer.url('/tls'), { headers });
      clients.push(b);
      assert.equal(await b.whoami(), 'good', 'TLS to the backend started after the header');
      // Health checks open with a LOCAL header (no address, source ''), and pass through the front.
      await waitFor(() => tlsFront.sources.filter((s) => s === '').length >= 2, 5000, 'health checks through the front');
      assert.equal(tlsFront.refused, 0, 'every connection opened with a v2 header');
      assert.deepEqual([plainFront.sources, tlsFront.sources.filter((s) => s !== '')], [['203.0.113.7'], ['203.0.113.7']]);
      // Version 2 PROXY, TCP over IPv4, 12 address bytes: 203.0.113.7:0 -> 127.0.0.1:port.
      const expected = Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a2111000c', 'hex'), Buffer.from([203, 0, 113, 7, 127, 0, 0, 1, 0, 0, port >> 8, port & 0xff])]);
      assert.deepEqual(plainFront.headers[0], expected);
      assert.deepEqual(tlsFront.headers[tlsFront.sources.indexOf('203.0.113.7')], expected);
      assert.ok(good.connections.some((c) => c.url === '/health' || c.url === '/'), 'websocket checks reached the backend over TLS');
    } finally {
      await plainFront.close();
      await tlsFront.close();
    }
  });
});
