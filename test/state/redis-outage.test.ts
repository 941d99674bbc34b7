// Redis goes away and comes back (empty): machines keep their last known state, run degraded
// (checking every backend themselves), and converge without a restart once Redis returns.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { RedisState } from '../../src/state/redis-state';
import type { StateStatus } from '../../src/state/shared-state';
import { startRedis, type RedisServer } from '../helpers/redis';
import { waitFor } from '../helpers/wait';

const KEYS = ['chat/127.0.0.1:1', 'chat/127.0.0.1:2'];
let redis: RedisServer;
const open: RedisState[] = [];

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await Promise.all(open.map((s) => s.close(false)));
  await redis.stop();
});

async function machine(id: string): Promise<RedisState> {
  const s = new RedisState(id, { url: redis.url, clusterName: 'outage', cluster: false, options: {}, leaseTtl: 600, syncInterval: 50, countTtl: 1000, reconcileInterval: 1000 });
  open.push(s);
  await s.start(KEYS);
  return s;
}

void it('keeps the last known state while Redis is down and converges when it returns', { timeout: 60_000 }, async () => {
  const a = await machine('a');
  const b = await machine('b');
  const statuses: StateStatus[] = [];
  b.on('status', (s) => statuses.push(s));
  a.setLocalCounts(new Map([[KEYS[0], 4]]));
  await a.setAdmin(KEYS[1], 'drain');
  a.publishHealth(KEYS[0], 'down');
  await waitFor(() => b.remoteCounts().get(KEYS[0]) === 4 && b.adminOf(KEYS[1]) === 'drain' && b.healthOf(KEYS[0]) === 'down', 5000, 'b in step with a');
  assert.ok(KEYS.every((k) => a.holdsLease(k) && !b.holdsLease(k)));

  await redis.stop();
  await waitFor(() => a.status === 'degraded' && b.status === 'degraded', 5000, 'both degraded');
  assert.deepEqual(statuses, ['degraded']);
  // Last known state stays; every machine now checks every backend itself.
  assert.equal(b.remoteCounts().get(KEYS[0]), 4);
  assert.equal(b.adminOf(KEYS[1]), 'drain');
  assert.equal(b.healthOf(KEYS[0]), 'down');
  assert.ok(KEYS.every((k) => a.holdsLease(k) && b.holdsLease(k)), 'degraded: each machine checks everything');
  await assert.rejects(b.setAdmin(KEYS[0], 'maintenance'), 'an operator command says it did not reach the fleet');

  a.setLocalCounts(new Map([[KEYS[0], 6]]));
  await redis.restart(); // empty: no persistence
  await waitFor(() => a.status === 'ok' && b.status === 'ok', 10_000, 'both reconnected');
  assert.deepEqual(statuses, ['degraded', 'ok']);
  await waitFor(() => b.remoteCounts().get(KEYS[0]) === 6, 5000, 'counts converge on the empty Redis');
  await waitFor(() => KEYS.every((k) => a.holdsLease(k) !== b.holdsLease(k)), 5000, 'one checker per backend again');
  // The admin override survives in the machines and is written back.
  const c = await machine('c');
  assert.equal(c.adminOf(KEYS[1]), 'drain');
  await waitFor(() => c.remoteCounts().get(KEYS[0]) === 6, 5000, 'a newcomer sees the counts');
});
