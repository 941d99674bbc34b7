// The backend side of a close: after the close handshake the backend (the server) closes TCP first,
// as RFC 6455 5.5.1 asks, and the balancer waits for it; one that never does is cut off by the 2 s
// close timeout, and the tunnel still ends.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { closeAll, startRawWsBackend, type RawWsBackend } from '../helpers/backends';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { scrape } from '../helpers/metrics';
import { socketClosed } from '../helpers/raw-client';
import { waitFor } from '../helpers/wait';
import { connect } from '../helpers/ws-client';

void describe('close handshake, backend side', { timeout: 30_000 }, () => {
  let lingering: RawWsBackend;
  let gone: RawWsBackend;
  let balancer: Balancer;

  before(async () => {
    lingering = await startRawWsBackend('close-keeps-tcp');
    gone = await startRawWsBackend('gone-after-101');
    balancer = await startBalancer({
      config: {
        pools: { p: { backends: [{ url: lingering.url }] }, gone: { backends: [{ url: gone.url }] } },
        routes: [
          { path: '/gone', pool: 'gone' },
          { path: '/', pool: 'p' },
        ],
      },
    });
  });

  after(async () => {
    await stopAll(balancer);
    await closeAll(lingering, gone);
  });

  void it('relays what a backend sent right behind its 101 and then 1012 when it is gone before the client has its 101', async () => {
    const workers = [...balancer.pids];
    for (let i = 0; i < 5; i++) {
      const c = await connect(balancer.url('/gone'));
      const message = await c.nextMessage(5000);
      assert.equal(message.text, 'last words', 'the frame that arrived with the 101 is not lost');
      const info = await c.waitClose(5000);
      assert.equal(info.code, 1012, `closed with ${JSON.stringify(info)}`);
    }
    assert.equal(gone.handshakes(), 5);
    assert.deepEqual(balancer.pids, workers, 'no worker restarted');
  });

  void it('waits for a backend that answers the close but keeps TCP open, then cuts it off after the close timeout', async () => {
    const c = await connect(balancer.url('/'));
    await waitFor(() => lingering.upgraded[0], 2000, 'the backend upgrade');
    const backendSide = lingering.upgraded[0];
    const started = Date.now();
    const info = await c.close(1000, 'bye');
    assert.equal(info?.code, 1000, `client close answered with ${JSON.stringify(info)}`);
    await socketClosed(backendSide, 5000);
    const took = Date.now() - started;
    // The balancer did not close its side right after the close handshake: it waited for the backend.
    assert.ok(took >= 1500, `backend connection closed after ${took} ms, before the 2 s close timeout`);
    const metrics = await waitFor(
      async () => {
        const m = await scrape(balancer.adminUrl('/metrics'));
        return m.sum('switchyard_tunnels_active') === 0 ? m : undefined;
      },
      5000,
      'no active tunnels',
      100,
    );
    assert.equal(metrics.sum('switchyard_tunnels_closed_total', { side: 'client', code: '1000' }), 1);
  });
});
