// backends[].maxConnections (NGINX's max_conns, HAProxy's server maxconn): a backend holding its
// limit of tunnels, counted over all workers, gets no new tunnels or requests; when every backend
// is full the client gets 503; a closed tunnel makes room again.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { runCli, startBalancer, writeConfig } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { closeClients, connect, upgradeStatus, type TestClient } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';

/** Longer than the workers' count sync (100 ms), so each worker knows the others' tunnels. */
const SYNCED_MS = 400;
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, SYNCED_MS));

void describe('maxConnections', { timeout: 60_000 }, () => {
  void it('fills each backend up to its limit over both workers, then 503; a closed tunnel makes room', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    const b = await startEchoBackend({ name: 'b' });
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a, b);
    });
    const balancer = await startBalancer({
      workers: 2,
      config: {
        pools: {
          chat: {
            algorithm: 'round-robin',
            backends: [
              { url: a.url, maxConnections: 2 },
              { url: b.url, maxConnections: 1 },
            ],
          },
        },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    t.after(() => balancer.stop());

    // One at a time, each after the workers synced: three fit, two on a and one on b.
    for (let i = 0; i < 3; i++) {
      const c = await connect(balancer.url(`/x?i=${i}`));
      clients.push(c);
      assert.equal((await c.request('hi')).text, 'hi');
      await settle();
    }
    await waitFor(() => a.openCount() === 2 && b.openCount() === 1, 3000, 'a holding 2 and b 1');

    // Full everywhere: upgrades and plain requests get 503, whichever worker takes them.
    for (let i = 0; i < 4; i++) assert.equal(await upgradeStatus(balancer.url(`/full?i=${i}`)), 503);
    const res = await request(balancer.httpUrl('/page'), { reset: true });
    await res.body.dump();
    assert.equal(res.statusCode, 503);
    assert.equal(a.openCount() + b.openCount(), 3, 'no backend went over its limit');

    // One of b's tunnels closes: the next one goes to b.
    const onB = clients.find((c) => b.openConnections().some((conn) => conn.url === new URL(c.ws.url).pathname + new URL(c.ws.url).search));
    assert.ok(onB, 'a client on b');
    await onB.close();
    clients.splice(clients.indexOf(onB), 1);
    await waitFor(() => b.openCount() === 0, 3000, 'b to lose its tunnel');
    await settle();
    const again = await connect(balancer.url('/again'));
    clients.push(again);
    assert.equal((await again.request('x')).text, 'x');
    await waitFor(() => b.openCount() === 1, 3000, 'the new tunnel on b');
    assert.equal(a.openCount(), 2);

    // The limit is a metric (the same in every worker, so not summed), for Grafana's backend-fill panel.
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_backend_max_connections', { pool: 'chat', backend: `127.0.0.1:${a.port}` }), 2);
    assert.equal(metrics.sum('switchyard_backend_max_connections', { pool: 'chat', backend: `127.0.0.1:${b.port}` }), 1);

    // `switchyard status` shows each backend's fleet count against its limit.
    await waitFor(
      async () => {
        const out = await runCli(['status', '--admin', `127.0.0.1:${balancer.adminPort}`]);
        const row = (port: number): string => out.stdout.split('\n').find((l) => l.includes(`127.0.0.1:${port}`)) ?? '';
        return /\s2\/2$/.test(row(a.port)) && /\s1\/1$/.test(row(b.port));
      },
      5000,
      'status rows ending in 2/2 and 1/1',
    );
  });

  void it('is not a limit by default, and a config error below 0', async (t) => {
    const a = await startEchoBackend({ name: 'u' });
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a);
    });
    const balancer = await startBalancer({ workers: 1, args: ['--backend', a.url] });
    t.after(() => balancer.stop());
    for (let i = 0; i < 20; i++) clients.push(await connect(balancer.url(`/u?i=${i}`)));
    await waitFor(() => a.openCount() === 20, 3000, '20 tunnels on one backend');

    const { file, cleanup } = writeConfig({ pools: { chat: { backends: [{ url: a.url, maxConnections: -1 }] } }, routes: [{ path: '/', pool: 'chat' }] });
    t.after(cleanup);
    const check = await runCli(['check', '--config', file]);
    assert.equal(check.code, 1);
    assert.match(check.stderr, /^config error: pools\.chat\.backends\[0\]\.maxConnections: /);
  });
});
