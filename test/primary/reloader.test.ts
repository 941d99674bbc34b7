// The reloader alone, on a real Supervisor with fake workers: one reload at a time, and a config
// that does not validate (or new workers that do not start) leaves the running workers alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, validateConfig, type LoadedConfig } from '../../src/config/load';
import { Reloader } from '../../src/primary/reloader';
import { Supervisor } from '../../src/primary/supervisor';
import { capturedLog, fakeFork, ManualTimers } from './fake-workers';

const configOf = (extra: object = {}, workerCount = 2): LoadedConfig => ({
  ...validateConfig({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }] } }, routes: [{ pool: 'p' }], ...extra }),
  workerCount,
});

function setup(loadNext: (() => LoadedConfig) | undefined) {
  const { fork, forked } = fakeFork();
  const timers = new ManualTimers();
  const { log, lines, messages } = capturedLog();
  const first = configOf();
  const supervisor = new Supervisor(first, 4321, log, fork, timers);
  const reconfigured: LoadedConfig[] = [];
  const applied: LoadedConfig[] = [];
  const reloader = new Reloader({ supervisor, coordination: { reconfigure: (c) => void reconfigured.push(c) }, loadNext, log, applied: (c) => void applied.push(c) });
  supervisor.start();
  for (const w of forked) w.listen();
  return { supervisor, reloader, forked, timers, lines, messages, first, reconfigured, applied };
}

void describe('Reloader', () => {
  void it('serialises reloads: a second one while the first starts its workers is refused, the first completes', async () => {
    const next = configOf({ logLevel: 'debug' }, 3);
    const s = setup(() => next);
    const first = s.reloader.reload('SIGHUP');
    const second = await s.reloader.reload('admin');
    assert.deepEqual(second, { ok: false, error: 'a reload is already in progress' });
    assert.equal(s.forked.length, 5, 'only the first reload forked workers');
    for (const w of s.forked.slice(2)) w.listen();
    assert.deepEqual(await first, { ok: true, generation: 2, workers: 3, retiring: 2, closingNow: 0 });
    assert.equal(s.supervisor.config, next);
    assert.deepEqual(s.reconfigured, [next]);
    assert.deepEqual(s.applied, [next]);
    assert.deepEqual(s.messages().filter((m) => m.startsWith('reload')), ['reloading: starting new workers', 'reload refused: still running the previous config', 'reloaded']);
    assert.equal(s.lines.find((l) => l.msg === 'reload refused: still running the previous config')?.by, 'admin');
    // The third, after the first, is accepted again.
    const third = s.reloader.reload('SIGHUP');
    for (const w of s.forked.slice(5)) w.listen();
    assert.equal((await third).ok, true);
  });

  void it('refuses a config that does not validate without touching the running workers', async () => {
    const s = setup(() => {
      throw new ConfigError('config error: pools.p.backends: Required');
    });
    assert.deepEqual(await s.reloader.reload('SIGHUP'), { ok: false, error: 'config error: pools.p.backends: Required' });
    assert.equal(s.forked.length, 2, 'no worker forked');
    for (const w of s.forked) assert.deepEqual(w.types(), ['config'], 'the running workers heard nothing');
    assert.deepEqual(s.reconfigured, [], 'coordination untouched');
    assert.equal(s.lines.at(-1)?.msg, 'reload refused: still running the previous config');

    // A valid config that changes what a reload cannot (the public port) is refused the same way.
    const moved = setup(() => configOf({ listen: { port: 9 } }));
    const result = await moved.reloader.reload('admin');
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.error, /listen: cannot change on reload/);
    assert.equal(moved.forked.length, 2);
    assert.equal(moved.supervisor.config, moved.first);
  });

  void it('without a config to read again, or before the first workers listen, refuses', async () => {
    assert.deepEqual(await setup(undefined).reloader.reload('SIGHUP'), { ok: false, error: 'no config to reload' });
    const { fork, forked } = fakeFork();
    const { log } = capturedLog();
    const supervisor = new Supervisor(configOf(), 1, log, fork, new ManualTimers());
    const reloader = new Reloader({ supervisor, coordination: { reconfigure: () => undefined }, loadNext: () => configOf(), log, applied: () => undefined });
    supervisor.start();
    assert.deepEqual(await reloader.reload('SIGHUP'), { ok: false, error: 'switchyard is starting or stopping' });
    assert.equal(forked.length, 2);
  });

  void it('new workers that do not start: coordination goes back to the running config and the reload is refused', async () => {
    const next = configOf({}, 2);
    const s = setup(() => next);
    const pending = s.reloader.reload('SIGHUP');
    s.forked[2].report({ type: 'listen-failed', error: 'EADDRINUSE' });
    assert.deepEqual(await pending, { ok: false, error: 'a new worker could not listen: EADDRINUSE' });
    assert.deepEqual(s.reconfigured, [next, s.first]);
    assert.deepEqual(s.applied, []);
    assert.equal(s.supervisor.config, s.first);
  });
});
