// At the descriptor limit: balancers started under `prlimit --nofile=80:80` (so Node cannot raise the
// soft limit). A worker out of descriptors stops accepting instead of spinning, refuses what it cannot
// serve with 503 and never blames a backend for it; nothing it does at the limit takes a process
// down; workerConnections caps the connections a worker serves; connects in flight are capped.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Status } from '../../src/admin/status';
import { closeAll, startEchoBackend, startUnacceptingServer, type EchoBackend, type UnacceptingServer } from '../helpers/backends';
import { startBalancer, stopAll, type Balancer, type LogLine } from '../helpers/balancer';
import { scrape } from '../helpers/metrics';
import { cpuShare, isAlive } from '../helpers/proc';
import { openSocket, rawRequest, readResponseHead, upgradeRequest } from '../helpers/raw-client';
import { closeClients, connect, connectMany, type TestClient } from '../helpers/ws-client';
import { delay, waitFor, waitStable } from '../helpers/wait';

const NOFILE_80 = ['prlimit', '--nofile=80:80'];
type StatusJson = Pick<Status, 'workers'>;
/** The robustness bar: a worker at its limit must not burn a core (it spun at 60-100% before). */
const MAX_CPU_SHARE = 0.3;

/** Opens up to `max` TCP connections that send nothing; stops at the first that fails. */
async function openSilent(port: number, max: number): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let i = 0; i < max; i++) {
    try {
      sockets.push(await openSocket(port, undefined, 1000));
    } catch {
      break;
    }
  }
  return sockets;
}

const localFailureLines = (b: Balancer, op: string): LogLine[] => b.logs.filter((l) => l.msg === 'local resource failure (not counted against any backend)' && l.op === op);

/** The sum of a metric's samples; throws when it has none. */
async function metric(b: Balancer, name: string, labels: Record<string, string> = {}): Promise<number> {
  return (await scrape(b.adminUrl('/metrics'))).sum(name, labels);
}

async function echoes(clients: readonly TestClient[]): Promise<void> {
  for (const [i, c] of clients.entries()) assert.equal((await c.request(`still here ${i}`)).text, `still here ${i}`, `tunnel ${i} carries on`);
}

void describe('at the descriptor limit', { timeout: 120_000 }, () => {
  let echo: EchoBackend;
  let echo2: EchoBackend;
  const chat = () => ({ pools: { chat: { backends: [{ url: echo.url }] } }, routes: [{ path: '/', pool: 'chat' }] });

  before(async () => {
    echo = await startEchoBackend({ name: 'fd-a' });
    echo2 = await startEchoBackend({ name: 'fd-b' });
  });
  after(() => closeAll(echo, echo2));

  void it('stops accepting instead of spinning when connections that send nothing fill the table; tunnels carry on; it accepts again when they leave', async () => {
    const b = await startBalancer({ workers: 1, wrapper: NOFILE_80, config: chat() });
    const clients: TestClient[] = [];
    let silent: Socket[] = [];
    try {
      const worker = b.pids[0];
      clients.push(...(await connectMany(5, (i) => b.url(`/t${i}`))));
      silent = await openSilent(b.port, 75);
      const share = await cpuShare(worker, 2000);
      assert.ok(share < MAX_CPU_SHARE, `the worker used ${(share * 100).toFixed(0)}% of a core with its descriptor table full`);
      assert.equal(await metric(b, 'switchyard_worker_accepting'), 0, 'the worker has stopped listening');
      assert.ok((await metric(b, 'switchyard_local_resource_failures_total', { cause: 'EMFILE', op: 'accept' })) >= 1);
      const status = (await (await fetch(b.adminUrl('/status'))).json()) as StatusJson;
      assert.equal(status.workers[0].connections?.accepting, false, '/status says the worker is not accepting');
      await echoes(clients);
      assert.ok(isAlive(worker) && !b.logs.some((l) => l.msg === 'worker exited'), 'the worker lives');
      for (const s of silent) s.destroy();
      silent = [];
      // Their descriptors are free again: the worker listens again.
      clients.push(await waitFor(() => connect(b.url('/after'), { timeoutMs: 1000 }).catch(() => undefined), 10_000, 'an upgrade to succeed again', 200));
      assert.equal(await metric(b, 'switchyard_worker_accepting'), 1);
      await b.waitForLog((l) => l.msg === 'descriptors free again: accepting new connections', 1000);
    } finally {
      for (const s of silent) s.destroy();
      await closeClients(clients);
      await stopAll(b);
    }
  });

  void it('workerConnections (auto, from the limit): upgrades and requests past it get 503 with Connection: close; open tunnels carry on', async () => {
    const b = await startBalancer({ workers: 1, wrapper: NOFILE_80, config: chat() });
    const clients: TestClient[] = [];
    try {
      const ready = await b.waitForLog((l) => l.msg === 'switchyard ready', 1000);
      const cap = ready.workerConnections;
      assert.ok(typeof cap === 'number' && cap >= 1 && cap <= 20, `workerConnections ${String(cap)} from a limit of 80`);
      clients.push(...(await connectMany(cap, (i) => b.url(`/t${i}`))));
      const upgrade = await rawRequest(b.port, upgradeRequest({ path: '/one-more' }).text);
      upgrade.socket.destroy();
      assert.equal(upgrade.status, 503);
      assert.equal(upgrade.headers.connection, 'close');
      const plain = await rawRequest(b.port, 'GET /page HTTP/1.1\r\nHost: x\r\n\r\n');
      plain.socket.destroy();
      assert.equal(plain.status, 503);
      assert.equal(plain.headers.connection, 'close');
      assert.ok((await cpuShare(b.pids[0], 1000)) < MAX_CPU_SHARE);
      await echoes(clients);
      assert.equal(await metric(b, 'switchyard_upgrades_total', { outcome: 'worker_full' }), 1);
      assert.equal(await metric(b, 'switchyard_http_requests_total', { outcome: 'worker_full' }), 1);
      assert.equal(await metric(b, 'switchyard_worker_connections'), cap);
      assert.equal(await metric(b, 'switchyard_worker_connections_limit'), cap);
      const status = (await (await fetch(b.adminUrl('/status'))).json()) as StatusJson;
      assert.deepEqual(status.workers[0].connections, { open: cap, limit: cap, accepting: true });
      await clients.pop()!.close();
      clients.push(await waitFor(() => connect(b.url('/room-again'), { timeoutMs: 1000 }).catch(() => undefined), 5000, 'room for one more tunnel', 100));
    } finally {
      await closeClients(clients);
      await stopAll(b);
    }
  });

  void it('a connect that finds no descriptor answers 503 local_resources, counts against no backend and is not retried; /status and /metrics keep answering', async () => {
    const b = await startBalancer({
      workers: 1,
      wrapper: NOFILE_80,
      config: {
        workerConnections: 1000, // past what 80 descriptors hold: the table fills before the cap
        pools: {
          chat: {
            algorithm: 'round-robin',
            backends: [{ url: echo.url }, { url: echo2.url }],
            // One failure would eject a backend, were local failures counted.
            outlierDetection: { consecutiveFailures: 1, maxEjectionPercent: 100 },
          },
        },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    const clients: TestClient[] = [];
    let held: Socket[] = [];
    try {
      const worker = b.pids[0];
      clients.push(...(await connectMany(3, (i) => b.url(`/t${i}`))));
      // Connections that send nothing fill the table; the accept guard stops listening and frees its
      // reserve, so a few descriptors are left for requests on connections already accepted.
      held = await openSilent(b.port, 75);
      await waitFor(async () => (await metric(b, 'switchyard_worker_accepting')) === 0, 5000, 'the worker to stop accepting');
      // Those still in the kernel's accept queue were reset when the listen socket closed.
      await waitStable(() => held.filter((s) => s.destroyed).length, { stableMs: 300, timeoutMs: 3000, what: 'the reset connections' });
      held = held.filter((s) => !s.destroyed);
      assert.ok(held.length > 30, `${held.length} connections held`);
      // More plain requests than free descriptors (each needs a backend connection), then more upgrades
      // than the refused requests gave back.
      const gets = held.slice(0, 20);
      const upgrades = held.slice(20);
      for (const s of gets) s.write('GET /page HTTP/1.1\r\nHost: x\r\n\r\n');
      const getStatuses = await Promise.all(gets.map(async (s) => (await readResponseHead(s)).status));
      for (const s of upgrades) s.write(upgradeRequest({ path: '/late' }).text);
      const upgradeAnswers = await Promise.all(upgrades.map((s) => readResponseHead(s)));
      const upgradeStatuses = upgradeAnswers.map((a) => a.status);
      assert.ok(getStatuses.every((s) => s === 200 || s === 503), `plain requests got ${getStatuses.join(' ')}`);
      assert.ok(upgradeStatuses.every((s) => s === 101 || s === 503), `upgrades got ${upgradeStatuses.join(' ')}`);
      assert.ok(getStatuses.includes(503) && upgradeStatuses.includes(503), `some were refused: ${getStatuses.join(' ')} / ${upgradeStatuses.join(' ')}`);
      assert.ok(upgradeAnswers.filter((a) => a.status === 503).every((a) => a.headers.connection === 'close'));

      // Nothing of it is the backends': no ejection, no failure logged against them, no retry.
      for (const backend of [echo, echo2]) assert.equal(await metric(b, 'switchyard_backend_ejections_total', { backend: `127.0.0.1:${backend.port}` }), 0);
      assert.ok(!b.logs.some((l) => ['backend connect failed', 'http backend request failed', 'outlier detection: backend ejected'].includes(l.msg ?? '')), 'no line blames a backend');
      assert.ok((await metric(b, 'switchyard_upgrades_total', { outcome: 'local_resources' })) >= 1);
      assert.ok((await metric(b, 'switchyard_http_requests_total', { outcome: 'local_resources' })) >= 1);
      assert.ok((await metric(b, 'switchyard_local_resource_failures_total', { cause: 'EMFILE', op: 'backend_connect' })) >= 1);
      assert.ok((await metric(b, 'switchyard_local_resource_failures_total', { cause: 'EMFILE', op: 'http_connect' })) >= 1);
      // A storm logs once per interval.
      assert.equal(localFailureLines(b, 'backend_connect').length, 1);
      assert.equal(localFailureLines(b, 'backend_connect')[0].cause, 'EMFILE');

      // At the limit, every metric, status and log path keeps the worker (and its tunnels) alive.
      for (let i = 0; i < 3; i++) {
        assert.equal((await fetch(b.adminUrl('/status'))).status, 200);
        assert.equal((await fetch(b.adminUrl('/metrics'))).status, 200);
      }
      assert.ok(isAlive(worker), 'the worker lives');
      assert.ok(!b.logs.some((l) => l.msg === 'worker exited' || l.msg === 'unhandled promise rejection (a defect): carrying on'), 'no crash, no unhandled rejection');
      await echoes(clients);
    } finally {
      for (const s of held) s.destroy();
      await closeClients(clients);
      await stopAll(b);
    }
  });

  void it('a health check that finds no descriptor in the primary does not take the backend down, and the primary stays up', async () => {
    const b = await startBalancer({
      workers: 1,
      wrapper: NOFILE_80,
      config: {
        pools: { chat: { backends: [{ url: echo.url }], healthCheck: { type: 'tcp', interval: '100ms', timeout: '1s', fall: 1, rise: 1 } } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    let held: Socket[] = [];
    try {
      // Idle connections to the admin listener fill the primary's table.
      held = await openSilent(b.adminPort!, 75);
      await b.waitForLog((l) => l.msg === 'local resource failure (not counted against any backend)' && l.op === 'health_check' && l.cause === 'EMFILE', 5000, 'a health check failing for want of a descriptor');
      for (const s of held) s.destroy();
      held = [];
      await waitFor(async () => (await fetch(b.adminUrl('/status')).then((r) => r.status, () => 0)) === 200, 5000, 'the admin listener to answer again');
      assert.ok(!b.logs.some((l) => l.msg === 'health check: backend down'), 'the backend was never marked down');
      assert.ok(isAlive(b.pid) && b.exitInfo() === undefined, 'the primary lives');
      const c = await connect(b.url('/after'));
      await c.close();
    } finally {
      for (const s of held) s.destroy();
      await stopAll(b);
    }
  });

  void it('the soft limit is raised to the hard one at start, both are logged, and workerConnections auto follows', async () => {
    const b = await startBalancer({ workers: 1, wrapper: ['prlimit', '--nofile=80:4096'], config: chat() });
    try {
      const line = await b.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('descriptor limit'), 1000);
      assert.deepEqual([line.soft, line.hard], [4096, 4096]);
      const cap = (await b.waitForLog((l) => l.msg === 'switchyard ready', 1000)).workerConnections as number;
      assert.ok(cap > 1500 && cap < 2048, `workerConnections ${cap} from a limit of 4096`);
      assert.equal(await metric(b, 'switchyard_worker_connections_limit'), cap);
    } finally {
      await stopAll(b);
    }
  });
});

void describe('maxConnectsInFlight', { timeout: 60_000 }, () => {
  let blackhole: UnacceptingServer;
  let echo: EchoBackend;
  let b: Balancer;

  before(async () => {
    blackhole = await startUnacceptingServer();
    echo = await startEchoBackend({ name: 'in-flight' });
    b = await startBalancer({
      workers: 1,
      config: {
        pools: { chat: { algorithm: 'round-robin', retries: 0, connectTimeout: '3s', maxConnectsInFlight: 2, backends: [{ url: blackhole.url }, { url: echo.url }] } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
  });
  after(async () => {
    await stopAll(b);
    await closeAll(blackhole, echo);
  });

  void it('skips a backend with maxConnectsInFlight connects under way: a blackholed one holds two, the other backend takes the rest', async () => {
    // One upgrade at a time, each given a moment to open: those sent to the blackholed backend hang.
    const opening: Promise<TestClient>[] = [];
    for (let i = 0; i < 8; i++) {
      const p = connect(b.url(`/c${i}`), { timeoutMs: 8000 });
      p.catch(() => undefined);
      opening.push(p);
      await Promise.race([p.catch(() => undefined), delay(300)]);
    }
    assert.equal(echo.openCount(), 6, 'six tunnels on the backend that answers');
    const blackholeName = `127.0.0.1:${blackhole.port}`;
    assert.equal(await metric(b, 'switchyard_backend_connects_in_flight', { backend: blackholeName }), 2, 'two connects hang on the blackholed backend');
    assert.equal(await metric(b, 'switchyard_backend_connects_in_flight', { backend: `127.0.0.1:${echo.port}` }), 0);
    const settled = await Promise.allSettled(opening);
    assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 6);
    assert.equal(settled.filter((s) => s.status === 'rejected').length, 2, 'the two on the blackholed backend time out');
    for (const s of settled) if (s.status === 'fulfilled') s.value.terminate();
  });
});
