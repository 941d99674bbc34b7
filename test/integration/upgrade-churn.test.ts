// New tunnels on freshly started workers: every one must stay open after its 101.
//
// Guards the uWS v20 defect worked around in src/uws.ts (upgradeLater): res.cork() around an upgrade
// could close the new socket right after its 101 when anything allocated memory inside the cork, which
// V8 does while it compiles functions that just turned hot, i.e. in a worker's first few dozen
// upgrades. With the old code this test failed in about half of its runs; it cannot prove absence,
// so for a long run: CHURN_CYCLES=5000 node --import tsx --test test/integration/upgrade-churn.test.ts
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { connect, type TestClient } from '../helpers/ws-client';

const CYCLES = Number(process.env.CHURN_CYCLES ?? 200);

void describe('upgrade churn on fresh workers', { timeout: 120_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;
  const steady: TestClient[] = [];

  after(async () => {
    for (const c of steady) c.terminate();
    await stopAll(balancer);
    await closeAll(backend);
  });

  void it(`opens, uses and closes ${CYCLES} tunnels, none cut after its 101, while others keep echoing`, async () => {
    backend = await startEchoBackend({ name: 'churn' });
    balancer = await startBalancer({ config: { pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'chat' }] } });
    for (let i = 0; i < 4; i++) steady.push(await connect(balancer.url(`/steady?i=${i}`)));
    const failures: string[] = [];
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      try {
        const c = await connect(balancer.url(`/short?r=${cycle}`));
        assert.equal((await c.request(`hello ${cycle}`)).text, `hello ${cycle}`);
        await c.close(cycle % 2 === 0 ? 1000 : 4000);
        for (const s of steady) assert.equal((await s.request(`m${cycle}`)).text, `m${cycle}`);
      } catch (err) {
        failures.push(`cycle ${cycle}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(failures, []);
  });
});
