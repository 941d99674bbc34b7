// What a machine sends each sync and what it concludes the other machines hold, without Redis: only
// changed counts (absolute, with the count they replace, on top of the last write seen applied),
// everything after a failure or a refusal, remote = totals - this machine's share as written, and
// when the totals are read (with the write while they move, after it when an idle pool's moved).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { PoolCounts } from '../../src/state/pool-counts';

const A = '10.0.0.1:80';
const B = '10.0.0.2:80';
const C = '10.0.0.3:80';
const local = (entries: [string, number][]): Map<string, number> => new Map(entries);
const remote = (p: PoolCounts): Record<string, number> => {
  const into = new Map<string, number>();
  p.addRemote(into);
  return Object.fromEntries(into);
};

void it('sends every count first, then only what changed on top of the last applied write, with 0 for a backend gone', () => {
  const p = new PoolCounts('chat');
  const first = p.request(local([[A, 3], [B, 0], [C, 2]]), 1);
  assert.deepEqual({ mode: first.mode, pairs: first.pairs, base: first.base }, { mode: 'full', pairs: [A, 3, C, 2], base: 0 });
  assert.equal(p.applied(first, { applied: true, version: 7, totals: { '#': '7', [A]: '5', [C]: '2' } }), false);
  assert.deepEqual(remote(p), { [`chat/${A}`]: 2 });

  const idle = p.request(local([[A, 3], [C, 2]]), 2);
  assert.deepEqual({ mode: idle.mode, pairs: idle.pairs, version: idle.version, base: idle.base }, { mode: 'delta', pairs: [], version: 7, base: 1 });
  p.applied(idle, { applied: true, version: 7 }); // version current: the totals were not read
  assert.deepEqual(remote(p), { [`chat/${A}`]: 2 });

  const changed = p.request(local([[A, 4], [B, 1]]), 3);
  assert.deepEqual({ pairs: changed.pairs, base: changed.base }, { pairs: [A, 4, 3, B, 1, 0, C, 0, 2], base: 1 }, 'an empty delta wrote nothing: still on top of write 1');
  p.applied(changed, { applied: true, version: 8, totals: { '#': '8', [A]: '6', [B]: '1', [C]: '1' } });
  assert.deepEqual(remote(p), { [`chat/${A}`]: 2, [`chat/${C}`]: 1 });
});

void it('after a failed sync sends every count again, whatever it believes was written', () => {
  const p = new PoolCounts('chat');
  p.applied(p.request(local([[A, 3]]), 1), { applied: true, version: 1, totals: { '#': '1', [A]: '3' } });
  const lost = p.request(local([[A, 4]]), 2);
  assert.deepEqual(lost.pairs, [A, 4, 3]);
  p.failed(); // the script may or may not have run
  const again = p.request(local([[A, 3]]), 3); // back to what was acknowledged: still sent, as a full write
  assert.deepEqual({ mode: again.mode, pairs: again.pairs }, { mode: 'full', pairs: [A, 3] });
});

void it('when a write is refused, keeps its last view and sends everything at once', () => {
  const p = new PoolCounts('chat');
  p.applied(p.request(local([[A, 3], [B, 2]]), 1), { applied: true, version: 1, totals: { '#': '1', [A]: '5', [B]: '2' } });
  const delta = p.request(local([[A, 4], [B, 2]]), 2);
  assert.deepEqual(delta.pairs, [A, 4, 3]);
  // Taken out while alive (or a new Redis): the share the delta builds on is gone.
  assert.equal(p.applied(delta, { applied: false, version: 2 }), true);
  assert.deepEqual(remote(p), { [`chat/${A}`]: 2 }, 'the last view stands');
  const full = p.request(local([[A, 4], [B, 2]]), 3);
  assert.deepEqual({ mode: full.mode, pairs: full.pairs }, { mode: 'full', pairs: [A, 4, B, 2] });
  p.applied(full, { applied: true, version: 3, totals: { '#': '3', [A]: '6', [B]: '2' } });
  assert.deepEqual(remote(p), { [`chat/${A}`]: 2 });
});

void it('reads the totals again after forgetTotals (a reconnect), and leaves with an empty share', () => {
  const p = new PoolCounts('chat');
  p.applied(p.request(local([[A, 1]]), 1), { applied: true, version: 5, totals: { '#': '5', [A]: '1' } });
  assert.equal(p.request(local([[A, 1]]), 2).version, 5);
  p.forgetTotals();
  assert.equal(p.request(local([[A, 1]]), 3).version, 0);
  const leave = p.leave(4);
  assert.deepEqual({ mode: leave.mode, pairs: leave.pairs }, { mode: 'leave', pairs: [] });
});

void it('reads the totals with the write while they move, and after it only when an idle pool\'s moved', () => {
  const p = new PoolCounts('chat');
  assert.equal(p.readAhead(), true, 'nothing read yet');
  p.applied(p.request(local([[A, 1]]), 1), { applied: true, version: 5, totals: { '#': '5', [A]: '1' } });
  assert.equal(p.readAhead(), true, 'the totals moved (from none to version 5)');
  p.applied(p.request(local([[A, 1]]), 2), { applied: true, version: 5, totals: { '#': '5', [A]: '1' } });
  assert.equal(p.readAhead(), false, 'read again at the same version: idle');
  assert.equal(p.behind(5), false);
  assert.equal(p.behind(6), true, 'another machine wrote: read after the write');
  p.applied(p.request(local([[A, 1]]), 3), { applied: true, version: 6, totals: { '#': '7', [A]: '3' } });
  assert.equal(p.readAhead(), true, 'moved since the last read: busy again');
  assert.deepEqual(remote(p), { [`chat/${A}`]: 2 });
  p.applied(p.request(local([[A, 1]]), 4), { applied: true, version: 7 });
  assert.equal(p.readAhead(), false, 'a write whose version was current: idle');
});
