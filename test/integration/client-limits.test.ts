// Per-client limits (clientLimits): tunnels per client IP and upgrades per second, counted over a
// machine's workers (and over machines through Redis with scope: fleet); 429 with Retry-After over
// a limit, while the tunnels the client holds stay open; counted in metrics and the access log.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { startRedis, type RedisServer } from '../helpers/redis';
import { delay, waitFor } from '../helpers/wait';
import { closeClients, connect, UpgradeRejected, type ClientOptions, type TestClient } from '../helpers/ws-client';

interface Attempt {
  status: number;
  retryAfter?: string;
  client?: TestClient;
}

/** One upgrade: 101 (the open client) or the refusal's status and Retry-After. */
async function attempt(url: string, options: ClientOptions): Promise<Attempt> {
  try {
    return { status: 101, client: await connect(url, options) };
  } catch (err) {
    if (err instanceof UpgradeRejected) return { status: err.status, retryAfter: err.headers['retry-after'] };
    throw err;
  }
}

/**
 * Upgrades until `inARow` in a row are refused; each that passes is closed again (its close awaited),
 * so it leaves the counts as they were. A worker hears of the others' tunnels every sync interval:
 * until then its own count is all it knows, and what lands on it passes.
 */
async function untilRefused(url: string, options: ClientOptions, timeoutMs: number, inARow = 8): Promise<{ refused: Attempt; passed: number; ms: number }> {
  const started = Date.now();
  let passed = 0;
  let refusals = 0;
  for (;;) {
    const a = await attempt(url, options);
    if (a.status !== 101) {
      if (++refusals === inARow) return { refused: a, passed, ms: Date.now() - started };
      continue;
    }
    refusals = 0;
    passed++;
    await a.client!.close(1000, '', 2000);
    if (Date.now() - started > timeoutMs) throw new Error(`no refusals within ${timeoutMs} ms (${passed} passed)`);
  }
}

void describe('per-client limits', { timeout: 90_000 }, () => {
  let backend: EchoBackend;
  const balancers: Balancer[] = [];
  const clients: TestClient[] = [];
  let redis: RedisServer | undefined;

  after(async () => {
    await closeClients(clients);
    await stopAll(...balancers);
    await closeAll(backend);
    await redis?.stop();
  });

  const start = async (clientLimits: Record<string, unknown>, extra: Record<string, unknown> = {}, workers = 2): Promise<Balancer> => {
    backend ??= await startEchoBackend({ name: 'a' });
    const b = await startBalancer({
      workers,
      config: { accessLog: true, clientLimits, pools: { p: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'p' }], ...extra },
    });
    balancers.push(b);
    return b;
  };

  void it('caps the tunnels of one client IP over both workers: 429 with Retry-After, its open tunnels untouched, other IPs unaffected', async () => {
    const b = await start({ maxTunnels: 4 });
    const from = { localAddress: '127.0.0.2' };
    for (let i = 0; i < 4; i++) clients.push(await connect(b.url('/chat'), from));
    const { refused, passed, ms } = await untilRefused(b.url('/chat'), from, 5000);
    assert.equal(refused.status, 429);
    assert.equal(refused.retryAfter, '10');
    // Both workers now know all four: every further attempt is refused, wherever the kernel puts it.
    for (let i = 0; i < 10; i++) assert.equal((await attempt(b.url('/chat'), from)).status, 429, `attempt ${i}`);
    for (const c of clients) assert.equal((await c.request('still here')).text, 'still here');
    const other = await connect(b.url('/chat'), { localAddress: '127.0.0.3' });
    other.terminate();
    // One tunnel ends: room for one.
    await clients.pop()!.close(1000, '', 2000);
    const back = await waitFor(async () => {
      const a = await attempt(b.url('/chat'), from);
      return a.client;
    }, 5000, 'an upgrade to pass again');
    clients.push(back);
    const m = await scrape(b.adminUrl('/metrics'));
    assert.ok(m.sum('switchyard_upgrades_total', { outcome: 'client_tunnel_limit' }) >= 11);
    assert.ok(m.sum('switchyard_client_ips_tracked') >= 1);
    const line = await b.waitForLog((l) => l.log === 'access' && l.outcome === 'client_tunnel_limit', 5000, 'the access line');
    assert.equal(line.status, 429);
    assert.equal(line.client, '127.0.0.2');
    assert.ok(b.logs.some((l) => l.msg?.includes('clientLimits.maxTunnels') && l.client === '127.0.0.2'), 'a warning names the client');
    console.log(`# machine-wide tunnel count converged after ${passed} extra upgrades, ${ms} ms`);
  });

  void it('limits upgrades per second of the address behind a trusted proxy (X-Forwarded-For), with a burst', async () => {
    const b = await start({ maxTunnels: 0, upgradesPerSecond: 2, upgradeBurst: 3 }, { trustedProxies: ['127.0.0.1'] }, 1);
    const as = (ip: string): ClientOptions => ({ headers: { 'X-Forwarded-For': ip } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await attempt(b.url('/chat'), as('203.0.113.9'));
      statuses.push(a.status);
      if (a.client) clients.push(a.client);
      else assert.equal(a.retryAfter, '1');
    }
    assert.deepEqual(statuses, [101, 101, 101, 429]);
    // Another client behind the same proxy has its own bucket.
    const other = await attempt(b.url('/chat'), as('203.0.113.10'));
    assert.equal(other.status, 101);
    other.client!.terminate();
    // Retry-After honoured: half a second pays one upgrade back at 2/s.
    const again = await waitFor(async () => (await attempt(b.url('/chat'), as('203.0.113.9'))).client, 2000, 'the bucket to refill');
    clients.push(again);
    const m = await scrape(b.adminUrl('/metrics'));
    assert.equal(m.sum('switchyard_upgrades_total', { outcome: 'client_rate_limit' }) >= 1, true);
  });

  void it('counts upgrades per second over both workers: a client paced over many sync intervals gets about the burst, not a burst per worker', async () => {
    const b = await start({ maxTunnels: 0, upgradesPerSecond: 0.1, upgradeBurst: 6 });
    let passed = 0;
    for (let i = 0; i < 14; i++) {
      const a = await attempt(b.url('/chat'), { localAddress: '127.0.0.4' });
      if (a.client) {
        passed++;
        a.client.terminate();
      }
      // A client that reconnects four times a second: each upgrade comes after the workers' reports.
      await delay(250);
    }
    // Each worker alone would allow 6 (12 in all); together 6, plus what the other worker holds below
    // the report threshold (2) and what each pays back as if it held all (0.1/s over the ~4 s).
    assert.ok(passed >= 6 && passed <= 8, `${passed} passed`);
  });

  void it('with scope: fleet, counts tunnels over machines through Redis', async () => {
    redis = await startRedis();
    const fleet = { redis: { url: redis.url, clusterName: 'limits' } };
    const a = await start({ maxTunnels: 3, scope: 'fleet' }, fleet, 1);
    const b = await start({ maxTunnels: 3, scope: 'fleet' }, fleet, 1);
    const from = { localAddress: '127.0.0.5' };
    const held: TestClient[] = [];
    for (let i = 0; i < 3; i++) held.push(await connect(a.url('/chat'), from));
    clients.push(...held);
    const { refused, passed, ms } = await untilRefused(b.url('/chat'), from, 5000);
    assert.equal(refused.status, 429);
    console.log(`# fleet-wide tunnel count reached the other machine after ${passed} extra upgrades, ${ms} ms`);
    for (const c of held) assert.equal((await c.request('held')).text, 'held');
    // They end on A: B admits the client again.
    await Promise.all(held.map((c) => c.close(1000, '', 2000)));
    const back = await waitFor(async () => (await attempt(b.url('/chat'), from)).client, 5000, 'B to admit the client again');
    clients.push(back);
  });
});
