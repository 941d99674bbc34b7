// The shutdown alone, on a real Supervisor with fake workers and a manual clock: every worker is
// told to drain within drainTimeout (it spreads its closes over closeSpread inside that), the
// primary waits for them, kills what is left 3 s past drainTimeout, and exits at a second signal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig, type LoadedConfig } from '../../src/config/load';
import { Reloader } from '../../src/primary/reloader';
import { Shutdown } from '../../src/primary/shutdown';
import { Supervisor } from '../../src/primary/supervisor';
import { capturedLog, fakeFork, ManualTimers } from './fake-workers';

const config: LoadedConfig = {
  ...validateConfig({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }] } }, routes: [{ pool: 'p' }], drainTimeout: '20s', closeSpread: '5s' }),
  workerCount: 2,
};

function setup() {
  const { fork, forked } = fakeFork();
  const timers = new ManualTimers();
  const { log, lines, messages } = capturedLog();
  const supervisor = new Supervisor(config, 4321, log, fork, timers);
  const exits: number[] = [];
  const shutdown = new Shutdown(supervisor, log, timers, (code) => void exits.push(code));
  let done = false;
  void shutdown.done.then(() => (done = true));
  supervisor.start();
  for (const w of forked) w.listen();
  /** Lets the done promise's callbacks run. */
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  return { supervisor, shutdown, forked, timers, lines, messages, exits, settle, isDone: () => done };
}

void describe('Shutdown', () => {
  void it('tells every worker to drain within drainTimeout, restarts none, and is done when the last one exits', async () => {
    const s = setup();
    s.shutdown.begin('SIGTERM');
    for (const w of s.forked) assert.deepEqual(w.sent.at(-1), { type: 'drain', timeoutMs: 20_000 });
    assert.deepEqual(s.lines.find((l) => l.msg === 'draining'), { ...s.lines.find((l) => l.msg === 'draining'), signal: 'SIGTERM', drainTimeoutMs: 20_000 });
    s.forked[0].exit(0);
    s.timers.advance(1000);
    await s.settle();
    assert.equal(s.forked.length, 2, 'a worker that exits while draining is not replaced');
    assert.equal(s.isDone(), false, 'one worker still drains');
    s.forked[1].exit(0);
    await s.settle();
    assert.equal(s.isDone(), true);
    assert.deepEqual(s.exits, []);
  });

  void it('kills the workers still there 3 s past drainTimeout, not sooner', async () => {
    const s = setup();
    s.shutdown.begin('SIGINT');
    s.timers.advance(22_999);
    await s.settle();
    assert.deepEqual(s.forked.map((w) => w.signals), [[], []]);
    assert.equal(s.isDone(), false);
    s.timers.advance(1);
    await s.settle();
    assert.deepEqual(s.forked.map((w) => w.signals), [['SIGKILL'], ['SIGKILL']]);
    assert.equal(s.isDone(), true);
  });

  void it('a second signal exits at once with status 1', () => {
    const s = setup();
    s.shutdown.begin('SIGTERM');
    s.shutdown.begin('SIGINT');
    assert.deepEqual(s.exits, [1]);
    assert.equal(s.messages().at(-1), 'second signal: exiting now');
  });

  void it('ends a reload in progress: its new workers drain with the rest and are waited for', async () => {
    const s = setup();
    const { log } = capturedLog();
    const reloader = new Reloader({ supervisor: s.supervisor, coordination: { reconfigure: () => undefined }, loadNext: () => config, log, applied: () => undefined });
    const pending = reloader.reload('SIGHUP');
    assert.equal(s.forked.length, 4);
    s.shutdown.begin('SIGTERM');
    assert.deepEqual(await pending, { ok: false, error: 'switchyard is stopping' });
    for (const w of s.forked) assert.equal(w.sent.at(-1)?.type, 'drain');
    for (const w of s.forked.slice(0, 3)) w.exit(0);
    await s.settle();
    assert.equal(s.isDone(), false, 'a new worker still drains');
    s.forked[3].exit(0);
    await s.settle();
    assert.equal(s.isDone(), true);
  });
});
