// UpgradePacer (maxUpgradesPerSecond): upgrades to one backend start at most at the rate, the excess
// waits its turn up to maxWaitMs, then is refused with a Retry-After that grows with the backlog.
// Pure: the clock is a number the test moves.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig } from '../../src/config/load';
import { Pool } from '../../src/upstream/pool';
import { UpgradePacer } from '../../src/upstream/upgrade-pacer';

/** Start times (ms) of `n` upgrades all arriving at `at`, and how many were refused. */
function storm(pacer: UpgradePacer, n: number, at: number): { starts: number[]; refused: number } {
  const starts: number[] = [];
  let refused = 0;
  for (let i = 0; i < n; i++) {
    const wait = pacer.schedule(at);
    if (wait < 0) refused++;
    else starts.push(at + wait);
  }
  return { starts, refused };
}

void describe('UpgradePacer', () => {
  void it('lets a burst of a tenth of a second\'s rate through at once, then one every 1/rate', () => {
    const pacer = new UpgradePacer(100, 2000);
    const { starts, refused } = storm(pacer, 50, 1000);
    assert.equal(refused, 0);
    assert.equal(starts.filter((s) => s === 1000).length, 10, 'the burst: 10 at once');
    for (let i = 10; i < 50; i++) assert.ok(Math.abs(starts[i] - (1000 + (i - 9) * 10)) < 1e-6, `upgrade ${i} starts at ${starts[i]}`);
  });

  void it('in any second of a storm, no more than the rate and the burst start', () => {
    const pacer = new UpgradePacer(50, 10_000);
    const starts: number[] = [];
    // 1,000 upgrades arriving over 3 s (a reconnect storm), in steps of 3 ms.
    for (let t = 0, i = 0; i < 1000; i++, t += 3) {
      const wait = pacer.schedule(t);
      if (wait >= 0) starts.push(t + wait);
    }
    for (let from = 0; from < 20_000; from += 100) {
      const inSecond = starts.filter((s) => s >= from && s < from + 1000).length;
      assert.ok(inSecond <= 50 + 5, `${inSecond} upgrades started in the second from ${from} ms`);
    }
  });

  void it('refuses what would wait longer than maxWaitMs, taking no turn, and admits again once the queue drains', () => {
    const pacer = new UpgradePacer(10, 1000);
    const { starts, refused } = storm(pacer, 30, 0);
    // 1 at once, then one every 100 ms up to 1,000 ms: 11 in all.
    assert.equal(starts.length, 11);
    assert.equal(refused, 19);
    assert.equal(Math.max(...starts), 1000);
    assert.equal(pacer.schedule(50), -1, 'still full 50 ms later');
    assert.equal(pacer.schedule(150), 950, 'a turn came free: it waits 950 ms');
    assert.equal(pacer.schedule(5000), 0, 'drained: no wait');
  });

  void it('with no waiting (maxWaitMs 0), passes the rate and refuses the rest at once', () => {
    const pacer = new UpgradePacer(5, 0);
    const { starts, refused } = storm(pacer, 10, 0);
    assert.deepEqual(starts, [0]);
    assert.equal(refused, 9);
    assert.equal(pacer.schedule(199), -1);
    assert.equal(pacer.schedule(200), 0);
  });

  void it('Retry-After covers the backlog, with a random part of up to as much again', () => {
    const pacer = new UpgradePacer(10, 3000);
    storm(pacer, 100, 0); // backlog: 31 turns, about 3.1 s
    assert.equal(pacer.retryAfter(0, () => 0), 4);
    assert.equal(pacer.retryAfter(0, () => 0.999), 8);
    const idle = new UpgradePacer(10, 3000);
    assert.equal(idle.retryAfter(0, () => 0), 1, 'at least a second');
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(pacer.retryAfter(0, Math.random));
    assert.ok(seen.size >= 4, `spread over several seconds: ${[...seen].sort().join(', ')}`);
  });
});

void describe('Pool pacing', () => {
  const config = (extra: Record<string, unknown>) =>
    validateConfig({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }, { url: 'ws://127.0.0.1:2' }], ...extra } }, routes: [{ pool: 'p' }] }).pools.p;

  void it('gives each backend a pacer at the worker\'s share of maxUpgradesPerSecond; none when off (the default)', () => {
    assert.ok(new Pool('p', config({})).backends.every((b) => b.pacer === null));
    const pool = new Pool('p', config({ maxUpgradesPerSecond: 40, upgradeQueueTimeout: '0s' }), { workers: 4 });
    const [a, b] = pool.backends;
    assert.ok(a.pacer !== null && b.pacer !== null && a.pacer !== b.pacer, 'one pacer per backend');
    // 40/s over 4 workers: 10/s here, so 1 at once and the next 100 ms later.
    assert.equal(a.pacer.schedule(0), 0);
    assert.equal(a.pacer.schedule(99), -1);
    assert.equal(a.pacer.schedule(100), 0);
    assert.equal(b.pacer.schedule(99), 0, 'b has its own turns');
  });
});
