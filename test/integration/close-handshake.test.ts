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
  let balancer: Balancer;

  before(async () => {
    lingering = await startRawWsBackend('close-keeps-tcp');
    balancer = await startBalancer({ config: { pools: { p: { backends: [{ url: lingering.url }] } }, routes: [{ path: '/', pool: 'p' }] } });
  });

  after(async () => {
    await stopAll(balancer);
    await closeAll(lingering);
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
