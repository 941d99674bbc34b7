// Health on one machine: active checks take a stopped backend out and a restarted one back
// (fall/rise respected), outlier detection ejects a failing backend for longer each time, and an
// operator drains a backend with `switchyard admin` and sees it in `switchyard status`.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runCli, startBalancer, stopAll, type Balancer, type LogLine } from '../helpers/balancer';
import { adminStatus, backendStatus } from '../helpers/admin';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { freePort } from '../helpers/ports';
import { waitFor } from '../helpers/wait';
import { closeClients, connect, UpgradeRejected, type TestClient } from '../helpers/ws-client';

/** 101 when the upgrade went through (the client is closed again), else the refusal's status. */
async function upgradeResult(url: string): Promise<number> {
  try {
    const c = await connect(url);
    await c.close();
    return 101;
  } catch (err) {
    if (err instanceof UpgradeRejected) return err.status;
    throw err;
  }
}

const started: { close(): Promise<void> }[] = [];
const balancers: Balancer[] = [];
const clients: TestClient[] = [];
after(async () => {
  await closeClients(clients);
  await stopAll(...balancers);
  await closeAll(...started);
});

async function backend(name: string, port?: number, refuse?: () => number | undefined): Promise<EchoBackend> {
  const b = await startEchoBackend({ name, port, refuse });
  started.push(b);
  return b;
}

async function whoamiOf(url: string): Promise<string> {
  const c = await connect(url);
  clients.push(c);
  return c.whoami();
}

const healthRequests = (b: EchoBackend): number => b.httpRequests.filter((r) => r.url === '/health').length;

void describe('active health checks', { timeout: 60_000 }, () => {
  void it('mark a stopped backend down after `fall` failures and a restarted one up after `rise` passes', async () => {
    let a = await backend('a');
    const b = await backend('b');
    const adminPort = await freePort();
    const balancer = await startBalancer({
      config: {
        admin: { port: adminPort },
        pools: {
          chat: {
            backends: [{ url: a.url }, { url: b.url }],
            healthCheck: { type: 'http', path: '/health', interval: '100ms', timeout: '500ms', fall: 2, rise: 3 },
            outlierDetection: { enabled: false },
          },
        },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    balancers.push(balancer);
    const aName = `127.0.0.1:${a.port}`;
    await waitFor(() => healthRequests(a) >= 2 && healthRequests(b) >= 2, 5000, 'checks reaching both backends');
    assert.equal((await backendStatus(adminPort, 'chat', aName)).health, 'up');

    await a.close();
    const down = await balancer.waitForLog((l) => l.msg === 'health check: backend down' && l.backend === aName, 5000, 'a down');
    assert.equal(down.reason, 'ECONNREFUSED');
    const st = await backendStatus(adminPort, 'chat', aName);
    assert.deepEqual([st.health, st.activeCheck, st.checkedHere], ['down', 'down', true]);
    for (let i = 0; i < 6; i++) assert.equal(await whoamiOf(balancer.url('/')), 'b', 'no new tunnel goes to the down backend');

    a = await backend('a', a.port);
    const isUp = (l: LogLine): boolean => l.msg === 'health check: backend up' && l.backend === aName;
    await balancer.waitForLog(isUp, 5000, 'a up');
    assert.ok(healthRequests(a) >= 3, `up only after rise=3 passing checks (saw ${healthRequests(a)})`);
    await waitFor(async () => (await backendStatus(adminPort, 'chat', aName)).health === 'up', 3000, 'status up');
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add(await whoamiOf(balancer.url('/')));
    assert.ok(names.has('a'), 'new tunnels reach the backend again');
  });
});

void describe('outlier detection', { timeout: 60_000 }, () => {
  void it('ejects a backend failing its upgrades, for longer on a repeat, and keeps its tunnels open', async () => {
    let failing = false;
    const bad = await backend('bad', undefined, () => (failing ? 503 : undefined));
    const good = await backend('good');
    const adminPort = await freePort();
    const balancer = await startBalancer({
      config: {
        admin: { port: adminPort },
        pools: {
          chat: {
            algorithm: 'round-robin',
            backends: [{ url: bad.url }, { url: good.url }],
            outlierDetection: { consecutiveFailures: 3, window: '10s', baseEjectionTime: '1s', maxEjectionTime: '20s', maxEjectionPercent: 50 },
          },
        },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    balancers.push(balancer);
    const badName = `127.0.0.1:${bad.port}`;
    // A tunnel on the backend before it goes bad: ejection must not cut it.
    let onBad: TestClient | undefined;
    await waitFor(async () => {
      const c = await connect(balancer.url('/'));
      clients.push(c);
      if ((await c.whoami()) === 'bad') return (onBad = c);
      return undefined;
    }, 5000, 'a tunnel on bad');

    const ejectionsLogged = (): LogLine[] => balancer.logs.filter((l) => l.msg === 'outlier detection: backend ejected' && l.backend === badName);
    const provoke = async (n: number): Promise<void> => {
      // Round-robin alternates per worker: hammer until bad has refused enough and got ejected.
      await waitFor(async () => {
        const status = await upgradeResult(balancer.url('/'));
        assert.ok(status === 101 || status === 503, `status ${status}`);
        return ejectionsLogged().length >= n;
      }, 10_000, `ejection ${n}`);
    };

    failing = true;
    await provoke(1);
    assert.equal(ejectionsLogged()[0].durationMs, 1000);
    for (let i = 0; i < 6; i++) assert.equal(await upgradeResult(balancer.url('/')), 101, 'ejected: every upgrade goes to good');
    assert.equal(await onBad!.whoami(), 'bad', 'the existing tunnel is not cut');
    await balancer.waitForLog((l) => l.msg === 'outlier detection: backend returned' && l.backend === badName, 5000, 'return');

    await provoke(2);
    assert.equal(ejectionsLogged()[1].durationMs, 2000, 'a repeat ejection lasts twice as long');
    const st = await backendStatus(adminPort, 'chat', badName);
    assert.deepEqual([st.ejected, st.ejections, st.health], [true, 2, 'down']);
  });
});

void describe('operator surface', { timeout: 60_000 }, () => {
  void it('`switchyard admin` drains a backend (tunnels stay, no new ones) and `switchyard status` shows it', async () => {
    const a = await backend('a');
    const b = await backend('b');
    const adminPort = await freePort();
    const balancer = await startBalancer({
      config: { admin: { port: adminPort }, pools: { chat: { backends: [{ url: a.url }, { url: b.url }] } }, routes: [{ path: '/', pool: 'chat' }] },
    });
    balancers.push(balancer);
    const first = await connect(balancer.url('/'));
    clients.push(first);
    await first.whoami();
    // The primary tells the other worker as soon as it counts the tunnel: the second goes to the other backend.
    const fleetTotal = async (): Promise<number> => (await adminStatus(adminPort)).pools.chat.reduce((n, x) => n + x.connections.fleet, 0);
    await waitFor(async () => (await fleetTotal()) === 1, 3000, 'the first tunnel counted');
    const second = await connect(balancer.url('/'));
    clients.push(second);
    assert.deepEqual(new Set([await first.whoami(), await second.whoami()]), new Set(['a', 'b']));
    const onA = (await first.whoami()) === 'a' ? first : second;

    const set = await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'drain', ...balancer.adminArgs()]);
    assert.equal(set.code, 0, set.stderr);
    await waitFor(async () => (await backendStatus(adminPort, 'chat', `127.0.0.1:${a.port}`)).admin === 'drain', 3000, 'drain applied');
    await waitFor(async () => (await whoamiOf(balancer.url('/'))) === 'b', 3000, 'a drained worker-side');
    for (let i = 0; i < 6; i++) assert.equal(await whoamiOf(balancer.url('/')), 'b');
    assert.equal(await onA.whoami(), 'a', 'a drained backend keeps its tunnels');

    const out = await runCli(['status', '--admin', `127.0.0.1:${adminPort}`]);
    assert.equal(out.code, 0, out.stderr);
    const row = out.stdout.split('\n').find((l) => l.includes(`127.0.0.1:${a.port}`)) ?? '';
    assert.match(row, /\bup\b.*\boff\b.*\bno\b.*\bdrain\b\s+1\s+1$/, out.stdout);
    assert.match(out.stdout, /shared state: memory ok/);
    const fleetOnB = async (): Promise<number | undefined> => (await adminStatus(adminPort)).pools.chat.find((x) => x.backend === `127.0.0.1:${b.port}`)?.connections.fleet;
    await waitFor(async () => (await fleetOnB()) === b.openCount(), 3000, 'status counts = the backend\'s own count');
    assert.ok(b.openCount() >= 7);

    const bad = await runCli(['admin', 'chat', '127.0.0.1:1', 'drain', ...balancer.adminArgs()]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no backend 127\.0\.0\.1:1 in pool chat/);
  });
});
