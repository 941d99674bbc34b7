// Connect failures: retry on another backend, 502 when all fail, 503 when none is eligible,
// and the connect timeout for a backend that accepts TCP but never answers the upgrade.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, startSilentServer, startUnacceptingServer, type EchoBackend, type UnacceptingServer } from '../helpers/backends';
import { deadPort } from '../helpers/ports';
import { closeClients, connect, upgradeStatus, type TestClient } from '../helpers/ws-client';

void describe('failover', { timeout: 60_000 }, () => {
  let live: EchoBackend;
  let silent: Awaited<ReturnType<typeof startSilentServer>>;
  let unaccepting: UnacceptingServer;
  let balancer: Balancer;
  const clients: TestClient[] = [];

  before(async () => {
    live = await startEchoBackend({ name: 'live' });
    silent = await startSilentServer();
    unaccepting = await startUnacceptingServer();
    const dead1 = `ws://127.0.0.1:${await deadPort()}`;
    const dead2 = `ws://127.0.0.1:${await deadPort()}`;
    balancer = await startBalancer({
      config: {
        pools: {
          // The dead backend first: round-robin sends every other first attempt to it.
          failover: { algorithm: 'round-robin', retries: 1, connectTimeout: '2s', backends: [{ url: dead1 }, { url: live.url }] },
          alldead: { algorithm: 'round-robin', retries: 2, connectTimeout: '2s', backends: [{ url: dead1 }, { url: dead2 }] },
          draining: { backends: [{ url: live.url, admin: 'drain' }, { url: dead2, admin: 'drain' }] },
          maint: { backends: [{ url: live.url, admin: 'maintenance' }] },
          mixed: { algorithm: 'round-robin', backends: [{ url: dead1, admin: 'maintenance' }, { url: live.url, admin: 'ready' }] },
          slow: { algorithm: 'round-robin', retries: 1, connectTimeout: '500ms', backends: [{ url: silent.url }, { url: live.url }] },
          hung: { retries: 0, connectTimeout: '500ms', backends: [{ url: silent.url }] },
          synhang: { retries: 0, connectTimeout: '500ms', backends: [{ url: unaccepting.url }] },
          // Backends named by host: every address the name resolves to is tried (localhost may give ::1 first).
          byname: { backends: [{ url: `ws://localhost:${live.port}` }] },
          unresolvable: { retries: 0, connectTimeout: '2s', backends: [{ url: 'ws://no-such-backend.invalid:9001' }] },
        },
        routes: [
          { path: '/failover', pool: 'failover' },
          { path: '/alldead', pool: 'alldead' },
          { path: '/draining', pool: 'draining' },
          { path: '/maint', pool: 'maint' },
          { path: '/mixed', pool: 'mixed' },
          { path: '/slow', pool: 'slow' },
          { path: '/hung', pool: 'hung' },
          { path: '/synhang', pool: 'synhang' },
          { path: '/byname', pool: 'byname' },
          { path: '/unresolvable', pool: 'unresolvable' },
        ],
      },
    });
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await stopAll(balancer);
    await closeAll(live, silent, unaccepting);
  });

  void it('retries a refused connect on another backend: every client gets through', async () => {
    for (let i = 0; i < 12; i++) {
      const c = await connect(balancer.url(`/failover?i=${i}`));
      clients.push(c);
      assert.equal(await c.whoami(), 'live');
    }
    await closeClients(clients.splice(0));
  });

  void it('answers 502 when every backend fails to connect', async () => {
    for (let i = 0; i < 3; i++) assert.equal(await upgradeStatus(balancer.url(`/alldead?i=${i}`)), 502);
  });

  void it('connects to a backend given by host name, and answers 502 for one whose name does not resolve', async () => {
    const c = await connect(balancer.url('/byname'));
    clients.push(c);
    assert.equal(await c.whoami(), 'live');
    await closeClients(clients.splice(0));
    assert.equal(await upgradeStatus(balancer.url('/unresolvable')), 502);
  });

  void it('answers 503 when no backend is eligible (all admin drain / maintenance)', async () => {
    const before = live.connections.length;
    assert.equal(await upgradeStatus(balancer.url('/draining')), 503);
    assert.equal(await upgradeStatus(balancer.url('/maint')), 503);
    assert.equal(live.connections.length, before, 'no tunnel was opened to a drained backend');
  });

  void it('skips a backend in maintenance', async () => {
    for (let i = 0; i < 4; i++) {
      const c = await connect(balancer.url(`/mixed?i=${i}`));
      clients.push(c);
      assert.equal(await c.whoami(), 'live');
    }
    await closeClients(clients.splice(0));
  });

  void it('gives up on a backend that never answers the upgrade after connectTimeout and uses another', async () => {
    const acceptedBefore = silent.accepted();
    for (let i = 0; i < 4; i++) {
      const started = Date.now();
      const c = await connect(balancer.url(`/slow?i=${i}`), { timeoutMs: 4000 });
      clients.push(c);
      const took = Date.now() - started;
      assert.ok(took < 3000, `connect ${i} took ${took} ms`);
      assert.equal(await c.whoami(), 'live');
    }
    assert.ok(silent.accepted() > acceptedBefore, 'the hung backend was tried at least once (so the timeout path ran)');
    await closeClients(clients.splice(0));
  });

  void it('answers 504 within a few seconds when the only backend takes the connection and never answers (as a plain request would get)', async () => {
    const started = Date.now();
    assert.equal(await upgradeStatus(balancer.url('/hung'), { timeoutMs: 5000 }), 504);
    const took = Date.now() - started;
    assert.ok(took >= 400 && took < 3000, `504 after ${took} ms, expected about connectTimeout (500 ms)`);
  });

  void it('answers 502 when the only backend\'s TCP connect hangs past connectTimeout (as a plain request would get)', async () => {
    const started = Date.now();
    assert.equal(await upgradeStatus(balancer.url('/synhang'), { timeoutMs: 5000 }), 502);
    const took = Date.now() - started;
    assert.ok(took >= 400 && took < 3000, `502 after ${took} ms, expected about connectTimeout (500 ms)`);
    await balancer.waitForLog((l) => l.msg === 'backend connect failed' && l.pool === 'synhang' && l.reason === 'refused' && typeof l.err === 'string' && l.err.includes('no connection within 500 ms'), 5000, 'the connect timeout logged');
  });
});
