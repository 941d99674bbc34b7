// Coordination in the primary, alone: a MemoryState, fake workers that capture the IPC messages they
// are sent, and an injected clock (the sync loop runs on node:test's mocked setInterval). No sockets.
import assert from 'node:assert/strict';
import type { Worker } from 'node:cluster';
import { beforeEach, describe, it, mock } from 'node:test';
import { validateConfig } from '../../src/config/load';
import type { PrimaryMessage } from '../../src/ipc';
import { createLogger } from '../../src/log';
import { Coordination } from '../../src/primary/coordination';
import { MemoryState } from '../../src/state/memory-state';
import type { StateTimings } from '../../src/state/shared-state';
import { FakeChannel } from './fake-workers';

const timings: StateTimings = { leaseTtl: 3000, syncInterval: 100, countTtl: 1000 };
const A = 'p/127.0.0.1:1';
const B = 'p/127.0.0.1:2';
const C = 'p/127.0.0.1:3';

/** A worker as Coordination sees one: its IPC channel, with what it was last sent read back. */
class FakeWorker extends FakeChannel {
  /** The last message of `type` it was sent. */
  last<T extends PrimaryMessage['type']>(type: T): Extract<PrimaryMessage, { type: T }> | undefined {
    return this.sent.filter((m): m is Extract<PrimaryMessage, { type: T }> => m.type === type).at(-1);
  }
  views(): Record<string, { health: string; admin: string; ejections: number; eligibleSince: number }> {
    return Object.fromEntries((this.last('backend-state')?.backends ?? []).map((v) => [v.key, v]));
  }
}

function configOf(backends: object[], extra: object = {}): ReturnType<typeof validateConfig> {
  return validateConfig({ pools: { p: { backends, slowStart: '10s', ...extra } }, routes: [{ pool: 'p' }] });
}
const THREE = [{ url: 'ws://127.0.0.1:1' }, { url: 'ws://127.0.0.1:2' }, { url: 'ws://127.0.0.1:3', admin: 'drain' }];

void describe('Coordination', () => {
  let clock: number;
  const now = (): number => clock;
  beforeEach(() => {
    clock = 1_000_000;
    mock.timers.reset();
  });

  async function start(config = configOf(THREE)): Promise<{ coordination: Coordination; workers: [FakeWorker, FakeWorker]; tick: (ms: number) => void; close: () => Promise<void> }> {
    mock.timers.enable({ apis: ['setInterval'] });
    const state = new MemoryState('m1', timings, undefined, now);
    const coordination = new Coordination(config, state, createLogger('silent'), timings.syncInterval, now);
    await coordination.start();
    const workers: [FakeWorker, FakeWorker] = [new FakeWorker(), new FakeWorker()];
    for (const w of workers) coordination.addWorker(w as unknown as Worker);
    const tick = (ms: number): void => {
      clock += ms;
      mock.timers.tick(ms);
    };
    return { coordination, workers, tick, close: () => coordination.close().finally(() => mock.timers.reset()) };
  }

  void it("answers a worker's state request with every backend: health up, admin state from the config", async () => {
    const { workers, close } = await start();
    try {
      workers[0].report({ type: 'state-request' });
      assert.deepEqual(workers[0].last('backend-state')!.backends, [
        { key: A, health: 'up', admin: 'ready', ejections: 0, eligibleSince: 0 },
        { key: B, health: 'up', admin: 'ready', ejections: 0, eligibleSince: 0 },
        { key: C, health: 'up', admin: 'drain', ejections: 0, eligibleSince: 0 },
      ]);
      assert.equal(workers[1].last('backend-state'), undefined, 'only the worker that asked');
    } finally {
      await close();
    }
  });

  void it("tells each worker the tunnels the machine's other workers hold, not its own", async () => {
    const { coordination, workers, tick, close } = await start();
    try {
      workers[0].report({ type: 'backend-report', counts: { [A]: 3, [B]: 1 }, outcomes: [] });
      workers[1].report({ type: 'backend-report', counts: { [A]: 2 }, outcomes: [] });
      assert.deepEqual(workers[0].last('elsewhere')!.counts, { [A]: 2 });
      assert.deepEqual(workers[1].last('elsewhere')!.counts, { [A]: 3, [B]: 1 });
      assert.deepEqual(
        coordination.status().pools.p.map((b) => [b.backend, b.connections.machine]),
        [['127.0.0.1:1', 5], ['127.0.0.1:2', 1], ['127.0.0.1:3', 0]],
      );
      // A worker that dies takes its tunnels with it: the other hears at the next sync.
      coordination.removeWorker(workers[1] as unknown as Worker);
      tick(timings.syncInterval);
      assert.deepEqual(workers[0].last('elsewhere')!.counts, {});
      // Unchanged counts are not sent again.
      const sent = workers[0].sent.length;
      tick(timings.syncInterval * 3);
      assert.equal(workers[0].sent.length, sent);
    } finally {
      await close();
    }
  });

  void it('ejects a backend after consecutiveFailures passive failures, and lets it back after the ejection, with slow start from then', async () => {
    const { coordination, workers, tick, close } = await start();
    try {
      const fail = (n: number): void => workers[0].report({ type: 'backend-report', counts: {}, outcomes: Array.from({ length: n }, (): [string, boolean] => [B, false]) });
      fail(4);
      assert.equal(workers[1].last('backend-state'), undefined, 'four failures: nothing to say');
      fail(1);
      for (const w of workers) assert.deepEqual([w.views()[B].health, w.views()[B].ejections], ['down', 1], 'the fifth ejects it, for every worker');
      assert.equal(workers[0].views()[A].health, 'up');
      assert.equal(coordination.status().pools.p[1].ejected, true);
      // baseEjectionTime (30 s by default) on the injected clock: still out just before, back after.
      tick(29_900);
      assert.equal(workers[1].views()[B].health, 'down');
      tick(200);
      assert.equal(workers[1].views()[B].health, 'up');
      assert.equal(workers[1].views()[B].eligibleSince, clock, 'slow start ramps from its return');
      assert.equal(coordination.status().pools.p[1].slowStartUntil, clock + 10_000);
    } finally {
      await close();
    }
  });

  void it('a success ends a failure streak', async () => {
    const { workers, close } = await start();
    try {
      workers[0].report({ type: 'backend-report', counts: {}, outcomes: [[A, false], [A, false], [A, false], [A, false], [A, true], [A, false]] });
      assert.equal(workers[0].last('backend-state'), undefined, 'never five in a row');
    } finally {
      await close();
    }
  });

  void it('sets an admin state for the fleet and tells every worker; refuses an unknown backend', async () => {
    const { coordination, workers, tick, close } = await start();
    try {
      await coordination.setAdmin('p', '127.0.0.1:1', 'maintenance');
      for (const w of workers) assert.equal(w.views()[A].admin, 'maintenance');
      assert.equal(coordination.status().pools.p[0].admin, 'maintenance');
      tick(5000);
      await coordination.setAdmin('p', '127.0.0.1:1', 'ready');
      assert.equal(workers[0].views()[A].eligibleSince, clock, 'ready again: slow start from now');
      await assert.rejects(coordination.setAdmin('p', '127.0.0.1:9', 'drain'), /no backend 127\.0\.0\.1:9 in pool p/);
    } finally {
      await close();
    }
  });

  void it('a reload adds a backend with slow start from now, keeps the others as they were, and tells every worker', async () => {
    const { coordination, workers, tick, close } = await start();
    try {
      workers[0].report({ type: 'backend-report', counts: {}, outcomes: Array.from({ length: 5 }, (): [string, boolean] => [B, false]) });
      tick(1000);
      coordination.reconfigure(configOf([...THREE, { url: 'ws://127.0.0.1:4' }]));
      const views = workers[1].views();
      assert.deepEqual(Object.keys(views), [A, B, C, 'p/127.0.0.1:4']);
      assert.equal(views['p/127.0.0.1:4'].eligibleSince, clock, 'the new backend ramps from the reload');
      assert.equal(views[A].eligibleSince, 0, 'a kept backend keeps its (absent) ramp');
      assert.deepEqual([views[B].health, views[B].ejections], ['down', 1], 'an ejected backend stays ejected');
    } finally {
      await close();
    }
  });

  void it('sends nothing to a worker whose channel is closed', async () => {
    const { coordination, workers, close } = await start();
    try {
      workers[1].connected = false;
      await coordination.setAdmin('p', '127.0.0.1:2', 'drain');
      assert.equal(workers[1].sent.length, 0);
      assert.equal(workers[0].views()[B].admin, 'drain');
    } finally {
      await close();
    }
  });
});
