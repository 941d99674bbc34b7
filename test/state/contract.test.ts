// One contract, two implementations: memory-state (several instances sharing one MemoryStore, as a
// fleet of one process) and redis-state, against a real redis-server, a real three-node Redis Cluster
// and a real Sentinel. Two instances play two machines.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryState, MemoryStore } from '../../src/state/memory-state';
import { RedisState } from '../../src/state/redis-state';
import type { SharedState, StateTimings } from '../../src/state/shared-state';
import { startRedis, startRedisCluster, startRedisSentinel, type RedisClusterServer, type RedisSentinelServer, type RedisServer } from '../helpers/redis';
import { waitFor } from '../helpers/wait';

const timings: StateTimings = { leaseTtl: 600, syncInterval: 50, countTtl: 500 };
/** Two pools: on a Redis Cluster each has its own slot. */
const KEYS = ['chat/127.0.0.1:1', 'chat/127.0.0.1:2', 'feed/127.0.0.1:3'];

interface Impl {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** A machine of fleet `cluster`. */
  make(id: string, cluster?: string): SharedState;
}

const memoryStores = new Map<string, MemoryStore>();
let run = 0;
const memory: Impl = {
  name: 'memory-state',
  setup: () => Promise.resolve(),
  teardown: () => Promise.resolve(),
  make: (id, cluster = 'c1') => {
    const name = `${cluster}-${run}`;
    if (!memoryStores.has(name)) memoryStores.set(name, new MemoryStore());
    return new MemoryState(id, timings, memoryStores.get(name));
  },
};

let redis: RedisServer | undefined;
const redisImpl: Impl = {
  name: 'redis-state',
  setup: async () => {
    redis = await startRedis();
  },
  teardown: async () => {
    await redis?.stop();
  },
  make: (id, cluster = 'c1') => new RedisState(id, { url: redis!.url, clusterName: `${cluster}-${run}`, cluster: false, options: {}, reconcileInterval: 1000, ...timings }),
};

// The same implementation against a three-node Redis Cluster (`redis.cluster: true`).
let redisCluster: RedisClusterServer | undefined;
let clusterDir = '';
const redisClusterImpl: Impl = {
  name: 'redis-state on a Redis Cluster',
  setup: async () => {
    clusterDir = mkdtempSync(join(tmpdir(), 'switchyard-redis-cluster-'));
    redisCluster = await startRedisCluster(clusterDir);
  },
  teardown: async () => {
    await redisCluster?.stop();
    rmSync(clusterDir, { recursive: true, force: true });
  },
  make: (id, cluster = 'c1') => new RedisState(id, { url: redisCluster!.url, clusterName: `${cluster}-${run}`, cluster: true, options: {}, reconcileInterval: 1000, ...timings }),
};

// And through a real Sentinel (ioredis's `sentinels` + `name` in `redis.options`; `url` is then unused).
let redisSentinel: RedisSentinelServer | undefined;
let sentinelDir = '';
const redisSentinelImpl: Impl = {
  name: 'redis-state through Redis Sentinel',
  setup: async () => {
    sentinelDir = mkdtempSync(join(tmpdir(), 'switchyard-redis-sentinel-'));
    redisSentinel = await startRedisSentinel(sentinelDir);
  },
  teardown: async () => {
    await redisSentinel?.stop();
    rmSync(sentinelDir, { recursive: true, force: true });
  },
  make: (id, cluster = 'c1') =>
    new RedisState(id, {
      url: 'redis://127.0.0.1:1',
      clusterName: `${cluster}-${run}`,
      cluster: false,
      options: { sentinels: [redisSentinel!.sentinel], name: 'mymaster' },
      reconcileInterval: 1000,
      ...timings,
    }),
};

for (const impl of [memory, redisImpl, redisClusterImpl, redisSentinelImpl]) {
  void describe(`shared state contract: ${impl.name}`, { timeout: 60_000 }, () => {
    const open: SharedState[] = [];
    const machine = async (id: string, cluster?: string): Promise<SharedState> => {
      const s = impl.make(id, cluster);
      open.push(s);
      await s.start(KEYS);
      return s;
    };
    before(() => impl.setup());
    after(async () => {
      await Promise.all(open.map((s) => s.close(true)));
      await impl.teardown();
    });

    void it('gives each backend\'s lease to exactly one machine, and a killed holder\'s lease moves', async () => {
      run++;
      const a = await machine('a');
      const b = await machine('b');
      assert.equal(a.status, 'ok');
      await waitFor(() => KEYS.every((k) => a.holdsLease(k) !== b.holdsLease(k)), 5000, 'one holder per lease');
      // a started first, so it took every lease; b must not steal a lease that is being renewed.
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, timings.leaseTtl / 2));
        assert.ok(KEYS.every((k) => a.holdsLease(k) && !b.holdsLease(k)), 'a keeps renewing its leases');
      }
      await a.close(false); // killed: nothing released
      await waitFor(() => KEYS.every((k) => b.holdsLease(k)), timings.leaseTtl * 4, 'b takes over the leases');
    });

    void it('shows a verdict and an admin override set by one machine to the others', async () => {
      run++;
      const a = await machine('a');
      const b = await machine('b');
      const seen: string[] = [];
      b.on('health', (key, health) => seen.push(`${key}=${health}`));
      a.publishHealth(KEYS[0], 'down');
      await waitFor(() => b.healthOf(KEYS[0]) === 'down', 3000, 'b sees the verdict');
      assert.deepEqual(seen, [`${KEYS[0]}=down`]);
      assert.equal(a.healthOf(KEYS[0]), 'down');
      await b.setAdmin(KEYS[1], 'drain');
      await waitFor(() => a.adminOf(KEYS[1]) === 'drain', 3000, 'a sees the drain');
      assert.equal(a.adminOf(KEYS[2]), undefined);
      // A machine that starts later reads what was published before it.
      const c = await machine('c');
      assert.equal(c.healthOf(KEYS[0]), 'down');
      assert.equal(c.adminOf(KEYS[1]), 'drain');
    });

    void it('sums the other machines\' counts, and a killed machine\'s counts expire', async () => {
      run++;
      const a = await machine('a');
      const b = await machine('b');
      const c = await machine('c');
      a.setLocalCounts(new Map([[KEYS[0], 3], [KEYS[1], 1], [KEYS[2], 4]]));
      b.setLocalCounts(new Map([[KEYS[0], 2]]));
      c.setLocalCounts(new Map());
      await waitFor(() => c.remoteCounts().get(KEYS[0]) === 5 && c.remoteCounts().get(KEYS[1]) === 1 && c.remoteCounts().get(KEYS[2]) === 4, 3000, 'c sees a + b, in both pools');
      await waitFor(() => a.remoteCounts().get(KEYS[0]) === 2, 3000, 'a sees only b');
      assert.equal(a.remoteCounts().get(KEYS[1]) ?? 0, 0, 'a does not count itself');
      await a.close(false);
      await waitFor(() => c.remoteCounts().get(KEYS[0]) === 2 && (c.remoteCounts().get(KEYS[1]) ?? 0) === 0 && (c.remoteCounts().get(KEYS[2]) ?? 0) === 0, timings.countTtl * 6, 'a\'s counts expire');
    });

    void it('sums the other machines\' per-client counts by IP; a killed machine\'s expire, a closed one\'s go at once', async () => {
      run++;
      const a = await machine('a');
      const b = await machine('b');
      const c = await machine('c');
      const byIp = (s: SharedState): Record<string, [number, number]> => Object.fromEntries(s.remoteClients().map(([ip, t, d]): [string, [number, number]] => [ip, [t, d]]).sort(([x], [y]) => x.localeCompare(y)));
      a.setLocalClients([['203.0.113.1', 3, 1.5], ['203.0.113.2', 1, 0]]);
      b.setLocalClients([['203.0.113.1', 2, 12]]);
      c.setLocalClients([]);
      await waitFor(() => JSON.stringify(byIp(c)) === JSON.stringify({ '203.0.113.1': [5, 13.5], '203.0.113.2': [1, 0] }), 3000, 'c sees a + b by IP');
      await waitFor(() => JSON.stringify(byIp(a)) === JSON.stringify({ '203.0.113.1': [2, 12] }), 3000, 'a sees only b');
      a.setLocalClients([['203.0.113.1', 4, 0.25], ['203.0.113.3', 1, 0]]);
      await waitFor(() => JSON.stringify(byIp(c)) === JSON.stringify({ '203.0.113.1': [6, 12.25], '203.0.113.3': [1, 0] }), 3000, 'a\'s changes move the sums; an IP a no longer reports leaves them');
      await a.close(false);
      await waitFor(() => JSON.stringify(byIp(c)) === JSON.stringify({ '203.0.113.1': [2, 12] }), timings.countTtl * 6, 'a\'s counts expire');
      await b.close(true);
      await waitFor(() => c.remoteClients().length === 0, 3000, 'b\'s go with it');
    });

    void it('keeps fleets with different cluster names apart', async () => {
      run++;
      const a = await machine('a', 'east');
      const b = await machine('b', 'west');
      a.setLocalCounts(new Map([[KEYS[0], 7]]));
      a.publishHealth(KEYS[0], 'down');
      await waitFor(() => KEYS.every((k) => a.holdsLease(k) && b.holdsLease(k)), 3000, 'each fleet has its own leases');
      const c = await machine('c', 'east');
      await waitFor(() => c.remoteCounts().get(KEYS[0]) === 7, 3000, 'same fleet sees the counts');
      assert.equal(b.remoteCounts().get(KEYS[0]) ?? 0, 0);
      assert.equal(b.healthOf(KEYS[0]), undefined);
    });
  });
}
