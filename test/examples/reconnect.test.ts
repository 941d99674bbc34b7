// The demo clients' reconnect rule (examples/reconnect.ts): jittered exponential backoff, and never
// sooner than Retry-After.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BASE_MS, MAX_MS, parseRetryAfter, reconnectDelay } from '../../examples/reconnect';

void describe('reconnectDelay', () => {
  void it('doubles with each failure in a row, within the upper half of its window, up to the cap', () => {
    for (let failures = 0; failures < 10; failures++) {
      const ceiling = Math.min(MAX_MS, BASE_MS * 2 ** failures);
      assert.equal(reconnectDelay(failures, () => 0), ceiling / 2);
      assert.ok(reconnectDelay(failures, () => 0.999999) <= ceiling);
    }
    assert.equal(reconnectDelay(1000, () => 0.999999) <= MAX_MS, true, 'capped, even after many failures');
  });

  void it('spreads clients that failed together', () => {
    const waits = new Set(Array.from({ length: 100 }, () => Math.round(reconnectDelay(0, Math.random) / 10)));
    assert.ok(waits.size > 20, `${waits.size} distinct waits among 100 clients`);
  });

  void it('never comes back before Retry-After, with up to a second of its own jitter', () => {
    assert.equal(reconnectDelay(0, () => 0, 5), 5000);
    assert.ok(reconnectDelay(0, () => 0.999, 5) < 6000);
    assert.equal(reconnectDelay(4, () => 0, 5), 8000, 'a longer backoff wins');
    assert.equal(reconnectDelay(0, () => 0, undefined), 500);
  });

  void it('reads delta-seconds Retry-After only', () => {
    assert.equal(parseRetryAfter('3'), 3);
    assert.equal(parseRetryAfter(['7']), 7);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2026 07:28:00 GMT'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('-1'), undefined);
  });
});
