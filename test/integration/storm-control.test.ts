// Storm control with real clients through a real balancer: new upgrades to one backend are paced
// (maxUpgradesPerSecond: the clients of a backend that died reach the others at the rate, counted
// per second at those backends; past the queue, 503 with Retry-After), and the balancer's own closes
// (drain on SIGTERM, the end of retireTimeout after a reload) are spread over closeSpread: no second
// holds more than about twice its share, and every tunnel gets its 1001.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBalancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { connect, UpgradeRejected, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';
import { perSecond } from '../helpers/per-second';
import { openSocket, upgradeRequest } from '../helpers/raw-client';

/** Every test client comes from 127.0.0.1: no per-client rate limit here. */
const OPEN = { upgradesPerSecond: 0 };

/** Opens `n` clients, `batch` at a time. */
async function openClients(n: number, url: (i: number) => string, batch = 25): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < n; i += batch) clients.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => connect(url(i + j), { timeoutMs: 20_000 })))));
  return clients;
}

void describe('storm control', { timeout: 180_000 }, () => {
  void it('paces the reconnects of a dead backend\'s clients at maxUpgradesPerSecond per surviving backend', async (t) => {
    const RATE = 20;
    const upgradesAt = new Map<string, number[]>();
    const backends: EchoBackend[] = [];
    for (const name of ['a', 'b', 'c']) {
      upgradesAt.set(name, []);
      backends.push(await startEchoBackend({ name, onConnection: () => upgradesAt.get(name)!.push(Date.now()) }));
    }
    const [a, b, c] = backends;
    const clients = new Set<TestClient>();
    let stopping = false;
    t.after(async () => {
      stopping = true;
      for (const cl of clients) cl.terminate();
      await closeAll(...backends);
    });
    const balancer = await startBalancer({
      workers: 2,
      config: {
        clientLimits: OPEN,
        pools: { chat: { maxUpgradesPerSecond: RATE, upgradeQueueTimeout: '5s', herdingGuard: 'off', backends: backends.map((x) => ({ url: x.url })) } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    t.after(() => balancer.stop());

    // 300 tunnels, about 100 on each backend, opened at the pace (3 x 20 a second).
    const opened = await openClients(300, (i) => balancer.url(`/chat?i=${i}`), 30);
    for (const cl of opened) clients.add(cl);
    await waitFor(() => a.openCount() + b.openCount() + c.openCount() === 300, 10_000, '300 tunnels on the backends');
    const onC = c.openCount();
    t.diagnostic(`tunnels: a ${a.openCount()}, b ${b.openCount()}, c ${onC}`);
    assert.ok(onC >= 60, `c holds ${onC} tunnels`);

    // c dies: its clients get 1012 and reconnect at once (those refused would retry after Retry-After).
    let reconnected = 0;
    let refused = 0;
    const reconnect = async (): Promise<void> => {
      while (!stopping) {
        try {
          clients.add(await connect(balancer.url('/chat?again'), { timeoutMs: 20_000 }));
          reconnected++;
          return;
        } catch (err) {
          if (!(err instanceof UpgradeRejected) || err.status !== 503) throw err;
          refused++;
          await delay(Number(err.headers['retry-after'] ?? 1) * 1000);
        }
      }
    };
    for (const cl of clients) void cl.closed.then((info) => (info.code === 1012 ? reconnect() : undefined));
    const killedAt = Date.now();
    await c.close();
    await waitFor(() => reconnected === onC, 30_000, `${onC} clients reconnected (${reconnected} so far)`);

    // At each surviving backend, the upgrades per second since the kill: at most the rate (each of
    // the 2 workers paces at half of it), with a tolerance of a half for how seconds cut the schedule.
    const seen: string[] = [];
    for (const [x, name] of [[a, 'a'], [b, 'b']] as const) {
      const bins = perSecond(upgradesAt.get(name)!, killedAt);
      seen.push(`${name}: ${bins.join(' ')}`);
      const total = bins.reduce((s, v) => s + v, 0);
      assert.ok(total > 0, `${name} took some of c's clients`);
      for (const [i, v] of bins.entries()) assert.ok(v <= RATE * 1.5, `${name} took ${v} upgrades in second ${i} after the kill, more than ${RATE}/s x 1.5 (${seen.join('; ')})`);
      void x;
    }
    t.diagnostic(`upgrades per second after the kill: ${seen.join('; ')}; refused ${refused}`);
    assert.ok(Date.now() - killedAt >= ((onC / (2 * RATE)) - 1.5) * 1000, 'the reconnects took about as long as the rate says');
    const m = await scrape(balancer.adminUrl('/metrics'));
    assert.ok(m.sum('switchyard_balancer_decisions_total', { pool: 'chat', decision: 'paced' }) > 0, 'upgrades that waited counted as decision="paced"');
  });

  void it('past the queue, answers 503 with Retry-After, counted as outcome="paced"', async (t) => {
    const backend = await startEchoBackend({ name: 'p' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({
      workers: 1,
      config: { pools: { chat: { maxUpgradesPerSecond: 2, upgradeQueueTimeout: '0s', backends: [{ url: backend.url }] } }, routes: [{ pool: 'chat' }] },
    });
    t.after(() => balancer.stop());
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => connect(balancer.url(`/burst?i=${i}`))));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const rejected = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    for (const r of ok) r.value.terminate();
    assert.ok(ok.length >= 1 && ok.length <= 2, `${ok.length} of 10 passed at 2/s with no queue`);
    for (const err of rejected) {
      assert.ok(err instanceof UpgradeRejected, String(err));
      assert.equal(err.status, 503);
      const retryAfter = Number(err.headers['retry-after']);
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 4, `Retry-After ${err.headers['retry-after']}`);
    }
    const m = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(m.sum('switchyard_upgrades_total', { outcome: 'paced' }), rejected.length);
  });

  void it('an upgrade whose client left while it waited its turn never reaches the backend', async (t) => {
    const backend = await startEchoBackend({ name: 'q' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({
      workers: 1,
      config: { clientLimits: OPEN, pools: { chat: { maxUpgradesPerSecond: 2, upgradeQueueTimeout: '10s', backends: [{ url: backend.url }] } }, routes: [{ pool: 'chat' }] },
    });
    t.after(() => balancer.stop());
    // The first takes the only turn there is now; the next three queue (0.5 s apart at 2/s).
    const first = await connect(balancer.url('/first'));
    t.after(() => first.terminate());
    const queued = await Promise.all([1, 2, 3].map(() => openSocket(balancer.port)));
    for (const s of queued) s.write(upgradeRequest({ path: '/queued' }).text);
    await waitFor(async () => (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_balancer_decisions_total', { pool: 'chat', decision: 'paced' }) >= 3, 10_000, 'three upgrades waiting their turn');
    for (const s of queued) s.destroy();
    // One more client queues behind the turns the three had taken: once it is through, theirs have come.
    const last = await connect(balancer.url('/last'), { timeoutMs: 10_000 });
    t.after(() => last.terminate());
    await waitFor(() => backend.connections.length >= 2, 5000, 'the last client on the backend');
    assert.deepEqual(backend.connections.map((c) => c.url), ['/first', '/last'], 'the backend saw only the clients that stayed');
  });

  void it('SIGTERM spreads the 1001s over closeSpread: no second holds more than twice its share', async (t) => {
    const N = 400;
    const SPREAD_S = 4;
    const backend = await startEchoBackend({ name: 's' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const cl of clients) cl.terminate();
      await closeAll(backend);
    });
    const balancer = await startBalancer({
      workers: 2,
      config: { clientLimits: OPEN, closeSpread: `${SPREAD_S}s`, drainTimeout: '8s', pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ pool: 'chat' }] },
    });
    t.after(() => balancer.stop('SIGKILL'));
    clients.push(...(await openClients(N, (i) => balancer.url(`/spread?i=${i}`))));
    await waitFor(() => backend.openCount() === N, 10_000, `${N} tunnels`);
    const closedAt: number[] = [];
    for (const cl of clients) void cl.closed.then(() => closedAt.push(Date.now()));
    const sent = Date.now();
    process.kill(balancer.pid, 'SIGTERM');
    const closes = await Promise.all(clients.map((cl) => cl.waitClose(15_000)));
    assert.deepEqual([...new Set(closes.map((info) => info.code))], [1001], 'every tunnel got its 1001');
    const bins = perSecond(closedAt, sent);
    t.diagnostic(`closes per second after SIGTERM: ${bins.join(' ')}`);
    const share = N / SPREAD_S;
    for (const [i, v] of bins.entries()) assert.ok(v <= 2 * share, `${v} closes in second ${i}, share ${share}`);
    const span = Math.max(...closedAt) - Math.min(...closedAt);
    assert.ok(span >= (SPREAD_S - 1) * 1000, `the closes took ${span} ms, spread over about ${SPREAD_S} s`);
    await balancer.exited;
  });

  void it('the end of retireTimeout after a reload spreads the old workers\' 1001s too', async (t) => {
    const N = 300;
    const SPREAD_S = 3;
    const backend = await startEchoBackend({ name: 'r' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const cl of clients) cl.terminate();
      await closeAll(backend);
    });
    const config = { clientLimits: OPEN, closeSpread: `${SPREAD_S}s`, drainTimeout: '6s', retireTimeout: '1s', pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ pool: 'chat' }] };
    const balancer = await startBalancer({ workers: 1, config });
    t.after(() => balancer.stop());
    clients.push(...(await openClients(N, (i) => balancer.url(`/retire?i=${i}`))));
    await waitFor(() => backend.openCount() === N, 10_000, `${N} tunnels`);
    const closedAt: number[] = [];
    for (const cl of clients) void cl.closed.then(() => closedAt.push(Date.now()));
    balancer.rewriteConfig({ ...config, logLevel: 'info' });
    process.kill(balancer.pid, 'SIGHUP');
    await balancer.waitForLog((l) => l.msg === 'reloaded', 15_000, '"reloaded"');
    const reloaded = Date.now();
    const closes = await Promise.all(clients.map((cl) => cl.waitClose(15_000)));
    assert.deepEqual([...new Set(closes.map((info) => info.code))], [1001], 'every tunnel got its 1001');
    const first = Math.min(...closedAt);
    assert.ok(first >= reloaded + 500, `no close before retireTimeout (first ${first - reloaded} ms after the reload)`);
    const bins = perSecond(closedAt, first);
    t.diagnostic(`closes per second from the first: ${bins.join(' ')}`);
    const share = N / SPREAD_S;
    for (const [i, v] of bins.entries()) assert.ok(v <= 2 * share, `${v} closes in second ${i}, share ${share}`);
    assert.ok(Math.max(...closedAt) - first >= (SPREAD_S - 1) * 1000, 'spread over about closeSpread');
  });
});
