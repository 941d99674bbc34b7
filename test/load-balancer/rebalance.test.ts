// The rebalance policy, pure: the skew, what each backend above it sheds, the round's grants shared
// by machines (never more than the fleet's rate or a backend's shed, however many machines claim),
// the split among workers, which tunnels are candidates, and each key's home under hash.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { grantCloses, homeOf, isCandidate, roundBudget, roundOf, shareOut, sheds, skewOf, type RoundGrants } from '../../src/load-balancer/rebalance';
import { Hash } from '../../src/load-balancer/hash';
import { LeastConnections } from '../../src/load-balancer/least-connections';

const load = (key: string, tunnels: number, weight = 1): { key: string; tunnels: number; weight: number } => ({ key, tunnels, weight });
const fresh = (): RoundGrants => ({ total: 0, byBackend: new Map() });

void describe('rebalance policy', () => {
  void it('measures the skew as max over mean per weight', () => {
    assert.equal(skewOf([load('a', 45), load('b', 45), load('c', 0)]), 1.5);
    assert.equal(skewOf([load('a', 30), load('b', 30), load('c', 30)]), 1);
    assert.equal(skewOf([load('a', 40, 2), load('b', 20, 1)]), 1, 'by weight');
    assert.equal(skewOf([]), 1);
    assert.equal(skewOf([load('a', 0), load('b', 0)]), 1, 'an empty pool is balanced');
  });

  void it('sheds from each backend above maxSkew x its share exactly what brings it within', () => {
    // 90 tunnels, 3 backends: mean 30, 1.2 x 30 = 36.
    assert.deepEqual([...sheds([load('a', 45), load('b', 45), load('c', 0)], 1.2)], [['a', 9], ['b', 9]]);
    assert.deepEqual([...sheds([load('a', 36), load('b', 36), load('c', 18)], 1.2)], [], 'within the skew');
    // Weights: b has twice a's share; 1.2 x 90 x 1/3 = 36 for a, 72 for b.
    assert.deepEqual([...sheds([load('a', 50, 1), load('b', 40, 2), load('c', 0, 0)], 1.2)], [['a', 14]]);
    assert.deepEqual([...sheds([load('a', 100)], 1.2)], [], 'one backend: nowhere to go');
  });

  void it('after shedding, the pool is within the skew when the closed clients land on the emptiest backends', () => {
    const loads = [load('a', 300), load('b', 290), load('c', 10), load('d', 0)];
    const shed = sheds(loads, 1.2);
    let moved = 0;
    const after = loads.map((b) => {
      const s = shed.get(b.key) ?? 0;
      moved += s;
      return { ...b, tunnels: b.tunnels - s };
    });
    // Reconnects go to the emptiest, one at a time (least-connections).
    for (let i = 0; i < moved; i++) {
      const min = after.reduce((m, b) => (b.tunnels < m.tunnels ? b : m));
      (min as { tunnels: number }).tunnels++;
    }
    assert.ok(skewOf(after) <= 1.2, `skew after ${skewOf(after)}`);
  });

  void it('grants a round no more than the fleet\'s rate and each backend\'s shed, however many machines claim', () => {
    const round = fresh();
    const budget = roundBudget(50);
    assert.equal(budget, 50);
    // Three machines each see a: 40 to shed, b: 30, and each holds 25 on both.
    const granted = [0, 1, 2].map(() => grantCloses(round, budget, [{ key: 'a', want: 25, shed: 40 }, { key: 'b', want: 25, shed: 30 }]));
    assert.deepEqual(granted, [[25, 25], [0, 0], [0, 0]], 'the first machine takes the round');
    assert.equal(round.total, 50);
    const next = fresh();
    const small = [0, 1, 2].map(() => grantCloses(next, 100, [{ key: 'a', want: 25, shed: 40 }, { key: 'b', want: 25, shed: 30 }]));
    assert.deepEqual(small, [[25, 25], [15, 5], [0, 0]], 'each backend shed once over the fleet: 40 and 30, not 3 x');
    assert.ok(roundBudget(0.5) === 1, 'at least one a round');
  });

  void it('numbers rounds the same on every machine', () => {
    assert.equal(roundOf(1_700_000_000_999), roundOf(1_700_000_000_000));
    assert.notEqual(roundOf(1_700_000_001_000), roundOf(1_700_000_000_999));
  });

  void it('shares a backend\'s closes among workers by what each holds there, never more than one holds', () => {
    assert.deepEqual(shareOut(10, [30, 10]), [8, 2]);
    assert.deepEqual(shareOut(10, [3, 0]), [3, 0]);
    assert.deepEqual(shareOut(3, [1, 1, 1]), [1, 1, 1]);
    assert.deepEqual(shareOut(0, [5, 5]), [0, 0]);
    const s = shareOut(7, [5, 5, 5]);
    assert.equal(s.reduce((a, b) => a + b, 0), 7);
  });

  void it('takes only tunnels opened before the rebalance and at least minTunnelAge old: a reconnected client is never a candidate again', () => {
    const started = 1_000_000;
    assert.equal(isCandidate(started - 61_000, started, started + 1000, 60_000), true);
    assert.equal(isCandidate(started - 30_000, started, started + 1000, 60_000), false, 'too young');
    assert.equal(isCandidate(started - 30_000, started, started + 40_000, 60_000), true, 'old enough later in the rebalance');
    // Closed at started + 1 s, reconnected at started + 1.2 s: never again in this rebalance, however long it runs.
    assert.equal(isCandidate(started + 1200, started, started + 3_600_000, 0), false);
  });

  void it('under hash, a key is at home where the pool would place it now; after scale-out only the keys whose home changed move', () => {
    const member = (name: string, connections: number): { name: string; weight: number; active: number; connections: number } => ({ name, weight: 1, active: 0, connections });
    const before = [member('a', 0), member('b', 0)];
    const after = [...before, member('c', 0)];
    const keys = Array.from({ length: 600 }, (_, i) => `room-${i}`);
    let moved = 0;
    for (const key of keys) {
      const was = homeOf(key, before, 0)!;
      const now = homeOf(key, after, 0)!;
      if (was !== now) {
        moved++;
        assert.equal(now, 'c', `${key} moved from ${was} to a backend that was already there`);
      }
      assert.equal(now, new Hash({ fallback: new LeastConnections() }).pick(after, key, 0).name, 'the same as a pick');
    }
    assert.ok(moved > 600 / 3 - 60 && moved < 600 / 3 + 60, `${moved} of 600 keys moved (about a third)`);
    // Bounded loads: a backend over the bound is no longer home to its keys' overflow.
    const full = [member('a', 100), member('b', 0), member('c', 0)];
    const homeOfA = keys.find((k) => homeOf(k, [member('a', 0), member('b', 0), member('c', 0)], 0) === 'a')!;
    assert.notEqual(homeOf(homeOfA, full, 1.25), 'a', 'a key whose first backend is over the bound has its home further on');
    assert.equal(homeOf(homeOfA, full, 0), 'a', 'unbounded: the first backend stays home');
    assert.equal(homeOf('x', [], 0), undefined);
  });
});
