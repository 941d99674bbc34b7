// The CLI: `check` on good and bad configs (one line naming the key), --help, and start-up failures
// (port in use, invalid config) that must end the process with a clear line.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { runCli, startBalancer, writeConfig } from '../helpers/balancer';

const GOOD = {
  listen: { host: '127.0.0.1', port: 8080 },
  workers: 2,
  drainTimeout: '10s',
  trustedProxies: ['127.0.0.1'],
  logLevel: 'info',
  pools: {
    chat: {
      algorithm: 'least-connections',
      connectTimeout: '5s',
      retries: 2,
      backends: [
        { url: 'ws://127.0.0.1:9001', weight: 1, admin: 'ready' },
        { url: 'ws://127.0.0.1:9002', weight: 3, admin: 'drain' },
      ],
    },
  },
  routes: [
    {
      host: 'example.test',
      path: '/chat',
      pool: 'chat',
      mode: 'both',
      idleTimeout: '120s',
      backendIdleTimeout: 120000,
      maxPayload: '16MiB',
      clientBufferLimit: '1MiB',
      backendBufferLimit: 4194304,
      compression: false,
    },
  ],
};

type Mutate = (c: Record<string, unknown> & typeof GOOD) => void;
const variant = (mutate: Mutate): Record<string, unknown> => {
  const copy = structuredClone(GOOD) as Record<string, unknown> & typeof GOOD;
  mutate(copy);
  return copy;
};

const cleanups: (() => void)[] = [];
function file(config: Record<string, unknown>, name?: string): string {
  const w = writeConfig(config, name);
  cleanups.push(w.cleanup);
  return w.file;
}

function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '');
}

void describe('switchyard check', { timeout: 60_000, concurrency: 4 }, () => {
  after(() => cleanups.forEach((c) => c()));

  void it('accepts a valid config (YAML and JSON) with exit 0', async () => {
    for (const name of ['good.yaml', 'good.json']) {
      const r = await runCli(['check', '--config', file(GOOD, name)]);
      assert.equal(r.code, 0, `${name}: exit ${r.code}, stderr: ${r.stderr}`);
      assert.equal(r.stderr.trim(), '');
      assert.match(r.stdout, /^client limits: 1024 tunnels, 20 upgrades\/s \(burst 100\) per client IP, counted per machine$/m);
    }
  });

  void it('says what bounds a worker: workerConnections at this shell\'s descriptor limit, maxPayload, messageAssemblyLimit', async () => {
    const r = await runCli(['check', '--config', file(GOOD)], 15_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^limits: workerConnections auto \(about \d+ per worker at this shell's descriptor limit of \d+\); maxPayload 16MiB; messageAssemblyLimit 64MiB per worker$/m);
    const fixed = await runCli(['check', '--config', file(variant((c) => Object.assign(c, { workerConnections: 500 })))]);
    assert.match(fixed.stdout, /^limits: workerConnections 500;/m);
  });

  void it('says who may use the admin writes: off without a token, the token\'s source, the socket', async () => {
    let r = await runCli(['check', '--config', file(GOOD)]);
    assert.match(r.stdout, /: ok \(1 pools, 2 backends, 1 routes; admin writes: off \(no admin token\)\)$/m);
    r = await runCli(['check', '--config', file(GOOD)], 15_000, { SWITCHYARD_ADMIN_TOKEN: 'x'.repeat(16) });
    assert.match(r.stdout, /; admin writes: token from SWITCHYARD_ADMIN_TOKEN\)$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c, { admin: { token: 'y'.repeat(16), socket: '/run/switchyard/admin.sock' } })))]);
    assert.match(r.stdout, /; admin writes: token from admin\.token, admin\.socket \/run\/switchyard\/admin\.sock\)$/m);
  });

  void it('says how each pool balances', async () => {
    let r = await runCli(['check', '--config', file(GOOD)]);
    assert.match(r.stdout, /^pool chat: least-connections$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c.pools.chat, { algorithm: 'hash', hashKey: 'path:2', balanceFactor: 1.25, slowStart: '30s' })))]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^pool chat: hash on path:2, balanceFactor 1\.25, slowStart 30s$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c.pools.chat, { maxUpgradesPerSecond: 200, upgradeQueueTimeout: '3s' })))]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^pool chat: least-connections, maxUpgradesPerSecond 200 per backend from this machine \(queue up to 3s, then 503 with Retry-After\)$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c.pools.chat, { rebalance: { maxSkew: 1.3, minTunnelAge: '2m' } })))]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^pool chat: least-connections, rebalance above maxSkew 1\.3 at 50 closes\/s for the fleet, tunnels older than 120s$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c.pools.chat, { rebalance: { maxSkew: 1 } })))]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /pools\.chat\.rebalance\.maxSkew/);
  });

  void it('says how the closes of a drain are spread', async () => {
    let r = await runCli(['check', '--config', file(GOOD)]);
    assert.match(r.stdout, /^closes on drain and at the end of retireTimeout: spread over 8s \(closeSpread 10s, bounded by drainTimeout 10s less 2s for the last close handshakes\), at least 50\/s per worker$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c, { closeSpread: '20s', drainTimeout: '30s' })))]);
    assert.match(r.stdout, /^closes on drain and at the end of retireTimeout: spread over 20s, at least 50\/s per worker$/m);
    r = await runCli(['check', '--config', file(variant((c) => Object.assign(c, { closeSpread: '0s' })))]);
    assert.match(r.stdout, /^closes on drain and at the end of retireTimeout: all at once \(closeSpread 0\)$/m);
  });

  const bad: [string, Mutate, RegExp][] = [
    ['a hash pool without a hashKey', (c) => (c.pools.chat.algorithm = 'hash'), /^config error: pools\.chat\.hashKey: is required with algorithm: hash/],
    ['a bad hashKey', (c) => Object.assign(c.pools.chat, { algorithm: 'hash', hashKey: 'room' }), /^config error: pools\.chat\.hashKey: must be ip, /],
    ['a balanceFactor of 1', (c) => Object.assign(c.pools.chat, { algorithm: 'hash', hashKey: 'ip', balanceFactor: 1 }), /^config error: pools\.chat\.balanceFactor: must be more than 1/],
    ['a bad backend url', (c) => (c.pools.chat.backends[0].url = 'tcp://nope'), /^config error: pools\.chat\.backends\[0\]\.url: /],
    ['an unknown route key', (c) => ((c.routes[0] as Record<string, unknown>).bogus = 1), /^config error: routes\[0\]\.bogus: unknown key/],
    ['an unknown top-level key', (c) => (c.colour = 'blue'), /^config error: colour: unknown key/],
    ['a route naming a missing pool', (c) => (c.routes[0].pool = 'nope'), /^config error: routes\[0\]\.pool: /],
    ['a bad duration', (c) => (c.drainTimeout = 'soon'), /^config error: drainTimeout: /],
    ['a bad closeSpread', (c) => (c.closeSpread = 'soon'), /^config error: closeSpread: /],
    ['a negative maxUpgradesPerSecond', (c) => Object.assign(c.pools.chat, { maxUpgradesPerSecond: -1 }), /^config error: pools\.chat\.maxUpgradesPerSecond: /],
    ['a bad size', (c) => (c.routes[0].maxPayload = 'huge'), /^config error: routes\[0\]\.maxPayload: /],
    ['a bad algorithm', (c) => (c.pools.chat.algorithm = 'random'), /^config error: pools\.chat\.algorithm: /],
    ['a bad admin state', (c) => (c.pools.chat.backends[1].admin = 'off'), /^config error: pools\.chat\.backends\[1\]\.admin: /],
    ['an empty backend list', (c) => (c.pools.chat.backends = []), /^config error: pools\.chat\.backends: /],
    ['a bad route mode', (c) => (c.routes[0].mode = 'tcp'), /^config error: routes\[0\]\.mode: /],
  ];
  for (const [what, mutate, expected] of bad) {
    void it(`rejects ${what} with exit 1 and one line naming the key`, async () => {
      const r = await runCli(['check', '--config', file(variant(mutate))]);
      assert.equal(r.code, 1, `exit ${r.code}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
      const lines = errorLines(r.stderr);
      assert.equal(lines.length, 1, `expected one stderr line, got: ${JSON.stringify(lines)}`);
      assert.match(lines[0], expected);
    });
  }

  void it('rejects unparseable YAML and a missing file with a config error line', async () => {
    const broken = writeConfig({}, 'broken.yaml');
    cleanups.push(broken.cleanup);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(broken.file, 'pools: [unclosed\n  - : :\n');
    for (const path of [broken.file, '/nonexistent/switchyard.yaml']) {
      const r = await runCli(['check', '--config', path]);
      assert.equal(r.code, 1, `exit ${r.code} for ${path}`);
      const lines = errorLines(r.stderr);
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.match(lines[0], /^config error: /);
    }
  });
});

void describe('switchyard --help', () => {
  void it('lists the commands, and `start --help` lists every flag', async () => {
    const top = await runCli(['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /\bstart\b/);
    assert.match(top.stdout, /\bcheck\b/);
    const start = await runCli(['start', '--help']);
    assert.equal(start.code, 0);
    for (const flag of ['--port', '--host', '--backend', '--algorithm', '--workers', '--config', '--drain-timeout', '--idle-timeout', '--log-level', '--admin-port', '--admin-token-file']) {
      assert.ok(start.stdout.includes(flag), `start --help does not mention ${flag}:\n${start.stdout}`);
    }
  });
});

void describe('switchyard start failures', { timeout: 60_000 }, () => {
  let blocker: Server;
  let blockedPort: number;

  before(async () => {
    blocker = createServer();
    await new Promise<void>((resolve, reject) => {
      blocker.once('error', reject);
      blocker.listen(0, '127.0.0.1', () => resolve());
    });
    blockedPort = (blocker.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
    cleanups.forEach((c) => c());
  });

  void it('exits non-zero with one clear line when the port is in use', async () => {
    const r = await runCli(['start', '--host', '127.0.0.1', '--port', String(blockedPort), '--workers', '2', '--backend', 'ws://127.0.0.1:9'], 15_000);
    assert.notEqual(r.code, 0, `exit ${r.code} ${r.signal}`);
    assert.equal(r.signal, null, 'it exited by itself (not killed after the deadline)');
    const lines = errorLines(r.stderr);
    assert.equal(lines.length, 1, `expected one stderr line, got: ${JSON.stringify(lines)}`);
    assert.match(lines[0], /port/i);
    assert.match(lines[0], /in use/i);
  });

  void it('startBalancer rejects with the stderr line when the port is in use', async () => {
    await assert.rejects(startBalancer({ port: blockedPort, args: ['--backend', 'ws://127.0.0.1:9'] }), /in use/i);
  });

  void it('exits non-zero with a config error line for an invalid config', async () => {
    const r = await runCli(['start', '--config', file(variant((c) => (c.routes[0].pool = 'nope')))]);
    assert.notEqual(r.code, 0);
    const lines = errorLines(r.stderr);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.match(lines[0], /^config error: routes\[0\]\.pool: /);
  });

  void it('exits non-zero when started without any backend', async () => {
    const r = await runCli(['start', '--host', '127.0.0.1', '--port', String(blockedPort)]);
    assert.notEqual(r.code, 0);
    assert.match(errorLines(r.stderr)[0] ?? '', /^config error: /);
  });
});
