// BackendSync, the worker's side of coordination, alone: messages in, Backend fields out, and the
// reports it sends on its interval (node:test's mocked timers). No process, no sockets.
import assert from 'node:assert/strict';
import { afterEach, describe, it, mock } from 'node:test';
import { validateConfig } from '../../src/config/load';
import { backendFailed, backendSucceeded, takeOutcomes } from '../../src/health/passive-signals';
import type { WorkerMessage } from '../../src/ipc';
import { BackendSync } from '../../src/upstream/backend-sync';
import { Pool } from '../../src/upstream/pool';

const config = validateConfig({
  pools: {
    p: { backends: [{ url: 'ws://127.0.0.1:1' }, { url: 'ws://127.0.0.1:2' }] },
    q: { backends: [{ url: 'ws://127.0.0.1:1' }] },
  },
  routes: [{ pool: 'p' }],
});

function setup(): { sync: BackendSync; sent: WorkerMessage[]; p: Pool; q: Pool } {
  const p = new Pool('p', config.pools.p);
  const q = new Pool('q', config.pools.q);
  const sent: WorkerMessage[] = [];
  return { sync: new BackendSync([p, q], 100, (m) => sent.push(m)), sent, p, q };
}

void describe('BackendSync', () => {
  afterEach(() => {
    mock.timers.reset();
    takeOutcomes();
  });

  void it('asks for the state and is ready when it comes; applies it by backend key (the same server in two pools is two backends)', async () => {
    const { sync, sent, p, q } = setup();
    const ready = sync.ready(60_000);
    assert.deepEqual(sent, [{ type: 'state-request' }]);
    assert.equal(sync.onMessage({ type: 'backend-state', backends: [
      { key: 'p/127.0.0.1:1', health: 'down', admin: 'ready', ejections: 2, eligibleSince: 0 },
      { key: 'q/127.0.0.1:1', health: 'up', admin: 'drain', ejections: 0, eligibleSince: 1234 },
      { key: 'gone/127.0.0.1:9', health: 'down', admin: 'maintenance', ejections: 0, eligibleSince: 0 },
    ] }), true);
    await ready;
    assert.deepEqual([p.backends[0].health, p.backends[0].ejections, p.backends[0].eligible], ['down', 2, false]);
    assert.deepEqual([q.backends[0].admin, q.backends[0].eligibleSince, q.backends[0].eligible], ['drain', 1234, false]);
    assert.deepEqual([p.backends[1].health, p.backends[1].admin], ['up', 'ready'], 'a backend the message leaves out keeps its state');
  });

  void it('is ready after the timeout when the primary never answers (the config state then)', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { sync, p } = setup();
    let done = false;
    const ready = sync.ready(2000).then(() => (done = true));
    mock.timers.tick(1999);
    await Promise.resolve();
    assert.equal(done, false);
    mock.timers.tick(1);
    await ready;
    assert.equal(p.backends[0].eligible, true);
  });

  void it('applies the counts held elsewhere, zero for a backend not named', () => {
    const { sync, p, q } = setup();
    p.backends[1].elsewhere = 7;
    assert.equal(sync.onMessage({ type: 'elsewhere', counts: { 'p/127.0.0.1:1': 4, 'q/127.0.0.1:1': 1 } }), true);
    assert.deepEqual([p.backends[0].elsewhere, p.backends[1].elsewhere, q.backends[0].elsewhere], [4, 0, 1]);
    assert.equal(p.backends[0].connections, 4);
  });

  void it('leaves other messages to others', () => {
    const { sync } = setup();
    assert.equal(sync.onMessage({ type: 'metrics-request', id: 1 }), false);
    assert.equal(sync.onMessage({ type: 'clients-elsewhere', clients: [] }), false);
  });

  void it('reports live counts and passive outcomes each interval, only when something changed, and not after stop()', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    const { sync, sent, p, q } = setup();
    sync.start();
    mock.timers.tick(100);
    assert.deepEqual(sent, [{ type: 'backend-report', counts: {}, outcomes: [] }], 'the first report (nothing held)');
    mock.timers.tick(300);
    assert.equal(sent.length, 1, 'nothing changed: nothing sent');
    p.backends[0].active = 2;
    q.backends[0].active = 1;
    backendFailed(p.backends[1]);
    backendSucceeded(p.backends[1]);
    backendSucceeded(p.backends[0]); // no failure before: not news
    mock.timers.tick(100);
    assert.deepEqual(sent.at(-1), { type: 'backend-report', counts: { 'p/127.0.0.1:1': 2, 'q/127.0.0.1:1': 1 }, outcomes: [['p/127.0.0.1:2', false], ['p/127.0.0.1:2', true]] });
    backendFailed(p.backends[0]);
    mock.timers.tick(100);
    assert.deepEqual(sent.at(-1), { type: 'backend-report', counts: { 'p/127.0.0.1:1': 2, 'q/127.0.0.1:1': 1 }, outcomes: [['p/127.0.0.1:1', false]] }, 'same counts, new outcome: sent');
    sync.stop();
    p.backends[0].active = 0;
    mock.timers.tick(1000);
    assert.equal(sent.length, 3);
  });

  void it("a pool's new list (DNS discovery): kept backends keep their counts and state, new ones are picked, removed ones are handed over with their tunnels", () => {
    const { sync, p } = setup();
    const [one, two] = p.backends;
    one.active = 3;
    two.active = 1;
    one.health = 'down';
    two.elsewhere = 7;
    const removed: string[] = [];
    sync.onRemoved = (gone) => removed.push(...gone.map((b) => b.name));
    const backend = (url: string) => ({ url, weight: 1, admin: 'ready' as const, maxConnections: 0, backup: false, resolve: false });
    assert.equal(sync.onMessage({ type: 'backends', pool: 'p', backends: [backend('ws://127.0.0.1:1'), backend('ws://127.0.0.3:1')] }), true);
    assert.deepEqual(removed, ['127.0.0.1:2']);
    assert.equal(p.backends[0], one, 'the same Backend object, its tunnels still counted on it');
    assert.deepEqual([p.backends[0].active, p.backends[0].health], [3, 'down']);
    assert.equal(p.backends[1].name, '127.0.0.3:1');
    assert.equal(p.pick(undefined), p.backends[1], 'the new backend takes tunnels (the kept one is down)');
    // The new backend's state and counts reach it by key; the removed one's no longer do.
    sync.onMessage({ type: 'elsewhere', counts: { 'p/127.0.0.3:1': 5, 'p/127.0.0.1:2': 9 } });
    assert.equal(p.backends[1].elsewhere, 5);
    assert.equal(two.elsewhere, 7, 'the removed backend no longer hears');
    // A pool this worker does not have (an older generation's config) is ignored.
    assert.equal(sync.onMessage({ type: 'backends', pool: 'other', backends: [] }), true);
  });
});
