// The fleet totals in Redis stay exact: real redis-server, real RedisState instances as machines,
// each behind its own fault proxy so a connection can be cut before, halfway through or after the
// sync script ran (reply lost), and machines killed at those points. The rule the scripts keep
// (totals = sum of the registered machines' shares) is read in one atomic snapshot after every fault,
// and once the churn stops the totals must equal what the live machines hold. Also: a stale resent
// write is turned away, a restarted Redis is rebuilt, a reconciliation repairs totals edited behind
// the machines' backs, an idle fleet writes nothing, and on a three-node Redis Cluster each pool's
// keys live on the shard its hash tag names.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { RedisState } from '../../src/state/redis-state';
import { SYNC_LUA } from '../../src/state/redis-scripts';
import { startFaultProxy, type CutPoint, type FaultProxy } from '../helpers/fault-proxy';
import { startRedis, startRedisCluster, type RedisServer } from '../helpers/redis';
import { seeded } from '../helpers/seeded';
import { delay, waitFor } from '../helpers/wait';

const timings = { leaseTtl: 600, syncInterval: 50, countTtl: 400 };
const POOLS = { chat: ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80'], feed: ['10.0.1.1:80', '10.0.1.2:80'] };
const KEYS = Object.entries(POOLS).flatMap(([pool, backends]) => backends.map((b) => `${pool}/${b}`));

const prefix = (cluster: string, pool: string): string => `switchyard:{${cluster}:${pool}}:`;

/** In one atomic read: the pool's totals, and the sum of the registered machines' shares. */
const SNAPSHOT_LUA = `
local sum = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  for i = 1, #h, 2 do if string.byte(h[i]) ~= 35 then sum[h[i]] = (sum[h[i]] or 0) + tonumber(h[i + 1]) end end
end
local shares = {}
for k, v in pairs(sum) do if v ~= 0 then shares[#shares + 1] = k; shares[#shares + 1] = v end end
return {redis.call('HGETALL', KEYS[2]), shares}`;

const toRecord = (flat: (string | number)[]): Record<string, number> => {
  const r: Record<string, number> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) if (!String(flat[i]).startsWith('#') && Number(flat[i + 1]) !== 0) r[String(flat[i])] = Number(flat[i + 1]);
  return r;
};

async function snapshot(admin: Redis, cluster: string, pool: string): Promise<{ totals: Record<string, number>; shares: Record<string, number> }> {
  const p = prefix(cluster, pool);
  const [totals, shares] = (await admin.eval(SNAPSHOT_LUA, 2, `${p}machines`, `${p}totals`, `${p}conns:`)) as [(string | number)[], (string | number)[]];
  return { totals: toRecord(totals), shares: toRecord(shares) };
}

/** What the live machines hold, per pool, keyed by host:port. */
function truth(machines: Iterable<{ counts: Map<string, number> }>, pool: string): Record<string, number> {
  const r: Record<string, number> = {};
  for (const m of machines) {
    for (const [key, n] of m.counts) {
      const [p, b] = key.split('/');
      if (p === pool && n > 0) r[b] = (r[b] ?? 0) + n;
    }
  }
  return r;
}

interface Machine {
  state: RedisState;
  proxy?: FaultProxy;
  counts: Map<string, number>;
}

const servers: { stop(): Promise<void> }[] = [];
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  for (const s of servers) await s.stop();
});

function admin(port: number): Redis {
  const r = new Redis(port);
  r.on('error', () => undefined); // down on purpose while Redis restarts
  closers.push(() => Promise.resolve(r.disconnect()));
  return r;
}

async function machine(url: string, cluster: string, id: string, opts: { reconcileInterval?: number; cluster?: boolean; keys?: string[] } = {}): Promise<Machine> {
  const state = new RedisState(id, { url, clusterName: cluster, cluster: opts.cluster ?? false, options: {}, reconcileInterval: opts.reconcileInterval ?? 60_000, ...timings });
  closers.push(() => state.close(false));
  await state.start(opts.keys ?? KEYS);
  return { state, counts: new Map() };
}

function setCounts(m: Machine, counts: Map<string, number>): void {
  m.counts = counts;
  m.state.setLocalCounts(counts);
}

/** This machine's view of the fleet: its own counts plus what it reads the others hold. */
function view(m: Machine, pool: string): Record<string, number> {
  const r: Record<string, number> = {};
  const remote = m.state.remoteCounts();
  for (const key of KEYS.filter((k) => k.startsWith(`${pool}/`))) {
    const n = (m.counts.get(key) ?? 0) + (remote.get(key) ?? 0);
    if (n > 0) r[key.slice(pool.length + 1)] = n;
  }
  return r;
}

void describe('fleet totals on a single redis-server', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let raw: Redis;
  before(async () => {
    redis = await startRedis();
    servers.push(redis);
    raw = admin(redis.port);
  });

  void it('stay equal to the live machines\' counts while connections drop and machines die at random points of a sync', async () => {
    const seed = Number(process.env.FLEET_TOTALS_SEED ?? Date.now() % 1e9);
    const random = seeded(seed);
    const why = `(seed ${seed}; FLEET_TOTALS_SEED=${seed} replays it)`;
    const cluster = 'faults';
    let next = 0;
    const live: Machine[] = [];
    const join = async (): Promise<void> => {
      const proxy = await startFaultProxy(redis.port);
      closers.push(() => proxy.close());
      const m = await machine(proxy.url, cluster, `m${next++}`);
      m.proxy = proxy;
      live.push(m);
    };
    for (let i = 0; i < 6; i++) await join();
    const churn = (m: Machine): void => setCounts(m, new Map(KEYS.map((k) => [k, Math.floor(random() * 10)] as const).filter(() => random() < 0.8)));
    const points: CutPoint[] = ['request', 'partial', 'reply'];
    const actions: string[] = [];
    for (let round = 0; round < 30; round++) {
      for (const m of live) if (random() < 0.5) churn(m);
      const victim = live[Math.floor(random() * live.length)];
      const point = points[Math.floor(random() * points.length)];
      const kind = (round % 5) / 5; // every fault, in turn, at random points
      if (kind < 0.2) {
        // Partitioned past countTtl with a sync in flight: taken out by the others, then back on its own.
        actions.push(`stall ${victim.state.machineId}`);
        await victim.proxy!.stallNext(timings.countTtl * 2, ':totals');
      } else if (kind < 0.6) {
        // A dropped connection in the middle of a sync: the machine lives on, reconnects and writes again.
        actions.push(`cut ${victim.state.machineId} at ${point}`);
        await victim.proxy!.cutNext(point, ':totals');
      } else if (kind < 0.8) {
        // A machine killed in the middle of a sync, and a new one in its place.
        actions.push(`kill ${victim.state.machineId} at ${point}`);
        await victim.proxy!.cutNext(point, ':totals');
        await victim.state.close(false);
        live.splice(live.indexOf(victim), 1);
        await join();
      } else {
        // Killed at no particular point.
        actions.push(`kill ${victim.state.machineId}`);
        await delay(Math.floor(random() * timings.syncInterval));
        await victim.state.close(false);
        live.splice(live.indexOf(victim), 1);
        await join();
      }
      for (const pool of Object.keys(POOLS)) {
        const s = await snapshot(raw, cluster, pool);
        assert.deepEqual(s.totals, s.shares, `${pool}: totals = sum of registered shares after ${actions.join(', ')} ${why}`);
        // And then the truth, within countTtl for a dead machine (nothing lost or counted twice).
        await waitFor(async () => sameRecord((await snapshot(raw, cluster, pool)).totals, truth(live, pool)), timings.countTtl * 10, `${pool} totals = live machines' counts after ${actions.join(', ')} ${why}`);
      }
    }
    // Every view is the truth, and only live machines are registered.
    for (const pool of Object.keys(POOLS)) {
      await waitFor(async () => sameRecord((await snapshot(raw, cluster, pool)).totals, truth(live, pool)), timings.countTtl * 10, `${pool} totals = live machines' counts ${why}`);
      const s = await snapshot(raw, cluster, pool);
      assert.deepEqual(s.totals, truth(live, pool), why);
      await waitFor(() => live.every((m) => sameRecord(view(m, pool), truth(live, pool))), 5000, `every machine's view of ${pool} ${why}`);
    }
    const ids = live.map((m) => m.state.machineId).sort().join();
    for (const pool of Object.keys(POOLS)) {
      await waitFor(async () => (await raw.zrange(`${prefix(cluster, pool)}machines`, 0, -1)).sort().join() === ids, timings.countTtl * 10, `only live machines registered in ${pool} ${why}`);
    }
  });

  void it('apply a delta only on top of the share it was built on, and turn away a full write overtaken by a later one', async () => {
    const p = prefix('seq', 'chat');
    const sync = (mode: string, seq: number, base: number, ...pairs: (string | number)[]): Promise<[number, number]> =>
      raw.eval(SYNC_LUA, 4, `${p}machines`, `${p}totals`, `${p}conns:x`, `${p}reconcile`, 'x', 10_000, mode, 0, `${p}conns:`, 60_000, seq, base, ...pairs) as Promise<[number, number]>;
    const totals = async (): Promise<Record<string, number>> => toRecord(await raw.hgetall(`${p}totals`).then((h) => Object.entries(h).flat()));
    assert.equal((await sync('delta', 1, 7, 'a:1', 3, 0))[0], 0, 'a delta on a share that is not there: refused');
    assert.deepEqual(await totals(), {});
    assert.equal((await sync('full', 5, 0, 'a:1', 3, 'b:1', 2))[0], 1);
    assert.deepEqual(await totals(), { 'a:1': 3, 'b:1': 2 });
    assert.equal((await sync('full', 4, 0, 'a:1', 9))[0], 0, 'a full write older than the last one: refused');
    assert.equal((await sync('delta', 6, 4, 'a:1', 9, 3))[0], 0, 'a delta on an older share: refused');
    assert.deepEqual(await totals(), { 'a:1': 3, 'b:1': 2 });
    assert.equal((await sync('delta', 6, 5, 'a:1', 4, 3, 'b:1', 0, 2))[0], 1);
    assert.equal((await sync('delta', 6, 5, 'a:1', 4, 3, 'b:1', 0, 2))[0], 1, 'the same write resent after a reconnect');
    assert.deepEqual(await totals(), { 'a:1': 4 }, 'ran twice, counted once');
    await sync('leave', 7, 6);
    assert.deepEqual(await totals(), {});
    assert.equal(await raw.exists(`${p}conns:x`), 0);
  });

  void it('rebuild from the live machines after Redis restarts empty', async () => {
    const cluster = 'restart';
    const ms = [await machine(redis.url, cluster, 'r1'), await machine(redis.url, cluster, 'r2'), await machine(redis.url, cluster, 'r3')];
    ms.forEach((m, i) => setCounts(m, new Map([[KEYS[0], i + 1], [KEYS[4], 2 * i]])));
    for (const pool of Object.keys(POOLS)) await waitFor(async () => sameRecord((await snapshot(raw, cluster, pool)).totals, truth(ms, pool)), 3000, `${pool} before`);
    await redis.stop();
    await waitFor(() => ms.every((m) => m.state.status === 'degraded'), 5000, 'degraded');
    setCounts(ms[0], new Map([[KEYS[0], 7]]));
    await redis.restart();
    await waitFor(() => raw.ping().catch(() => null), 5000, 'admin reconnected');
    for (const pool of Object.keys(POOLS)) {
      await waitFor(async () => sameRecord((await snapshot(raw, cluster, pool)).totals, truth(ms, pool)), 5000, `${pool} totals rebuilt`);
      await waitFor(() => ms.every((m) => sameRecord(view(m, pool), truth(ms, pool))), 5000, `${pool} views rebuilt`);
    }
  });

  void it('are repaired by a reconciliation when changed behind the machines\' backs, and the repair is reported', async () => {
    const cluster = 'reconcile';
    const ms = [await machine(redis.url, cluster, 'c1', { reconcileInterval: 1000 }), await machine(redis.url, cluster, 'c2', { reconcileInterval: 1000 })];
    const repaired: [string, number][] = [];
    for (const m of ms) m.state.on('repaired', (pool, fields) => repaired.push([pool, fields]));
    setCounts(ms[0], new Map([[KEYS[0], 3], [KEYS[1], 1]]));
    setCounts(ms[1], new Map([[KEYS[0], 2]]));
    const t = `${prefix(cluster, 'chat')}totals`;
    await waitFor(async () => sameRecord((await snapshot(raw, cluster, 'chat')).totals, truth(ms, 'chat')), 3000, 'totals before');
    assert.deepEqual(repaired, [], 'nothing to repair while only the scripts write');
    await raw.pipeline().hincrby(t, '10.0.0.1:80', 5).hset(t, '10.9.9.9:80', 4).hdel(t, '10.0.0.2:80').exec();
    await waitFor(() => repaired.length > 0, 5000, 'a reconciliation repairs');
    assert.deepEqual(repaired, [['chat', 3]]);
    assert.deepEqual((await snapshot(raw, cluster, 'chat')).totals, truth(ms, 'chat'));
    await waitFor(() => ms.every((m) => sameRecord(view(m, 'chat'), truth(ms, 'chat'))), 3000, 'views repaired');
    // A machine's share lost (an eviction): the totals drop it, the machine writes it again in full.
    await raw.del(`${prefix(cluster, 'chat')}conns:c1`);
    await waitFor(async () => sameRecord((await snapshot(raw, cluster, 'chat')).totals, truth(ms, 'chat')) && repaired.length > 1, 5000, 'the lost share is back');
  });

  void it('are left alone by a reconciliation that pages through machines while their counts change', async () => {
    // A small zset comes back whole from one ZSCAN; past this many members it pages, step by step.
    await raw.config('SET', 'zset-max-listpack-entries', '4');
    try {
      const cluster = 'paging';
      const random = seeded(7);
      const ms: Machine[] = [];
      for (let i = 0; i < 24; i++) ms.push(await machine(redis.url, cluster, `g${i}`, { reconcileInterval: 1000 }));
      const repaired: [string, number][] = [];
      for (const m of ms) m.state.on('repaired', (pool, fields) => repaired.push([pool, fields]));
      let paged = 0;
      // At least 3.5 s of churn, and on until a reconciliation was seen mid-run (a busy machine's
      // steps come late), within 20 s.
      const started = Date.now();
      const going = (): boolean => Date.now() - started < 20_000 && (Date.now() - started < 3500 || paged === 0);
      const watch = async (): Promise<void> => {
        while (going()) {
          const cursor = await raw.hget(`${prefix(cluster, 'chat')}reconcile`, 'cursor');
          if (cursor !== null && cursor !== '0') paged++;
        }
      };
      const churn = async (): Promise<void> => {
        while (going()) {
          for (const m of ms) if (random() < 0.3) setCounts(m, new Map(KEYS.map((k) => [k, Math.floor(random() * 20)] as const)));
          await delay(10);
        }
      };
      await Promise.all([watch(), churn()]);
      assert.ok(paged > 0, 'a reconciliation ran over several steps');
      assert.deepEqual(repaired, [], 'nothing to repair: the scripts kept the totals exact while it ran');
      for (const pool of Object.keys(POOLS)) await waitFor(async () => sameRecord((await snapshot(raw, cluster, pool)).totals, truth(ms, pool)), 3000, `${pool} totals`);
    } finally {
      await raw.config('SET', 'zset-max-listpack-entries', '128');
    }
  });

  void it('leave a pool a reload removed, and keep drains set before pools had their own keys', async () => {
    const cluster = 'reload';
    await raw.hset(`switchyard:{${cluster}}:admin`, KEYS[1], 'drain', 'gone/10.9.9.9:80', 'drain');
    const a = await machine(redis.url, cluster, 'a');
    const b = await machine(redis.url, cluster, 'b');
    assert.equal(a.state.adminOf(KEYS[1]), 'drain', 'a drain from the fleet-wide hash is adopted');
    assert.equal(a.state.adminOf('gone/10.9.9.9:80'), undefined, 'not for a backend this machine does not have');
    assert.equal(await raw.hget(`${prefix(cluster, 'chat')}admin`, KEYS[1].split('/')[1]), 'drain', 'and written into the pool\'s hash');
    setCounts(a, new Map([[KEYS[0], 2], [KEYS[3], 5]]));
    setCounts(b, new Map([[KEYS[3], 1]]));
    await waitFor(async () => sameRecord((await snapshot(raw, cluster, 'feed')).totals, truth([a, b], 'feed')), 3000, 'feed counted');
    // A reload drops pool feed from a: its share leaves feed's totals and a leaves feed's machines.
    a.state.track(KEYS.filter((k) => k.startsWith('chat/')));
    setCounts(a, new Map([[KEYS[0], 2]]));
    await waitFor(async () => sameRecord((await snapshot(raw, cluster, 'feed')).totals, truth([b], 'feed')), 3000, 'a left feed');
    assert.deepEqual(await raw.zrange(`${prefix(cluster, 'feed')}machines`, 0, -1), ['b']);
    assert.deepEqual((await snapshot(raw, cluster, 'chat')).totals, truth([a, b], 'chat'));
  });

  void it('cost nothing but a heartbeat while idle: no write, no version change', async () => {
    const cluster = 'idle';
    const ms = [await machine(redis.url, cluster, 'i1'), await machine(redis.url, cluster, 'i2')];
    setCounts(ms[0], new Map([[KEYS[0], 3]]));
    setCounts(ms[1], new Map([[KEYS[1], 1]]));
    const p = prefix(cluster, 'chat');
    await waitFor(async () => sameRecord((await snapshot(raw, cluster, 'chat')).totals, truth(ms, 'chat')), 3000, 'converged');
    await waitFor(() => ms.every((m) => sameRecord(view(m, 'chat'), truth(ms, 'chat'))), 3000, 'views');
    const version = await raw.hget(`${p}totals`, '#');
    const deadline = Number(await raw.zscore(`${p}machines`, 'i1'));
    await waitFor(async () => Number(await raw.zscore(`${p}machines`, 'i1')) > deadline + 4 * timings.syncInterval, 3000, 'heartbeats go on');
    assert.equal(await raw.hget(`${p}totals`, '#'), version, 'no write while nothing changed');
  });
});

void describe('fleet totals on a three-node Redis Cluster', { timeout: 120_000 }, () => {
  void it('keep each pool\'s keys on the shard its hash tag names, and spread a fleet\'s pools over several shards', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-fleet-cluster-'));
    closers.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
    const cluster = await startRedisCluster(dir);
    servers.push(cluster);
    const pools = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
    const keys = pools.flatMap((p) => [`${p}/10.0.0.1:80`, `${p}/10.0.0.2:80`]);
    const opts = { cluster: true, keys };
    const ms = [await machine(cluster.url, 'sharded', 's1', opts), await machine(cluster.url, 'sharded', 's2', opts)];
    setCounts(ms[0], new Map(keys.map((k, i) => [k, i + 1])));
    setCounts(ms[1], new Map(keys.map((k) => [k, 10])));
    ms[0].state.publishHealth(keys[0], 'down');
    await ms[1].state.setAdmin(keys[3], 'drain');
    await waitFor(() => keys.every((k, i) => ms[1].state.remoteCounts().get(k) === i + 1 && ms[0].state.remoteCounts().get(k) === 10), 5000, 'counts of every pool seen');
    await waitFor(() => ms[1].state.healthOf(keys[0]) === 'down' && ms[0].state.adminOf(keys[3]) === 'drain', 5000, 'health and admin seen');
    await waitFor(() => keys.every((k) => ms[0].state.holdsLease(k) !== ms[1].state.holdsLease(k)), 5000, 'leases');

    const nodes = cluster.ports.map((port) => admin(port));
    const slotOf = (key: string): Promise<number> => nodes[0].cluster('KEYSLOT', key);
    const owner = new Map<string, number>(); // pool -> node index
    for (const [i, node] of nodes.entries()) {
      const ranges = await ownSlots(node, cluster.ports[i]);
      for (const key of await node.keys('switchyard:{sharded:*')) {
        const pool = /^switchyard:\{sharded:([^}]+)\}:/.exec(key)![1];
        const slot = await slotOf(key);
        assert.equal(slot, await slotOf(`{sharded:${pool}}`), `${key} hashes by its pool's tag`);
        assert.ok(ranges.some(([lo, hi]) => slot >= lo && slot <= hi), `${key} lives on the node owning slot ${slot}`);
        assert.equal(owner.get(pool) ?? i, i, `all of ${pool}'s keys on one node`);
        owner.set(pool, i);
      }
    }
    assert.deepEqual([...owner.keys()].sort(), pools, 'every pool has keys');
    const used = new Set(owner.values());
    assert.ok(used.size >= 2, `the pools use ${used.size} of 3 shards`);
    for (const [pool, i] of owner) {
      const p = `switchyard:{sharded:${pool}}:`;
      assert.equal(await nodes[i].exists(`${p}totals`, `${p}machines`, `${p}conns:s1`, `${p}conns:s2`), 4, `${pool}: totals, machines and both shares on node ${i}`);
    }
  });
});

async function ownSlots(node: Redis, port: number): Promise<[number, number][]> {
  const slots = await node.cluster('SLOTS');
  return slots.filter(([, , master]) => Number(master[1]) === port).map(([lo, hi]) => [lo, hi]);
}

function sortKeys(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)));
}

function sameRecord(a: Record<string, number>, b: Record<string, number>): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}
