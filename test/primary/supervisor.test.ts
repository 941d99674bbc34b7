// The supervisor alone: fake workers from an injected fork, its timers on a manual clock. Startup,
// the restart backoff, a reload's generation started beside the current one, and the retiring cap.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig, type LoadedConfig } from '../../src/config/load';
import { Supervisor, type Started } from '../../src/primary/supervisor';
import { capturedLog, fakeFork, ManualTimers, type FakeWorker } from './fake-workers';

const PORT = 4321;
const configOf = (extra: object = {}, workerCount = 2): LoadedConfig => ({
  ...validateConfig({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }] } }, routes: [{ pool: 'p' }], retireTimeout: '60s', drainTimeout: '10s', ...extra }),
  workerCount,
});

function setup(config = configOf()): { supervisor: Supervisor; forked: FakeWorker[]; timers: ManualTimers; messages: () => string[]; events: string[] } {
  const { fork, forked } = fakeFork();
  const timers = new ManualTimers();
  const { log, messages } = capturedLog();
  const supervisor = new Supervisor(config, PORT, log, fork, timers);
  const events: string[] = [];
  supervisor.on('ready', () => events.push('ready'));
  supervisor.on('failed', (err) => events.push(`failed: ${err.message}`));
  supervisor.on('idle', () => events.push('idle'));
  return { supervisor, forked, timers, messages, events };
}

/** Started and ready: every first worker listens. */
function running(config = configOf()): ReturnType<typeof setup> {
  const s = setup(config);
  s.supervisor.start();
  for (const w of s.forked) w.listen();
  assert.deepEqual(s.events, ['ready']);
  return s;
}

void describe('Supervisor', () => {
  void it('forks one worker per slot, sends each its config with the shared port and no admin token, and is ready once all listen', () => {
    const { supervisor, forked, events } = setup(configOf({ admin: { token: 'secret-token-0123456789abcdef' } }));
    supervisor.start();
    assert.deepEqual(forked.map((w) => w.slot.index), [0, 1]);
    forked[0].listen();
    assert.deepEqual(events, [], 'one of two listens: not ready');
    assert.equal(supervisor.ready, false);
    forked[1].listen();
    assert.deepEqual(events, ['ready']);
    const sent = forked[0].sent.find((m) => m.type === 'config');
    const workerConfig = JSON.parse(sent?.type === 'config' ? sent.json : '{}') as LoadedConfig;
    assert.equal(workerConfig.listen.port, PORT);
    assert.equal(workerConfig.admin.token, undefined);
    assert.deepEqual(supervisor.pids(), forked.map((w) => w.process.pid));
  });

  void it('a first worker that exits or cannot listen fails the start, naming why', () => {
    const a = setup();
    a.supervisor.start();
    a.forked[0].exit(1);
    assert.deepEqual(a.events, ['failed: a worker exited (code 1, signal none) during startup']);
    const b = setup();
    b.supervisor.start();
    b.forked[1].report({ type: 'listen-failed', error: 'EACCES' });
    assert.deepEqual(b.events, [`failed: cannot listen on 0.0.0.0:${PORT}: EACCES`]);
    assert.equal(b.forked.length, 2, 'nothing restarted during startup');
  });

  void it('replaces a dead worker in its slot after the backoff, doubling on each quick crash', () => {
    const { supervisor, forked, timers, messages } = running();
    forked[1].exit(null, 'SIGSEGV');
    assert.ok(messages().includes('worker exited'));
    timers.advance(99);
    assert.equal(forked.length, 2, 'not before 100 ms');
    timers.advance(1);
    assert.equal(forked.length, 3);
    assert.equal(forked[2].slot.index, 1, 'the same slot');
    forked[2].exit(1);
    timers.advance(199);
    assert.equal(forked.length, 3, 'the second quick crash waits 200 ms');
    timers.advance(1);
    assert.equal(forked.length, 4);
    forked[3].listen();
    assert.deepEqual(supervisor.views().map((v) => [v.slot, v.pid, v.restarts, v.listening]), [[0, forked[0].process.pid, 0, true], [1, forked[3].process.pid, 2, true]]);
    assert.ok(messages().includes('worker started'));
  });

  void it('starts a generation beside the current one, then retires the old workers with retireTimeout', async () => {
    const { supervisor, forked, messages } = running();
    const next = configOf({ retireTimeout: '30s' }, 3);
    const pending = supervisor.startGeneration(supervisor.generation(next), 15_000);
    assert.equal(forked.length, 5, 'three new workers beside the two');
    assert.equal(supervisor.phase().starting, 3);
    for (const w of forked.slice(2)) w.listen();
    const started = await pending;
    assert.equal(started.ok, true);
    assert.deepEqual(forked[0].types(), ['config'], 'nothing for the old workers before promote');
    const counts = supervisor.promote(started);
    assert.deepEqual(counts, { retiring: 2, closingNow: 0 });
    assert.equal(supervisor.config, next);
    for (const w of forked.slice(0, 2)) assert.deepEqual(w.sent.at(-1), { type: 'retire', timeoutMs: 30_000 });
    assert.deepEqual(supervisor.views().map((v) => v.retiring), [false, false, false, true, true]);
    // A retiring worker that exits is not replaced.
    forked[0].exit(0);
    assert.ok(messages().includes('old worker exited'));
    assert.equal(supervisor.views().length, 4);
    assert.equal(forked.length, 5);
  });

  void it('a new generation that does not start changes nothing that serves: the listening ones retire, the others are killed', async () => {
    const { supervisor, forked, timers } = running();
    const pending = supervisor.startGeneration(supervisor.generation(configOf()), 15_000);
    forked[2].listen();
    forked[3].exit(1);
    const started = await pending;
    assert.deepEqual(started, { ok: false, error: 'a new worker exited (code 1, signal none) while starting', stopping: false });
    assert.deepEqual(forked[2].sent.at(-1), { type: 'retire', timeoutMs: 60_000 }, 'it may hold connections already');
    assert.deepEqual(forked[0].types(), ['config'], 'the current workers heard nothing');
    timers.advance(60_000);
    assert.equal(forked.length, 4, 'the failed slot is not restarted');

    const late = supervisor.startGeneration(supervisor.generation(configOf()), 15_000);
    forked[4].listen();
    timers.advance(15_000);
    assert.deepEqual(await late, { ok: false, error: 'the new workers did not listen within 15s', stopping: false });
    assert.deepEqual(forked[5].signals, ['SIGKILL'], 'the one that never listened is killed');
    assert.deepEqual(supervisor.views().filter((v) => !v.retiring).map((v) => v.pid), [forked[0].process.pid, forked[1].process.pid]);
  });

  void it('past maxRetiringGenerations, the oldest retiring generation closes its tunnels now and is killed 3 s past drainTimeout', async () => {
    const { supervisor, forked, timers, messages } = running(configOf({ maxRetiringGenerations: 1 }, 1));
    const reload = async (): Promise<{ retiring: number; closingNow: number }> => {
      const pending = supervisor.startGeneration(supervisor.generation(configOf({ maxRetiringGenerations: 1 }, 1)), 15_000);
      forked.at(-1)!.listen();
      return supervisor.promote((await pending) as Extract<Started, { ok: true }>);
    };
    assert.deepEqual(await reload(), { retiring: 1, closingNow: 0 });
    assert.deepEqual(await reload(), { retiring: 1, closingNow: 1 });
    assert.deepEqual(forked[0].sent.at(-1), { type: 'drain', timeoutMs: 10_000 });
    assert.equal(supervisor.phase().closingNow, 1);
    assert.ok(messages().includes('old workers closing their tunnels now: more generations finishing their tunnels than maxRetiringGenerations'));
    timers.advance(12_999);
    assert.deepEqual(forked[0].signals, []);
    timers.advance(1);
    assert.deepEqual(forked[0].signals, ['SIGKILL']);
    assert.deepEqual(forked[1].signals, [], 'the younger retiring generation finishes its tunnels');
    forked[0].exit(null, 'SIGKILL');
    assert.equal(supervisor.phase().closingNow, 0);
  });
});
