// Two Switchyard instances (two primaries, different ports, two workers each) sharing one real
// redis-server: fleet-wide least-connections, health seen by both and checked by one, the lease
// moving when its holder is killed, the killed instance's counts expiring, a Redis outage, and fleet
// totals edited behind the fleet's back repaired and counted in /metrics.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer, type LogLine } from '../helpers/balancer';
import Redis from 'ioredis';
import { adminStatus, backendStatus } from '../helpers/admin';
import { scrape } from '../helpers/metrics';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { freePort } from '../helpers/ports';
import { startRedis, type RedisServer } from '../helpers/redis';
import { waitFor } from '../helpers/wait';
import { closeClients, connect, type TestClient } from '../helpers/ws-client';

const backends: EchoBackend[] = [];
const balancers: Balancer[] = [];
const redises: RedisServer[] = [];
const clients: TestClient[] = [];
after(async () => {
  await closeClients(clients);
  await stopAll(...balancers);
  await closeAll(...backends);
  await Promise.all(redises.map((r) => r.stop()));
});

async function backend(name: string, port?: number): Promise<EchoBackend> {
  const b = await startEchoBackend({ name, port });
  backends.push(b);
  return b;
}

interface Member {
  balancer: Balancer;
  adminPort: number;
}

async function member(redis: RedisServer, cluster: string, pool: EchoBackend[], extra: Record<string, string> = {}): Promise<Member> {
  const adminPort = await freePort();
  const balancer = await startBalancer({
    config: {
      admin: { port: adminPort },
      redis: { url: redis.url, clusterName: cluster, leaseTtl: '1s', countTtl: '1s', syncInterval: '50ms', ...extra },
      pools: {
        chat: {
          backends: pool.map((b) => ({ url: b.url })),
          healthCheck: { type: 'http', path: '/health', interval: '100ms', timeout: '500ms', fall: 2, rise: 2 },
          outlierDetection: { enabled: false },
        },
      },
      routes: [{ path: '/', pool: 'chat' }],
    },
  });
  balancers.push(balancer);
  return { balancer, adminPort };
}

async function open(m: Member, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await connect(m.balancer.url('/'));
    clients.push(c);
    names.push(await c.whoami());
  }
  return names;
}

const name = (b: EchoBackend): string => `127.0.0.1:${b.port}`;
/** Primary pids whose machine ids appear in the health checks a backend received from index `from` on. */
function checkers(b: EchoBackend, from: number): Set<number> {
  const pids = new Set<number>();
  for (const r of b.httpRequests.slice(from)) {
    const m = /switchyard-health-check \([^:]+:(\d+):/.exec(String(r.headers['user-agent']));
    if (r.url === '/health' && m) pids.add(Number(m[1]));
  }
  return pids;
}
const healthCount = (b: EchoBackend): number => b.httpRequests.filter((r) => r.url === '/health').length;

void describe('two instances sharing one Redis', { timeout: 120_000 }, () => {
  void it('balance on fleet-wide counts, share health, check each backend once, and survive a killed instance', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const a = await backend('a');
    const b = await backend('b');
    const p = await member(redis, 'fleet', [a, b]);
    const q = await member(redis, 'fleet', [a, b]);
    assert.equal((await adminStatus(q.adminPort)).state.status, 'ok');

    // One checker per backend: every check since q joined comes from one primary.
    const marks = [healthCount(a), healthCount(b)];
    await waitFor(() => healthCount(a) >= marks[0] + 6 && healthCount(b) >= marks[1] + 6, 10_000, 'checks after both started');
    for (const [i, x] of [a, b].entries()) {
      assert.equal(checkers(x, marks[i]).size, 1, `one checker for ${x.name}: ${[...checkers(x, marks[i])].join(',')}`);
      const here = [(await backendStatus(p.adminPort, 'chat', name(x))).checkedHere, (await backendStatus(q.adminPort, 'chat', name(x))).checkedHere];
      assert.equal(here.filter(Boolean).length, 1, `status: exactly one instance checks ${x.name}`);
    }

    // Drain through p's admin endpoint reaches q through Redis; q then sends everything to b.
    const drained = await fetch(`http://127.0.0.1:${p.adminPort}/admin?pool=chat&backend=${name(a)}&state=drain`, { method: 'POST', headers: p.balancer.adminHeaders() });
    assert.equal(drained.status, 200);
    await waitFor(async () => (await backendStatus(q.adminPort, 'chat', name(a))).admin === 'drain', 5000, 'q sees the drain');
    await waitFor(async () => {
      const c = await connect(q.balancer.url('/'));
      if ((await c.whoami()) === 'b') return clients.push(c);
      await c.close(); // a worker that had not heard of the drain yet
      return false;
    }, 5000, 'q workers drained a');
    await open(q, 6 - b.openCount());
    assert.equal(b.openCount(), 6);
    assert.equal(a.openCount(), 0);
    const readied = await fetch(`http://127.0.0.1:${q.adminPort}/admin?pool=chat&backend=${name(a)}&state=ready`, { method: 'POST', headers: q.balancer.adminHeaders() });
    assert.equal(readied.status, 200);
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(a))).admin === 'ready', 5000, 'p sees ready');
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(b))).connections.fleet === 6, 5000, 'p sees q\'s 6 tunnels on b');

    // Least-connections on fleet counts: p has no tunnels of its own, yet sends its 6 to a.
    assert.deepEqual(await open(p, 6), new Array<string>(6).fill('a'));
    await waitFor(async () => {
      const [sp, sq] = [await adminStatus(p.adminPort), await adminStatus(q.adminPort)];
      return [sp, sq].every((s) => s.pools.chat.every((x) => x.connections.fleet === 6));
    }, 5000, 'both see 6 + 6');

    // Health seen by both, whoever checks.
    await a.close();
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(a))).health === 'down' && (await backendStatus(q.adminPort, 'chat', name(a))).health === 'down', 5000, 'a down on both');
    const aAgain = await backend('a', a.port);
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(a))).health === 'up' && (await backendStatus(q.adminPort, 'chat', name(a))).health === 'up', 5000, 'a up on both');

    // Kill the instance that checks b: the other takes the lease, and the dead one's counts expire.
    const holder = (await backendStatus(p.adminPort, 'chat', name(b))).checkedHere ? p : q;
    const survivor = holder === p ? q : p;
    const mark = healthCount(b);
    await holder.balancer.stop('SIGKILL');
    const took = (l: LogLine): boolean => l.msg === 'health-check lease acquired' && l.backend === name(b);
    await survivor.balancer.waitForLog(took, 10_000, 'the survivor takes b\'s lease');
    await waitFor(() => checkers(b, mark).has(survivor.balancer.pid), 5000, 'checks of b from the survivor');
    await waitFor(async () => (await adminStatus(survivor.adminPort)).pools.chat.every((x) => x.connections.fleet === x.connections.machine), 10_000, 'the killed instance\'s counts expire');
    const own = (await adminStatus(survivor.adminPort)).pools.chat.reduce((n, x) => n + x.connections.machine, 0);
    assert.equal(own, 6, 'the survivor still counts its own tunnels');
    assert.equal(aAgain.openCount() + b.openCount(), 6);
  });
});

void describe('Redis outage', { timeout: 120_000 }, () => {
  void it('keeps traffic flowing on healthy backends while Redis is down, and converges when it returns', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const a = await backend('a');
    const b = await backend('b');
    const p = await member(redis, 'outage', [a, b]);
    const q = await member(redis, 'outage', [a, b]);
    const early = await connect(p.balancer.url('/'));
    clients.push(early);
    await early.whoami();

    await redis.stop();
    const degraded = (l: LogLine): boolean => l.msg === 'shared state unreachable: running degraded on last known state';
    await Promise.all([p, q].map((m) => m.balancer.waitForLog(degraded, 10_000, 'degraded')));
    assert.equal((await adminStatus(p.adminPort)).state.status, 'degraded');
    assert.equal((await early.request('still here')).text, 'still here', 'tunnels are not on the Redis path');

    // Each instance now checks every backend itself, so a dies for both without Redis.
    await a.close();
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(a))).health === 'down' && (await backendStatus(q.adminPort, 'chat', name(a))).health === 'down', 5000, 'a down on both, locally');
    assert.deepEqual(await open(p, 3), ['b', 'b', 'b']);
    assert.deepEqual(await open(q, 3), ['b', 'b', 'b']);

    await redis.restart(); // empty
    const connected = (l: LogLine): boolean => l.msg === 'shared state connected' && l.time !== undefined;
    await Promise.all([p, q].map((m) => waitFor(() => m.balancer.logs.filter(connected).length >= 2, 10_000, 'reconnected')));
    await waitFor(async () => {
      const [sp, sq] = [await adminStatus(p.adminPort), await adminStatus(q.adminPort)];
      const fleet = (s: typeof sp): number | undefined => s.pools.chat.find((x) => x.backend === name(b))?.connections.fleet;
      return sp.state.status === 'ok' && sq.state.status === 'ok' && fleet(sp) === b.openCount() && fleet(sq) === b.openCount();
    }, 10_000, 'fleet counts converge on the restarted Redis');
  });
});

void describe('fleet totals reconciliation', { timeout: 120_000 }, () => {
  void it('repairs fleet totals changed behind the fleet\'s back, logs it and counts it in /metrics', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const a = await backend('a');
    const p = await member(redis, 'repair', [a], { reconcileInterval: '1s' });
    await open(p, 2);
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(a))).connections.fleet === 2, 5000, 'fleet count 2');
    const before = await scrape(`http://127.0.0.1:${p.adminPort}/metrics`);
    assert.equal(before.sum('switchyard_redis_totals_repaired_total', { pool: 'chat' }), 0);
    assert.ok(before.sum('switchyard_redis_sync_duration_seconds_count') > 0, 'syncs are timed');

    const raw = new Redis(redis.port);
    await raw.hincrby('switchyard:{repair:chat}:totals', name(a), 40);
    raw.disconnect();
    await p.balancer.waitForLog((l) => l.msg === 'fleet totals repaired: Redis held counts that did not add up' && l.pool === 'chat', 10_000, 'repair logged');
    await waitFor(async () => (await scrape(`http://127.0.0.1:${p.adminPort}/metrics`)).sum('switchyard_redis_totals_repaired_total', { pool: 'chat' }) === 1, 5000, 'repair counted');
    await waitFor(async () => (await backendStatus(p.adminPort, 'chat', name(a))).connections.fleet === 2, 5000, 'fleet count repaired');
  });
});
