// Live rebalancing with real clients through real balancers: after a backend is added by a reload,
// `switchyard rebalance POOL` (and, opted in, the primary by itself) closes tunnels on the old
// backends with 1012 at the pool's closesPerSecond until the pool is within maxSkew; the clients,
// which reconnect on 1012 like the demo client, land on the newcomer. No client is closed twice, the
// closes per second stay near the rate, and two machines sharing a Redis close what the fleet needs
// once, not once each.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StatusReport } from '../../src/admin/admin-api';
import { adminStatus } from '../helpers/admin';
import { runCli, startBalancer, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { startRedis } from '../helpers/redis';
import { scrape } from '../helpers/metrics';
import { connect, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';
import { perSecond } from '../helpers/per-second';

const OPEN = { upgradesPerSecond: 0, maxTunnels: 0 };

/** Clients that reconnect when closed with 1012 (after a short random pause, as the demo client's backoff), recording every close. */
class Chatters {
  readonly clients = new Map<number, TestClient>();
  /** [client id, time] of every 1012 received. */
  readonly moved: [number, number][] = [];
  private stopped = false;

  constructor(private readonly url: (id: number) => string) {}

  async open(ids: readonly number[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 20) await Promise.all(ids.slice(i, i + 20).map((id) => this.connect(id)));
  }

  private async connect(id: number): Promise<void> {
    const client = await connect(this.url(id), { timeoutMs: 10_000 });
    this.clients.set(id, client);
    void client.closed.then(async (info) => {
      if (this.stopped || info.code !== 1012) return;
      this.moved.push([id, Date.now()]);
      await delay(Math.floor(Math.random() * 200));
      if (!this.stopped) await this.connect(id).catch(() => undefined);
    });
  }

  /** Ids closed more than once. */
  twice(): number[] {
    const seen = new Set<number>();
    const dup = new Set<number>();
    for (const [id] of this.moved) (seen.has(id) ? dup : seen).add(id);
    return [...dup];
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.clients.values()) c.terminate();
  }
}

/** max/mean of the fleet's tunnels over the pool's backends (all eligible here). */
function skew(report: StatusReport, pool: string): number {
  const counts = report.pools[pool].map((b) => b.connections.fleet);
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  return Math.max(...counts) / mean;
}

type TestConfig = { pools: { chat: { backends: { url: string }[] } & Record<string, unknown> } } & Record<string, unknown>;

/** Adds a backend to the pool by reload and waits for it. */
async function addBackend(balancer: Balancer, config: TestConfig, backend: EchoBackend): Promise<void> {
  config.pools.chat.backends.push({ url: backend.url });
  balancer.rewriteConfig(config);
  process.kill(balancer.pid, 'SIGHUP');
  await balancer.waitForLog((l) => l.msg === 'reloaded', 15_000, '"reloaded"');
}

/**
 * Backends a and b (and c, not in the pool yet), a balancer whose pool `chat` has `pool`'s settings,
 * and `n` reconnecting clients on /chat (the query ?id=I, or `query(I)`), all on a and b.
 */
async function chatOnTwo(
  t: { after(fn: () => Promise<void>): void },
  n: number,
  workers: number,
  pool: Record<string, unknown>,
  query: (id: number) => string = (id) => `id=${id}`,
): Promise<{ a: EchoBackend; b: EchoBackend; c: EchoBackend; balancer: Balancer; config: TestConfig; chatters: Chatters }> {
  const [a, b, c] = [await startEchoBackend({ name: 'a' }), await startEchoBackend({ name: 'b' }), await startEchoBackend({ name: 'c' })];
  const config: TestConfig = { logLevel: 'info', clientLimits: OPEN, pools: { chat: { ...pool, backends: [{ url: a.url }, { url: b.url }] } }, routes: [{ pool: 'chat' }] };
  const balancer = await startBalancer({ workers, config });
  const chatters = new Chatters((id) => balancer.url(`/chat?${query(id)}`));
  t.after(async () => {
    chatters.stop();
    await balancer.stop();
    await closeAll(a, b, c);
  });
  await chatters.open(Array.from({ length: n }, (_, i) => i));
  await waitFor(() => a.openCount() + b.openCount() === n, 10_000, `${n} tunnels on a and b`);
  return { a, b, c, balancer, config, chatters };
}

void describe('live rebalancing', { timeout: 180_000 }, () => {
  void it('switchyard rebalance POOL after a backend is added: within maxSkew at the rate, no client closed twice', async (t) => {
    const N = 90;
    const RATE = 10;
    const { a, b, c, balancer, config, chatters } = await chatOnTwo(t, N, 2, { herdingGuard: 'off', rebalance: { auto: false, maxSkew: 1.2, closesPerSecond: RATE, minTunnelAge: '1s' } });
    await addBackend(balancer, config, c);
    await waitFor(async () => (await adminStatus(balancer.adminPort!)).pools.chat.length === 3, 5000, 'c in the pool');

    // No token: refused. Unknown pool: 404 (told as such).
    const noToken = await fetch(balancer.adminUrl('/rebalance?pool=chat'), { method: 'POST' });
    assert.equal(noToken.status, 401);
    const unknown = await fetch(balancer.adminUrl('/rebalance?pool=nope'), { method: 'POST', headers: balancer.adminHeaders() });
    assert.equal(unknown.status, 404);

    const before = await adminStatus(balancer.adminPort!);
    t.diagnostic(`before: ${before.pools.chat.map((x) => `${x.backend} ${x.connections.fleet}`).join(', ')}; skew ${skew(before, 'chat').toFixed(2)}`);
    const started = Date.now();
    const r = await runCli(['rebalance', 'chat', ...balancer.adminArgs(), '--timeout', '60s'], 70_000);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /rebalance chat: balanced after \d+ s; skew 1(\.[01]\d?)?\b/);
    const took = Date.now() - started;
    await waitFor(() => a.openCount() + b.openCount() + c.openCount() === N, 10_000, 'every moved client back');
    const after = await adminStatus(balancer.adminPort!);
    t.diagnostic(`after ${took} ms: ${after.pools.chat.map((x) => `${x.backend} ${x.connections.fleet}`).join(', ')}; ${chatters.moved.length} closed; ${r.stdout.trim()}`);
    assert.ok(skew(after, 'chat') <= 1.2, `skew ${skew(after, 'chat')}`);
    assert.deepEqual(chatters.twice(), [], 'no client closed twice');
    // 45 + 45 -> at most 36 each: 18 to move; the fleet counts lag a little behind the closes.
    assert.ok(chatters.moved.length >= 18 && chatters.moved.length <= 18 + 6, `${chatters.moved.length} closed, 18 needed`);
    const bins = perSecond(chatters.moved.map(([, at]) => at), started);
    t.diagnostic(`closes per second: ${bins.join(' ')}`);
    for (const [i, v] of bins.entries()) assert.ok(v <= 2 * RATE, `${v} closes in second ${i}, rate ${RATE}`);
    // The expected time: 18 closes at 10 a second, in rounds of a second.
    assert.ok(took < 15_000, `took ${took} ms`);
    const m = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(m.sum('switchyard_balancer_decisions_total', { pool: 'chat', decision: 'rebalanced' }), chatters.moved.length);
    assert.equal(after.rebalance.chat.state, 'balanced');
    assert.equal(after.rebalance.chat.closed, chatters.moved.length);
    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as { pools: { name: string; rebalance: { state: string; closed: number } | null; rebalanced: number }[] };
    const pool = status.pools.find((p) => p.name === 'chat')!;
    assert.equal(pool.rebalance?.state, 'balanced', 'the status page\'s data shows how it ended');
    assert.equal(pool.rebalanced, chatters.moved.length);
    // A second one finds nothing to do.
    const again = await runCli(['rebalance', 'chat', ...balancer.adminArgs()], 20_000);
    assert.equal(again.code, 0, again.stderr);
  });

  void it('under hash, moves only the keys whose home changed, and each lands at its new home', async (t) => {
    const N = 60;
    const { a, b, c, balancer, config, chatters } = await chatOnTwo(t, N, 2, { algorithm: 'hash', hashKey: 'query:room', rebalance: { auto: false, maxSkew: 1.1, closesPerSecond: 50, minTunnelAge: '1s' } }, (id) => `room=r${id}`);
    const roomOf = (url: string): string => new URL(url, 'http://x').searchParams.get('room')!;
    const placedBefore = new Map<string, string>();
    for (const x of [a, b]) for (const conn of x.openConnections()) placedBefore.set(roomOf(conn.url), x.name);
    await addBackend(balancer, config, c);
    const r = await runCli(['rebalance', 'chat', ...balancer.adminArgs(), '--timeout', '30s'], 40_000);
    t.diagnostic(r.stdout.trim());
    await waitFor(() => a.openCount() + b.openCount() + c.openCount() === N, 10_000, 'every moved client back');
    const now = new Map<string, string>();
    for (const x of [a, b, c]) for (const conn of x.openConnections()) now.set(roomOf(conn.url), x.name);
    const moved = new Set(chatters.moved.map(([id]) => `r${id}`));
    t.diagnostic(`${moved.size} moved; a ${a.openCount()}, b ${b.openCount()}, c ${c.openCount()}`);
    assert.ok(moved.size > 0, 'some keys moved to c');
    for (const room of moved) assert.equal(now.get(room), 'c', `${room} was moved, so its home is now c`);
    for (const [room, backend] of now) if (!moved.has(room)) assert.equal(backend, placedBefore.get(room), `${room} was not moved`);
    assert.deepEqual(chatters.twice(), [], 'no client closed twice');
  });

  void it('an opted-in pool rebalances by itself when a reload adds a backend', async (t) => {
    const N = 80;
    const { a, b, c, balancer, config, chatters } = await chatOnTwo(t, N, 1, { rebalance: { maxSkew: 1.25, closesPerSecond: 20, minTunnelAge: '1s' } });
    await addBackend(balancer, config, c);
    await balancer.waitForLog((l) => l.msg === 'rebalance started: the pool is above maxSkew', 10_000, 'the rebalance starting');
    await balancer.waitForLog((l) => l.msg === 'rebalance ended' && l.reason === 'balanced', 30_000, 'the rebalance balanced');
    await waitFor(() => a.openCount() + b.openCount() + c.openCount() === N, 10_000, 'every moved client back');
    const after = await adminStatus(balancer.adminPort!);
    t.diagnostic(`${after.pools.chat.map((x) => `${x.backend} ${x.connections.fleet}`).join(', ')}; ${chatters.moved.length} closed (p2c)`);
    assert.ok(skew(after, 'chat') <= 1.25, `skew ${skew(after, 'chat')}`);
    assert.deepEqual(chatters.twice(), [], 'no client closed twice');
    assert.ok(c.openCount() >= chatters.moved.length / 3, `c holds ${c.openCount()} of the ${chatters.moved.length} moved clients`);
  });

  void it('two machines sharing a Redis close what the fleet needs once, not once each', async (t) => {
    const PER = 60;
    const redis = await startRedis();
    const [a, b, c] = [await startEchoBackend({ name: 'a' }), await startEchoBackend({ name: 'b' }), await startEchoBackend({ name: 'c' })];
    const configOf = (): TestConfig => ({
      logLevel: 'info',
      clientLimits: OPEN,
      redis: { url: redis.url, clusterName: 'rebal', syncInterval: '50ms', countTtl: '1s', leaseTtl: '1s' },
      pools: { chat: { herdingGuard: 'off', rebalance: { maxSkew: 1.2, closesPerSecond: 10, minTunnelAge: '1s' }, backends: [{ url: a.url }, { url: b.url }] } },
      routes: [{ pool: 'chat' }],
    });
    const configs = [configOf(), configOf()];
    const balancers = [await startBalancer({ workers: 1, config: configs[0] }), await startBalancer({ workers: 1, config: configs[1] })];
    const chatters = balancers.map((bal, m) => new Chatters((id) => bal.url(`/fleet?m=${m}&id=${id}`)));
    t.after(async () => {
      for (const ch of chatters) ch.stop();
      await Promise.all(balancers.map((bal) => bal.stop()));
      await closeAll(a, b, c);
      await redis.stop();
    });
    for (const ch of chatters) await ch.open(Array.from({ length: PER }, (_, i) => i));
    await waitFor(() => a.openCount() + b.openCount() === 2 * PER, 10_000, `${2 * PER} tunnels`);
    // Both machines get c; each sees the fleet's 120 tunnels on a and b: 24 must move (60 -> 48 each), once.
    await Promise.all(balancers.map((bal, i) => addBackend(bal, configs[i], c)));
    await Promise.all(balancers.map((bal) => bal.waitForLog((l) => l.msg === 'rebalance ended' && l.reason === 'balanced', 40_000, 'balanced')));
    await waitFor(() => a.openCount() + b.openCount() + c.openCount() === 2 * PER, 10_000, 'every moved client back');
    const moved = chatters.reduce((n, ch) => n + ch.moved.length, 0);
    t.diagnostic(`a ${a.openCount()}, b ${b.openCount()}, c ${c.openCount()}; closed: ${chatters.map((ch) => ch.moved.length).join(' + ')} = ${moved}`);
    assert.ok(moved >= 24 && moved <= 24 + 8, `${moved} closed in the fleet, 24 needed (each machine alone would close 24: 48)`);
    for (const ch of chatters) assert.deepEqual(ch.twice(), [], 'no client closed twice');
    const counts = [a.openCount(), b.openCount(), c.openCount()];
    assert.ok(Math.max(...counts) / (2 * PER / 3) <= 1.2, `tunnels ${counts.join(', ')}`);
  });
});
