// The supervisor's bookkeeping, pure: slots, restart backoff, reload refusals, the retiring cap.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig } from '../../src/config/load';
import { newSlots, nextRestartDelay, overRetiringCap, reloadRefusal, STABLE_AFTER_MS, type Generation, type Slot } from '../../src/primary/worker-slots';

const config = { ...validateConfig({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }] } }, routes: [{ pool: 'p' }] }), workerCount: 3 };
const generation = (id: number): Generation => ({ id, config, workerConfig: '{}' });

void describe('worker slots', () => {
  void it('a generation has one slot per worker, numbered from 0, none forked', () => {
    const slots = newSlots(generation(1), 'current');
    assert.deepEqual(slots.map((s) => [s.index, s.role, s.worker, s.failures, s.restarts]), [[0, 'current', null, 0, 0], [1, 'current', null, 0, 0], [2, 'current', null, 0, 0]]);
    assert.ok(slots.every((s) => s.generation.id === 1));
  });

  void it('restarts after 100 ms, doubling per consecutive crash up to 30 s; a worker that lived 30 s starts over', () => {
    const slot = { startedAt: 0, failures: 0 };
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      delays.push(nextRestartDelay(slot, 1000));
      slot.startedAt = 1000; // each restart crashes at once
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000]);
    const later = 1000 + STABLE_AFTER_MS + 1;
    assert.equal(nextRestartDelay(slot, later), 100, 'lived long enough: the backoff starts over');
    slot.startedAt = later;
    assert.equal(nextRestartDelay(slot, later + 10), 200, 'and doubles again on the next quick crash');
  });

  void it('refuses a reload while starting or stopping, without a config file, during another reload, or while old workers close', () => {
    const base = { ready: true, shuttingDown: false, canLoad: true, starting: 0, closingNow: 0, config: { maxRetiringGenerations: 2, drainTimeout: 30_000 } };
    assert.equal(reloadRefusal(base), undefined);
    assert.equal(reloadRefusal({ ...base, ready: false }), 'switchyard is starting or stopping');
    assert.equal(reloadRefusal({ ...base, shuttingDown: true }), 'switchyard is starting or stopping');
    assert.equal(reloadRefusal({ ...base, canLoad: false }), 'no config to reload');
    assert.equal(reloadRefusal({ ...base, starting: 2 }), 'a reload is already in progress');
    assert.match(reloadRefusal({ ...base, closingNow: 1 })!, /more than maxRetiringGenerations: 2\) are still closing them, for at most drainTimeout \(30s\); try again then$/);
  });

  void it('past maxRetiringGenerations, the oldest retiring generations close now; those already told and other roles are left out', () => {
    const slot = (id: number, role: Slot['role'] = 'retiring'): Pick<Slot, 'role' | 'generation'> => ({ role, generation: generation(id) });
    const g1 = [slot(1), slot(1)];
    const g2 = [slot(2), slot(2)];
    const g3 = [slot(3)];
    const abandoned = slot(1, 'abandoned');
    const retiring = [...g1, ...g2, ...g3, abandoned];
    assert.deepEqual(overRetiringCap(retiring, new Set(), 3), { generations: [], slots: [] });
    assert.deepEqual(overRetiringCap(retiring, new Set(), 2), { generations: [1], slots: g1 });
    assert.deepEqual(overRetiringCap(retiring, new Set(), 1), { generations: [1, 2], slots: [...g1, ...g2] });
    // Generation 1 already told: the cap counts the generations still finishing their tunnels.
    assert.deepEqual(overRetiringCap(retiring, new Set(g1), 1), { generations: [2], slots: g2 });
    assert.deepEqual(overRetiringCap(retiring, new Set(), 0), { generations: [1, 2, 3], slots: [...g1, ...g2, ...g3] });
  });
});
