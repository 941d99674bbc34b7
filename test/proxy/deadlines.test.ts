// Fixed-delay deadline lists (src/proxy/deadlines.ts): entries expire in the order they were added,
// a cancelled one never does, and the list re-arms its one timer for what is left.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeadlineList } from '../../src/proxy/deadlines';
import { withTimeout } from '../helpers/wait';

function recorder(): { fired: string[]; owner(name: string, onFire?: () => void): { onDeadline(): void } } {
  const fired: string[] = [];
  return {
    fired,
    owner: (name, onFire) => ({
      onDeadline() {
        fired.push(name);
        onFire?.();
      },
    }),
  };
}

void describe('deadline lists', () => {
  void it('expires entries in order, skips cancelled ones, re-arms for later ones', async () => {
    const list = new DeadlineList(40);
    const r = recorder();
    let done!: () => void;
    const last = new Promise<void>((resolve) => (done = resolve));
    const a = list.add(r.owner('a'));
    list.add(r.owner('b'));
    list.cancel(a);
    // Added later: falls due after the timer armed for the first entries has fired.
    setTimeout(() => list.add(r.owner('c', done)), 25);
    await withTimeout(last, 2000, 'the last deadline');
    assert.deepEqual(r.fired, ['b', 'c']);
  });

  void it('does not fire before its delay, and an entry added while expiring gets a full delay', async () => {
    const list = new DeadlineList(60);
    const r = recorder();
    const started = performance.now();
    let firstAt = 0;
    let done!: () => void;
    const second = new Promise<void>((resolve) => (done = resolve));
    list.add(
      r.owner('first', () => {
        firstAt = performance.now();
        list.add(r.owner('second', done));
      }),
    );
    await withTimeout(second, 2000, 'the re-added deadline');
    const secondAt = performance.now();
    assert.deepEqual(r.fired, ['first', 'second']);
    assert.ok(firstAt - started >= 59, `first fired after ${firstAt - started} ms`);
    assert.ok(secondAt - firstAt >= 59, `second fired ${secondAt - firstAt} ms after the first`);
  });

  void it('cancelling twice, or after expiry, is harmless', async () => {
    const list = new DeadlineList(10);
    const r = recorder();
    let done!: () => void;
    const fired = new Promise<void>((resolve) => (done = resolve));
    const d = list.add(r.owner('x', done));
    await withTimeout(fired, 2000, 'the deadline');
    list.cancel(d);
    const e = list.add(r.owner('y'));
    list.cancel(e);
    list.cancel(e);
    let zDone!: () => void;
    const zFired = new Promise<void>((resolve) => (zDone = resolve));
    const f = list.add(r.owner('z', zDone));
    await withTimeout(zFired, 2000, 'the deadline after the cancelled one');
    // y was due before z: had the cancels not held, it would have fired first.
    assert.deepEqual(r.fired, ['x', 'z']);
    list.cancel(f);
  });
});
