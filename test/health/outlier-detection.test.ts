// Outlier detection is pure: a fake clock and a list of outcomes, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OutlierDetectionConfig } from '../../src/config/schema';
import { OutlierDetector } from '../../src/health/outlier-detection';

const settings: OutlierDetectionConfig = {
  enabled: true,
  consecutiveFailures: 3,
  window: 10_000,
  baseEjectionTime: 1000,
  maxEjectionTime: 5000,
  maxEjectionPercent: 50,
};
const keys = ['p/a:1', 'p/b:1', 'p/c:1', 'p/d:1'];

function failTimes(d: OutlierDetector, key: string, n: number, now: number) {
  let last;
  for (let i = 0; i < n; i++) last = d.recordFailure(key, now);
  return last;
}

void describe('outlier detection', () => {
  void it('ejects after consecutiveFailures in a row, and a success breaks the streak', () => {
    const d = new OutlierDetector(settings, keys);
    assert.equal(failTimes(d, 'p/a:1', 2, 0), undefined);
    d.recordSuccess('p/a:1');
    assert.equal(failTimes(d, 'p/a:1', 2, 10), undefined);
    assert.equal(d.isEjected('p/a:1', 10), false);
    assert.deepEqual(d.recordFailure('p/a:1', 20), { key: 'p/a:1', durationMs: 1000, ejections: 1 });
    assert.equal(d.isEjected('p/a:1', 21), true);
    assert.equal(d.nextExpiry(), 1020);
  });

  void it('counts only failures within the window', () => {
    const d = new OutlierDetector(settings, keys);
    failTimes(d, 'p/a:1', 2, 0);
    assert.equal(d.recordFailure('p/a:1', 10_001), undefined, 'the streak started too long ago');
    assert.equal(failTimes(d, 'p/a:1', 1, 10_002), undefined);
    assert.ok(d.recordFailure('p/a:1', 10_003));
  });

  void it('ejects for longer on every repeat, up to maxEjectionTime, and decays while the backend behaves', () => {
    const d = new OutlierDetector(settings, keys);
    const durations: number[] = [];
    let now = 0;
    for (let i = 0; i < 7; i++) {
      const e = failTimes(d, 'p/a:1', 3, now);
      assert.ok(e);
      durations.push(e.durationMs);
      now += e.durationMs;
      assert.deepEqual(d.expire(now), ['p/a:1']);
      assert.equal(d.isEjected('p/a:1', now), false);
      now += 10;
    }
    assert.deepEqual(durations, [1000, 2000, 3000, 4000, 5000, 5000, 5000]);
    assert.equal(d.ejections('p/a:1'), 7);
    // Two maxEjectionTimes of good behaviour take two steps off.
    now += 10_000;
    assert.equal(failTimes(d, 'p/a:1', 3, now)?.durationMs, 4000);
  });

  void it('never ejects more than maxEjectionPercent of the pool', () => {
    const d = new OutlierDetector(settings, keys);
    assert.ok(failTimes(d, 'p/a:1', 3, 0));
    assert.ok(failTimes(d, 'p/b:1', 3, 0));
    assert.equal(failTimes(d, 'p/c:1', 5, 0), undefined, '3 of 4 would be 75%');
    assert.equal(d.isEjected('p/c:1', 1), false);
    d.expire(1000);
    assert.ok(d.recordFailure('p/c:1', 1000), 'room again once one came back: the streak still counts');
    const single = new OutlierDetector(settings, ['p/only:1']);
    assert.equal(failTimes(single, 'p/only:1', 10, 0), undefined, 'ejecting the only backend would be 100%');
  });

  void it('does nothing when disabled, and ignores failures while ejected', () => {
    const off = new OutlierDetector({ ...settings, enabled: false }, keys);
    assert.equal(failTimes(off, 'p/a:1', 10, 0), undefined);
    const d = new OutlierDetector(settings, keys);
    assert.ok(failTimes(d, 'p/a:1', 3, 0));
    assert.equal(failTimes(d, 'p/a:1', 10, 500), undefined, 'in-flight failures of an ejected backend do not extend it');
    assert.equal(d.ejections('p/a:1'), 1);
  });
  void it('carries a kept backend\'s record over to a reload\'s detector, and only those backends', () => {
    const before = new OutlierDetector(settings, keys);
    failTimes(before, 'p/a:1', 3, 0); // ejected until 1000, multiplier 1
    failTimes(before, 'p/b:1', 2, 0); // a streak of two
    const after = new OutlierDetector(settings, ['p/a:1', 'p/b:1', 'p/e:1', 'p/f:1']);
    after.carryOver(before);
    assert.equal(after.isEjected('p/a:1', 500), true);
    assert.equal(after.ejections('p/a:1'), 1);
    assert.equal(after.isEjected('p/e:1', 0), false);
    // b's streak came along: one more failure ejects it.
    assert.deepEqual(after.recordFailure('p/b:1', 100), { key: 'p/b:1', durationMs: 1000, ejections: 1 });
    // a's multiplier came along: its next ejection lasts twice as long.
    assert.deepEqual(after.expire(1100), ['p/a:1', 'p/b:1']);
    assert.deepEqual(failTimes(after, 'p/a:1', 3, 1200), { key: 'p/a:1', durationMs: 2000, ejections: 2 });
    // The old detector's records were copied: it is unchanged.
    assert.equal(before.ejections('p/a:1'), 1);
  });
});
