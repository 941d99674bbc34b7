// The schedule of spread closes (closeSpread): its window, and times that are even (no second over
// its share and one) yet jittered; and the driver that closes each at its time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { closeTimes, closeWindow, MIN_CLOSES_PER_SECOND, spreadCloses } from '../src/close-spread';
import { seeded } from './helpers/seeded';
import { waitFor } from './helpers/wait';

void describe('closeWindow', () => {
  void it('is closeSpread, bounded by the drain timeout less the close handshake, shorter for a few tunnels', () => {
    assert.equal(closeWindow(5000, 10_000, 30_000), 10_000);
    assert.equal(closeWindow(5000, 10_000, 10_000), 8000, 'drainTimeout 10 s leaves 8 s');
    assert.equal(closeWindow(5000, 10_000, 1000), 0, 'no time left: all at once');
    assert.equal(closeWindow(5000, 0, 30_000), 0, 'closeSpread 0: all at once');
    assert.equal(closeWindow(10, 10_000, 30_000), (10 / MIN_CLOSES_PER_SECOND) * 1000, '10 tunnels: 0.2 s');
    assert.equal(closeWindow(0, 10_000, 30_000), 0);
  });
});

void describe('closeTimes', () => {
  void it('puts one close in each equal slot, at a random moment of it', () => {
    const random = seeded(7);
    const n = 3000;
    const times = closeTimes(n, 10_000, random);
    assert.equal(times.length, n);
    for (let i = 0; i < n; i++) {
      assert.ok(times[i] >= (i * 10_000) / n && times[i] < ((i + 1) * 10_000) / n, `close ${i} at ${times[i]}`);
      if (i > 0) assert.ok(times[i] >= times[i - 1], 'ascending');
    }
    const perSecond = new Array<number>(10).fill(0);
    for (const t of times) perSecond[Math.floor(t / 1000)]++;
    for (const c of perSecond) assert.ok(c >= 299 && c <= 301, `${c} in one second, share 300`);
    // Jittered: the gaps differ (a fixed rhythm would give one gap).
    const gaps = new Set(times.slice(1).map((t, i) => Math.round(t - times[i])));
    assert.ok(gaps.size > 3, `gaps: ${[...gaps].slice(0, 10).join(', ')}`);
  });
});

void describe('spreadCloses', () => {
  void it('closes each item once, in order, not before its time; stop() ends it', async () => {
    const items = Array.from({ length: 40 }, (_, i) => i);
    const times = items.map((i) => i * 5); // 0 .. 195 ms
    const closed: { item: number; at: number }[] = [];
    const start = performance.now();
    spreadCloses(items, times, (item) => closed.push({ item, at: performance.now() - start }));
    await waitFor(() => closed.length === 40, 5000, 'all closed');
    assert.deepEqual(closed.map((c) => c.item), items);
    for (const c of closed) assert.ok(c.at >= times[c.item] - 1, `item ${c.item} at ${c.at.toFixed(1)} ms, due ${times[c.item]}`);

    const later: number[] = [];
    const stop = spreadCloses([1, 2, 3], [0, 60_000, 60_000], (i) => later.push(i));
    stop();
    assert.deepEqual(later, [1], 'the one due at once; the rest stopped');
  });
});
