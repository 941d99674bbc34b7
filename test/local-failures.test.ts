// The log throttle of local resource failures: one line per interval, the rest counted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Throttle } from '../src/local-failures';

void describe('Throttle', () => {
  void it('lets the first event of each interval through and counts the others', () => {
    const t = new Throttle(1000);
    assert.equal(t.admit(0), true);
    assert.equal(t.admit(1), false);
    assert.equal(t.admit(999), false);
    assert.equal(t.takeHeld(), 2);
    assert.equal(t.takeHeld(), 0);
    assert.equal(t.admit(1000), true, 'a new interval');
    assert.equal(t.admit(5000), true, 'a quiet gap: the next event is logged at once');
    assert.equal(t.admit(5500), false);
    assert.equal(t.takeHeld(), 1);
  });
});
