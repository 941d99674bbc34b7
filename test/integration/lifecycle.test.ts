// Process lifecycle: a killed worker is replaced while the other worker's tunnels live on;
// SIGTERM/SIGINT drain (1001 to every tunnel, bounded by drainTimeout) and exit 0.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBalancer, workerPidOf } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { isAlive } from '../helpers/proc';
import { rawWebSocket } from '../helpers/raw-client';
import { connect, connectMany, type TestClient } from '../helpers/ws-client';
import { waitFor, withTimeout } from '../helpers/wait';

void describe('lifecycle', { timeout: 90_000 }, () => {
  void it('replaces a SIGKILLed worker; tunnels on the other worker survive', async (t) => {
    const backend = await startEchoBackend({ name: 'w' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(backend);
    });
    const balancer = await startBalancer({ args: ['--backend', backend.url] });
    t.after(() => balancer.stop());
    assert.equal(balancer.initialPids.length, 2, `ready line lists 2 worker pids: ${JSON.stringify(balancer.initialPids)}`);

    clients.push(...(await connectMany(20, (i) => balancer.url(`/k?i=${i}`))));
    for (const c of clients) assert.equal((await c.request('pre')).text, 'pre');

    const victim = balancer.initialPids[0];
    const survivor = balancer.initialPids[1];
    process.kill(victim, 'SIGKILL');

    const exitedLine = await balancer.waitForLog((l) => l.msg === 'worker exited' && workerPidOf(l, balancer.pid) === victim, 5000, '"worker exited" for the killed pid');
    assert.equal(exitedLine.signal, 'SIGKILL');
    const startedLine = await balancer.waitForLog(
      (l) => l.msg === 'worker started' && !balancer.initialPids.includes(workerPidOf(l, balancer.pid) ?? -1),
      10_000,
      'a replacement "worker started"',
    );
    const replacement = workerPidOf(startedLine, balancer.pid)!;
    assert.ok(isAlive(replacement), 'the replacement worker runs');
    assert.ok(isAlive(survivor), 'the other worker was not touched');
    assert.ok(isAlive(balancer.pid), 'the primary survives a worker death');

    // The killed worker's tunnels are gone; the others still echo.
    await waitFor(() => clients.some((c) => c.closeInfo !== undefined), 5000, "the killed worker's tunnels to close");
    const alive = clients.filter((c) => c.closeInfo === undefined);
    assert.ok(alive.length >= 1, 'some tunnels were on the surviving worker');
    assert.ok(alive.length < clients.length, 'some tunnels were on the killed worker');
    let echoed = 0;
    for (const c of alive) {
      if (c.closeInfo !== undefined) continue;
      const reply = await c.request(`post-${echoed}`, 3000).catch(() => undefined);
      if (reply?.text === `post-${echoed}`) echoed++;
    }
    assert.ok(echoed >= 1, 'at least one surviving tunnel still echoes');

    // New connections work once the replacement listens (both workers accept again).
    const fresh = await connectMany(10, (i) => balancer.url(`/after?i=${i}`));
    clients.push(...fresh);
    for (const c of fresh) assert.equal((await c.request('new')).text, 'new');
  });

  void it('backs off a crash-looping worker: each quick death doubles the restart delay', async (t) => {
    const backend = await startEchoBackend({ name: 'loop' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({ args: ['--backend', backend.url], workers: 1 });
    t.after(() => balancer.stop());
    let victim = balancer.initialPids[0];
    const seen = new Set(balancer.initialPids);
    const delays: number[] = [];
    for (let round = 0; round < 4; round++) {
      process.kill(victim, 'SIGKILL');
      const exited = await balancer.waitForLog((l) => l.msg === 'worker exited' && workerPidOf(l, balancer.pid) === victim, 5000, `"worker exited" round ${round}`);
      delays.push(Number(exited.restartInMs));
      const started = await balancer.waitForLog((l) => l.msg === 'worker started' && !seen.has(workerPidOf(l, balancer.pid) ?? 0), 10_000, `"worker started" round ${round}`);
      victim = workerPidOf(started, balancer.pid)!;
      seen.add(victim);
    }
    assert.deepEqual(delays, [100, 200, 400, 800], `restart delays ${delays.join(', ')} ms`);
    assert.ok(isAlive(balancer.pid), 'the primary keeps going');
    const c = await connect(balancer.url('/after-loop'));
    t.after(() => c.terminate());
    assert.equal((await c.request('still here')).text, 'still here');
  });

  void it('SIGTERM: every tunnel gets 1001, then the primary exits 0 within drainTimeout', async (t) => {
    const backend = await startEchoBackend({ name: 'd' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(backend);
    });
    const balancer = await startBalancer({ args: ['--backend', backend.url, '--drain-timeout', '3s'] });
    t.after(() => balancer.stop('SIGKILL'));
    clients.push(...(await connectMany(6, (i) => balancer.url(`/drain?i=${i}`))));
    for (const c of clients) assert.equal((await c.request('x')).text, 'x');
    // One raw client that never answers the close handshake: the drain must still end by drainTimeout.
    const { socket: stubborn } = await rawWebSocket(balancer.port, { path: '/drain-stubborn' });
    t.after(() => stubborn.destroy());
    await waitFor(() => backend.openCount() === 7, 3000, 'all 7 tunnels on the backend');

    const started = Date.now();
    process.kill(balancer.pid, 'SIGTERM');
    const closes = await Promise.all(clients.map((c) => c.waitClose(5000)));
    for (const info of closes) assert.equal(info.code, 1001, `client closed with ${info.code} ${info.reason}`);
    const exit = await withTimeout(balancer.exited, 3000 + 4000, 'the primary to exit after SIGTERM');
    const took = Date.now() - started;
    assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${balancer.stderr()}`);
    assert.ok(took < 3000 + 3000, `exit took ${took} ms with drainTimeout 3s`);
    await waitFor(() => balancer.pids.every((p) => !isAlive(p)), 3000, 'the workers to exit too');
    // The backend sides were closed as well.
    await waitFor(() => backend.openCount() === 0, 3000, 'backend tunnels closed');
  });

  void it('SIGINT with no tunnels exits 0 promptly', async (t) => {
    const backend = await startEchoBackend({ name: 'i' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({ args: ['--backend', backend.url, '--drain-timeout', '5s'] });
    t.after(() => balancer.stop('SIGKILL'));
    const c = await connect(balancer.url('/quick'));
    assert.equal((await c.request('x')).text, 'x');
    await c.close();
    const started = Date.now();
    process.kill(balancer.pid, 'SIGINT');
    const exit = await withTimeout(balancer.exited, 8000, 'the primary to exit after SIGINT');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - started < 5000, 'with nothing open it did not wait the whole drainTimeout');
  });
});
