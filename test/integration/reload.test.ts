// Config reload (SIGHUP, `switchyard reload`, POST /reload), as NGINX's: a new generation of workers
// starts with the new config next to the old one; the old workers stop accepting and keep their
// tunnels until these end (or retireTimeout); a config that does not validate changes nothing.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import { request } from 'undici';
import { runCli, startBalancer, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { adminStatus, backendStatus } from '../helpers/admin';
import { scrape } from '../helpers/metrics';
import { deadPort } from '../helpers/ports';
import { isAlive } from '../helpers/proc';
import { openSocket, readResponseHead } from '../helpers/raw-client';
import { httpIdleCloseMs } from '../../src/uws';
import { startRedis } from '../helpers/redis';
import { waitFor, withTimeout } from '../helpers/wait';
import { closeClients, connectMany, type TestClient } from '../helpers/ws-client';

const poolOf = (...backends: EchoBackend[]): Record<string, unknown> => ({
  pools: { chat: { backends: backends.map((b) => ({ url: b.url })) } },
  routes: [{ path: '/', pool: 'chat' }],
});

/** Sends SIGHUP and returns the "reloaded" line that follows it. */
async function sighup(balancer: Balancer, generation: number): Promise<Record<string, unknown>> {
  process.kill(balancer.pid, 'SIGHUP');
  return balancer.waitForLog((l) => l.msg === 'reloaded' && l.generation === generation, 15_000, `"reloaded" generation ${generation}`);
}

/** Backends a and b, and two workers balancing over a; all closed after the test. */
async function twoBackends(t: TestContext): Promise<{ a: EchoBackend; b: EchoBackend; clients: TestClient[]; balancer: Balancer }> {
  const a = await startEchoBackend({ name: 'a' });
  const b = await startEchoBackend({ name: 'b' });
  const clients: TestClient[] = [];
  t.after(async () => {
    await closeClients(clients);
    await closeAll(a, b);
  });
  const balancer = await startBalancer({ workers: 2, config: poolOf(a) });
  t.after(() => balancer.stop());
  return { a, b, clients, balancer };
}

void describe('reload', { timeout: 120_000 }, () => {
  void it('SIGHUP: new workers take the new backends; old tunnels live on, then the old workers exit; totals keep their counts', async (t) => {
    const { a, b, clients, balancer } = await twoBackends(t);

    const old = await connectMany(6, (i) => balancer.url(`/old?i=${i}`));
    clients.push(...old);
    for (const c of old) assert.equal(await c.whoami(), 'a');

    balancer.rewriteConfig(poolOf(b));
    const reloaded = await sighup(balancer, 2);
    const newPids = reloaded.pids as number[];
    assert.equal(newPids.length, 2);
    assert.ok(newPids.every((p) => !balancer.initialPids.includes(p)), 'a new generation of workers');
    assert.equal(reloaded.retiring, 2);
    // Connect once the old workers have closed their listen sockets: a connection the kernel queued
    // on one in that instant is reset (SO_REUSEPORT drops a closed listener's queue; docs/operations.md, "Reload").
    await waitFor(() => balancer.logs.filter((l) => l.msg === 'retiring after a reload').length === 2, 5000, 'both old workers retiring');

    // New tunnels go to b only; the old ones still echo through a, untouched.
    const fresh = await connectMany(6, (i) => balancer.url(`/new?i=${i}`));
    clients.push(...fresh);
    for (const c of fresh) assert.equal(await c.whoami(), 'b');
    for (const c of old) assert.equal((await c.request('still here')).text, 'still here');
    assert.ok(old.every((c) => c.closeInfo === undefined), 'no old tunnel was closed');
    assert.ok(balancer.initialPids.every(isAlive), 'the old workers keep running while they hold tunnels');

    // The fleet view is the new config's; the old workers show as retiring.
    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as {
      fleet: { pools: Record<string, { backend: string }[]> };
      workers: { pid: number; retiring: boolean }[];
    };
    assert.deepEqual(status.fleet.pools.chat.map((r) => r.backend), [`127.0.0.1:${b.port}`]);
    assert.deepEqual(status.workers.filter((w) => w.retiring).map((w) => w.pid).sort(), [...balancer.initialPids].sort());
    let metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_workers_retiring'), 2);
    assert.equal(metrics.sum('switchyard_config_reloads_total', { result: 'ok' }), 1);
    assert.equal(metrics.sum('switchyard_tunnels_active'), 12, 'old and new tunnels');

    // The old tunnels end: the old workers exit, and what they counted stays in the totals.
    await closeClients(old);
    await waitFor(() => balancer.logs.filter((l) => l.msg === 'old worker exited').length === 2, 10_000, '"old worker exited" twice');
    assert.ok(balancer.initialPids.every((p) => !isAlive(p)), 'the old workers are gone');
    metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_workers_retiring'), 0);
    assert.equal(metrics.sum('switchyard_tunnels_opened_total', { backend: `127.0.0.1:${a.port}` }), 6, "the old workers' tunnels are still counted");
    assert.equal(metrics.sum('switchyard_tunnels_opened_total', { backend: `127.0.0.1:${b.port}` }), 6);
    assert.equal(metrics.sum('switchyard_workers'), 2);
    for (const c of fresh) assert.equal((await c.request('after')).text, 'after');
  });

  void it('with Redis and active checks: the new backends are checked, the removed one no more; old tunnels stay counted', async (t) => {
    const redis = await startRedis();
    const a = await startEchoBackend({ name: 'a' });
    const b = await startEchoBackend({ name: 'b' });
    const dead = await deadPort();
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a, b);
      await redis.stop();
    });
    const config = (urls: string[]): Record<string, unknown> => ({
      redis: { url: redis.url, clusterName: 'reload', syncInterval: '50ms' },
      pools: {
        chat: {
          backends: urls.map((url) => ({ url })),
          healthCheck: { type: 'http', path: '/health', interval: '100ms', timeout: '500ms', fall: 2, rise: 2 },
          outlierDetection: { enabled: false },
        },
      },
      routes: [{ path: '/', pool: 'chat' }],
    });
    const balancer = await startBalancer({ workers: 2, config: config([a.url]) });
    t.after(() => balancer.stop());
    const old = await connectMany(3, (i) => balancer.url(`/old?i=${i}`));
    clients.push(...old);

    balancer.rewriteConfig(config([b.url, `ws://127.0.0.1:${dead}`]));
    await sighup(balancer, 2);
    await waitFor(async () => (await backendStatus(balancer.adminPort!, 'chat', `127.0.0.1:${dead}`)).health === 'down', 5000, 'the added dead backend checked down');
    const report = await adminStatus(balancer.adminPort!);
    assert.deepEqual(report.pools.chat.map((r) => [r.backend, r.health, r.activeCheck]), [
      [`127.0.0.1:${b.port}`, 'up', 'up'],
      [`127.0.0.1:${dead}`, 'down', 'down'],
    ]);
    // a's checks stopped with the reload (a check every 100 ms would add ~5 here).
    // Measured over b's next 5 checks: the time in which a, still checked, would have had as many.
    const checksOf = (backend: typeof a): number => backend.httpRequests.filter((r) => r.url === '/health').length;
    const before = checksOf(a);
    const bBefore = checksOf(b);
    await waitFor(() => checksOf(b) >= bBefore + 5, 5000, 'b to be checked 5 more times');
    assert.ok(checksOf(a) - before <= 1, `a was checked ${checksOf(a) - before} more times after the reload`);

    const fresh = await connectMany(4, (i) => balancer.url(`/new?i=${i}`));
    clients.push(...fresh);
    for (const c of fresh) assert.equal(await c.whoami(), 'b');
    for (const c of old) assert.equal(await c.whoami(), 'a');
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_tunnels_active', { backend: `127.0.0.1:${a.port}` }), 3, "the old workers' tunnels");
    assert.equal(metrics.sum('switchyard_tunnels_active', { backend: `127.0.0.1:${b.port}` }), 4);
  });

  void it('keeps an ejected backend out across a reload (its outlier-detection record is carried over)', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    const dead = await deadPort();
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a);
    });
    const config = {
      pools: {
        chat: {
          algorithm: 'round-robin',
          retries: 1,
          outlierDetection: { consecutiveFailures: 2, baseEjectionTime: '60s' },
          backends: [{ url: a.url }, { url: `ws://127.0.0.1:${dead}` }],
        },
      },
      routes: [{ path: '/', pool: 'chat' }],
    };
    const balancer = await startBalancer({ workers: 1, config });
    t.after(() => balancer.stop());
    const deadStatus = () => backendStatus(balancer.adminPort!, 'chat', `127.0.0.1:${dead}`);
    // Every other upgrade tries the dead backend first (and is retried on a): two failures eject it.
    await waitFor(
      async () => {
        clients.push(...(await connectMany(2, (i) => balancer.url(`/x?i=${i}`))));
        return (await deadStatus()).ejected;
      },
      5000,
      'the dead backend ejected',
    );

    await sighup(balancer, 2);
    const after = await deadStatus();
    assert.equal(after.ejected, true, 'still ejected after the reload');
    assert.equal(after.health, 'down');
    assert.equal(after.ejections, 1);
  });

  void it('refuses a config that does not validate, or changes what needs a restart, with one line; nothing changes', async (t) => {
    const { b, clients, balancer } = await twoBackends(t);
    clients.push(...(await connectMany(2, (i) => balancer.url(`/x?i=${i}`))));

    balancer.rewriteConfig({ ...poolOf(b), routes: [{ path: '/', pool: 'nope' }] });
    let cli = await runCli(['reload', ...balancer.adminArgs()], 25_000);
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr.trim().split('\n').length, 1, `one line: ${cli.stderr}`);
    assert.match(cli.stderr, /reload refused: config error: routes\[0\]\.pool: names pool "nope"/);

    balancer.rewriteConfig({ ...poolOf(b), redis: { url: 'redis://127.0.0.1:1' } });
    cli = await runCli(['reload', ...balancer.adminArgs()], 25_000);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /redis: cannot change on reload; restart switchyard to change it/);

    // A hangup that reaches a worker (a terminal's, to the whole group) is the primary's to act on.
    process.kill(balancer.initialPids[0], 'SIGHUP');
    // A scrape gathers every worker's metrics over IPC: that worker answered after the signal reached it.
    const metrics = await scrape(balancer.adminUrl('/metrics'));

    // Still the first generation, untouched.
    assert.ok(balancer.initialPids.every(isAlive));
    assert.equal(balancer.logs.filter((l) => l.msg === 'worker exited').length, 0);
    assert.equal(balancer.logs.filter((l) => l.msg === 'reloading: starting new workers').length, 0);
    assert.equal(balancer.logs.filter((l) => l.msg === 'reload refused: still running the previous config').length, 2);
    for (const c of clients) assert.equal(await c.whoami(), 'a');
    assert.equal(metrics.sum('switchyard_config_reloads_total', { result: 'refused' }), 2);
    assert.equal(metrics.sum('switchyard_config_reloads_total', { result: 'ok' }), 0);
    const more = await connectMany(2, (i) => balancer.url(`/y?i=${i}`));
    clients.push(...more);
    for (const c of more) assert.equal(await c.whoami(), 'a');

    // Fixed: `switchyard reload` succeeds and says so.
    balancer.rewriteConfig(poolOf(b));
    cli = await runCli(['reload', ...balancer.adminArgs()], 25_000);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^reloaded: generation 2, 2 workers; 2 old workers finishing their tunnels$/m);
    const fresh = await connectMany(2, (i) => balancer.url(`/z?i=${i}`));
    clients.push(...fresh);
    for (const c of fresh) assert.equal(await c.whoami(), 'b');
    const get = await request(balancer.adminUrl('/reload'));
    await get.body.dump();
    assert.equal(get.statusCode, 405, 'GET /reload is not a reload');
  });

  void it('reloads are serialised and bounded: a second one while one runs gets 409; rapid reloads past maxRetiringGenerations close the oldest generation now, and wait while it closes', async (t) => {
    // A plain request held by the backend keeps a generation's worker busy until the test lets it go.
    const held: ServerResponse[] = [];
    const a = await startEchoBackend({ name: 'a', onRequest: (req, res) => (req.url === '/hold' ? held.push(res) > 0 : false) });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const res of held) res.end();
      await closeClients(clients);
      await closeAll(a);
    });
    const balancer = await startBalancer({ workers: 1, config: { ...poolOf(a), maxRetiringGenerations: 1, drainTimeout: '20s' } });
    t.after(() => balancer.stop());
    const reload = async (): Promise<{ status: number; body: { ok: boolean; error?: string; generation?: number; closingNow?: number } }> => {
      const res = await request(balancer.adminUrl('/reload'), { method: 'POST', headers: balancer.adminHeaders() });
      return { status: res.statusCode, body: (await res.body.json()) as { ok: boolean; error?: string } };
    };
    const alive = (): number => balancer.pids.filter(isAlive).length;
    const retired = (n: number): Promise<unknown> => waitFor(() => balancer.logs.filter((l) => l.msg === 'retiring after a reload').length >= n, 5000, `${n} workers retiring`);

    // Generation 1 holds a tunnel and a plain request in flight.
    const first = (await connectMany(1, () => balancer.url('/g1')))[0];
    clients.push(first);
    const inFlight = request(balancer.httpUrl('/hold'));
    await waitFor(() => held.length === 1, 5000, 'the held request at the backend');

    // Two at once: one reload runs, the other is refused and changes nothing.
    const pair = await Promise.all([reload(), reload()]);
    assert.deepEqual(pair.map((r) => r.status).sort(), [200, 409]);
    assert.deepEqual(pair.find((r) => r.status === 409)?.body, { ok: false, error: 'a reload is already in progress' });
    await retired(1);
    const second = (await connectMany(1, () => balancer.url('/g2')))[0];
    clients.push(second);

    // Generation 3: two older generations would retire, one more than allowed: the oldest closes its tunnels now.
    const third = await reload();
    assert.equal(third.status, 200);
    assert.equal(third.body.closingNow, 1);
    assert.equal((await first.waitClose(5000)).code, 1001, "generation 1's tunnel is closed with 1001");
    assert.equal(await second.whoami(), 'a', "generation 2's tunnel lives on");
    // While generation 1 still finishes its request, reloads are refused (HTTP and SIGHUP alike): no pile-up.
    const refused = await reload();
    assert.equal(refused.status, 409);
    assert.match(String(refused.body.error), /^old workers told by an earlier reload to close their tunnels \(more than maxRetiringGenerations: 1\) are still closing them, for at most drainTimeout \(20s\); try again then$/);
    process.kill(balancer.pid, 'SIGHUP');
    await balancer.waitForLog((l) => l.msg === 'reload refused: still running the previous config' && /still closing them/.test(String(l.error)), 5000, 'SIGHUP refused');
    assert.equal(alive(), 3, 'generations 1 (closing), 2 (retiring) and 3');

    // Generation 1's request gets its answer; its worker goes; the next reload is taken and closes generation 2.
    held[0].end('held answer');
    const answer = await inFlight;
    assert.equal(answer.statusCode, 200);
    assert.equal(await answer.body.text(), 'held answer');
    await balancer.waitForLog((l) => l.msg === 'old worker exited' && l.workerPid === balancer.initialPids[0], 10_000, 'the generation 1 worker to exit');
    await retired(2);
    const fourth = await reload();
    assert.equal(fourth.status, 200, JSON.stringify(fourth.body));
    assert.equal(fourth.body.generation, 4);
    assert.equal((await second.waitClose(5000)).code, 1001);
    await waitFor(() => alive() <= 2, 10_000, 'at most two generations (the current and one retiring)');
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_config_reloads_total', { result: 'ok' }), 3);
    assert.equal(metrics.sum('switchyard_config_reloads_total', { result: 'refused' }), 3);
  });

  void it('closes what is left on the old workers with 1001 after retireTimeout', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a);
    });
    const config = { ...poolOf(a), retireTimeout: '1s' };
    const balancer = await startBalancer({ workers: 1, config });
    t.after(() => balancer.stop());
    clients.push(...(await connectMany(3, (i) => balancer.url(`/x?i=${i}`))));

    await sighup(balancer, 2);
    for (const c of clients) {
      const info = await c.waitClose(6000);
      assert.equal(info.code, 1001);
    }
    await waitFor(() => !isAlive(balancer.initialPids[0]), 5000, 'the old worker to exit');
    const c = (await connectMany(1, () => balancer.url('/after')))[0];
    clients.push(c);
    assert.equal(await c.whoami(), 'a');
  });

  void it('a kept-alive HTTP client of an old worker gets its answer with Connection: close, not a 503', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    t.after(() => closeAll(a));
    const balancer = await startBalancer({ workers: 1, config: poolOf(a) });
    t.after(() => balancer.stop());

    const socket = await openSocket(balancer.port);
    t.after(() => socket.destroy());
    // A Content-Length answer, read whole, so the socket is at the next response.
    const get = `GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n`;
    const body = 'status 200 from a';
    socket.write(get);
    const first = await readResponseHead(socket);
    assert.equal(first.status, 200);
    assert.equal(first.headers.connection, undefined);
    assert.equal(first.rest.toString(), body, 'the body came with the head');

    await sighup(balancer, 2);
    socket.write(get);
    const second = await readResponseHead(socket);
    assert.equal(second.status, 200);
    assert.equal(second.headers.connection, 'close');
    assert.equal(second.headers['x-backend'], 'a');
    assert.equal(second.rest.toString(), body);

    const res = await request(balancer.httpUrl('/page'));
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers.connection, undefined, 'the new worker keeps connections alive');
    // With nothing left to answer, the old worker goes once uWS would have closed any idle kept-alive connection.
    await waitFor(() => !isAlive(balancer.initialPids[0]), httpIdleCloseMs + 13_000, 'the old worker to exit');
  });
});

// Its own suite: the reload suite's time budget is for the reloads.
void describe('reload, then shutdown', { timeout: 60_000 }, () => {
  void it('SIGTERM after a reload: tunnels on the retiring and the new workers all get 1001; the primary waits for both generations, then exits 0', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    const b = await startEchoBackend({ name: 'b' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(a, b);
    });
    const config = (backend: EchoBackend): Record<string, unknown> => ({ ...poolOf(backend), drainTimeout: '3s', retireTimeout: '60s' });
    const balancer = await startBalancer({ workers: 2, config: config(a) });
    t.after(() => balancer.stop('SIGKILL'));
    const old = await connectMany(4, (i) => balancer.url(`/old?i=${i}`));
    clients.push(...old);
    balancer.rewriteConfig(config(b));
    const reloaded = await sighup(balancer, 2);
    await waitFor(() => balancer.logs.filter((l) => l.msg === 'retiring after a reload').length === 2, 5000, 'both old workers retiring');
    const fresh = await connectMany(4, (i) => balancer.url(`/new?i=${i}`));
    clients.push(...fresh);
    for (const c of fresh) assert.equal(await c.whoami(), 'b');
    for (const c of old) assert.equal((await c.request('old')).text, 'old');

    process.kill(balancer.pid, 'SIGTERM');
    const closes = await Promise.all([...old, ...fresh].map((c) => c.waitClose(6000)));
    assert.deepEqual(closes.map((info) => info.code), Array<number>(8).fill(1001), 'retireTimeout (60s) does not hold the shutdown');
    const exit = await withTimeout(balancer.exited, 3000 + 4000, 'the primary to exit after SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${balancer.stderr()}`);
    const everyWorker = [...balancer.initialPids, ...(reloaded.pids as number[])];
    await waitFor(() => everyWorker.every((p) => !isAlive(p)), 3000, 'both generations of workers to exit');
    assert.ok(balancer.logs.some((l) => l.msg === 'stopped'), 'the primary said it stopped');
  });
});
