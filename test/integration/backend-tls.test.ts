// TLS to backends: wss:// and https:// backends verified against a CA, mutual TLS, certificates the
// balancer must refuse (expired, wrong name, unknown CA: 502 backend_tls, counted against the backend,
// the cause in the log), verify: false, health checks over TLS, and the config checks of the files.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { backendStatus } from '../helpers/admin';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { runCli, startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { scrape } from '../helpers/metrics';
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
        routes: ['good', 'mtls', 'nocert', 'expired', 'wrongname', 'unknownca', 'noverify', 'ejecting'].map(route).concat([{ path: '/plain', pool: 'https', mode: 'http' }]),
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
    writeFileSync(file, JSON.stringify(pools({ ca: 'ca.pem', cert: 'balancer-client.pem', key: 'balancer-client.key', serverName: 'chat.internal' })));
    const res = await runCli(['check', '--config', file]);
    assert.equal(res.code, 0, res.stderr);
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
