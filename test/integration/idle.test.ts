// Idle timeouts: the client side (uWS pings, a client that never answers is dropped, a live one stays)
// and the backend side (the balancer pings the backend, a dead one ends the tunnel with 1011).
// The three cases wait on real time, so they run concurrently against one balancer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, startRawWsBackend, type EchoBackend, type RawWsBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { rawWebSocket } from '../helpers/raw-client';
import { connect, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';

void describe('idle timeouts', { timeout: 60_000, concurrency: true }, () => {
  let echo: EchoBackend;
  let deaf: RawWsBackend;
  let balancer: Balancer;
  const clients: TestClient[] = [];

  before(async () => {
    echo = await startEchoBackend({ name: 'idle-echo' });
    deaf = await startRawWsBackend('ignore');
    balancer = await startBalancer({
      config: {
        pools: { echo: { backends: [{ url: echo.url }] }, deaf: { backends: [{ url: deaf.url }] } },
        routes: [
          { path: '/client-idle', pool: 'echo', idleTimeout: '8s' },
          { path: '/backend-idle', pool: 'deaf', backendIdleTimeout: '1s' },
        ],
      },
    });
  });

  after(async () => {
    for (const c of clients) c.terminate();
    await stopAll(balancer);
    await closeAll(echo, deaf);
  });

  void it('drops a client that never answers pings (idleTimeout 8s) and closes its backend side', async () => {
    const { socket } = await rawWebSocket(balancer.port, { path: '/client-idle?who=mute' });
    try {
      socket.on('data', () => {}); // read (and ignore) the pings, never pong
      socket.resume();
      const conn = await echo.waitForConnection((c) => c.url.includes('who=mute'), 2000);
      const started = Date.now();
      await waitFor(() => conn.closeInfo, 16_000, 'the backend side of the mute client to close', 100);
      const took = Date.now() - started;
      assert.ok(took >= 3000, `closed after ${took} ms: too early for an 8 s idle timeout`);
      assert.ok(took <= 14_500, `closed after ${took} ms, expected within idleTimeout 8 s + ~6 s`);
      const metrics = await scrape(balancer.adminUrl('/metrics'));
      assert.equal(metrics.sum('switchyard_idle_closes_total', { side: 'client' }), 1, 'counted as a client idle timeout');
    } finally {
      socket.destroy();
    }
  });

  void it('keeps an idle client that answers pings (12 s idle, then still echoes)', async () => {
    const c = await connect(balancer.url('/client-idle?who=polite'));
    clients.push(c);
    const conn = await echo.waitForConnection((x) => x.url.includes('who=polite'), 2000);
    await delay(12_000); // the idle period under test: longer than idleTimeout 8 s
    assert.equal(c.closeInfo, undefined, `client closed: ${JSON.stringify(c.closeInfo)}`);
    assert.equal(conn.closeInfo, undefined, 'backend side still open');
    assert.ok(c.pings >= 1, 'the balancer pinged the idle client');
    assert.equal((await c.request('still here')).text, 'still here');
  });

  void it('closes the client with 1011 when the backend stops answering (backendIdleTimeout 1s)', async () => {
    const c = await connect(balancer.url('/backend-idle'));
    clients.push(c);
    const started = Date.now();
    const info = await c.waitClose(5000);
    const took = Date.now() - started;
    assert.equal(info.code, 1011, `closed with ${info.code} ${info.reason}`);
    assert.ok(took >= 400, `closed after ${took} ms: before the backend was even pinged`);
    assert.ok(took <= 4000, `closed after ${took} ms, expected within ~4 s`);
    assert.ok(deaf.handshakes() >= 1);
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_idle_closes_total', { side: 'backend' }), 1, 'counted as a backend idle timeout');
    assert.equal(metrics.sum('switchyard_tunnels_closed_total', { side: 'balancer', code: '1011' }), 1);
  });
});
