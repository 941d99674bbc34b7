// Config validation: defaults, flags over file, and one line naming the key for every bad input.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkReloadable, ConfigError, loadConfig } from '../../src/config/load';
import { parseDuration, parseSize } from '../../src/config/units';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
let n = 0;
function file(text: string, ext = 'yaml'): string {
  const path = join(dir, `c${n++}.${ext}`);
  writeFileSync(path, text);
  return path;
}
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'error must be one line');
    return err.message;
  }
  assert.fail('expected a config error');
}

/** Runs `fn` with SWITCHYARD_ADMIN_TOKEN set to `value` (or unset). */
function withTokenEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.SWITCHYARD_ADMIN_TOKEN;
  if (value === undefined) delete process.env.SWITCHYARD_ADMIN_TOKEN;
  else process.env.SWITCHYARD_ADMIN_TOKEN = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.SWITCHYARD_ADMIN_TOKEN;
    else process.env.SWITCHYARD_ADMIN_TOKEN = saved;
  }
}

const GOOD = `
listen: { port: 9000 }
workers: 2
pools:
  chat:
    algorithm: ip-hash
    backends:
      - url: ws://127.0.0.1:9001
      - { url: ws://127.0.0.1:9002, weight: 2, admin: drain }
routes:
  - { path: /chat, pool: chat, idleTimeout: 30s, maxPayload: 1MiB }
`;

describe('config', () => {
  it('fills defaults and parses durations and sizes', () => {
    const c = loadConfig({ config: file(GOOD) });
    assert.equal(c.listen.host, '0.0.0.0');
    assert.equal(c.listen.port, 9000);
    assert.equal(c.workerCount, 2);
    assert.equal(c.drainTimeout, 10_000);
    assert.equal(c.pools.chat.connectTimeout, 5000);
    assert.equal(c.pools.chat.retries, 2);
    assert.equal(c.pools.chat.backends[1].weight, 2);
    assert.equal(c.routes[0].idleTimeout, 30_000);
    assert.equal(c.routes[0].maxPayload, 1024 * 1024);
    assert.equal(c.routes[0].mode, 'both');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.pools.chat.backends[0]));
  });

  it('reads JSON files too', () => {
    const c = loadConfig({ config: file(JSON.stringify({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }] } }, routes: [{ pool: 'p' }] }), 'json') });
    assert.equal(c.routes[0].path, '/');
  });

  it('lets flags override the file', () => {
    const c = loadConfig({ config: file(GOOD), port: 7000, algorithm: 'round-robin', workers: '3', idleTimeout: '8s' });
    assert.equal(c.listen.port, 7000);
    assert.equal(c.pools.chat.algorithm, 'round-robin');
    assert.equal(c.workerCount, 3);
    assert.equal(c.routes[0].idleTimeout, 8000);
  });

  it('builds a default pool and catch-all route from --backend', () => {
    const c = loadConfig({ backend: ['ws://127.0.0.1:9001', 'ws://127.0.0.1:9002'] });
    assert.deepEqual(Object.keys(c.pools), ['default']);
    assert.equal(c.pools.default.backends.length, 2);
    assert.equal(c.routes[0].path, '/');
  });

  it('names the key and the problem in one line', () => {
    const cases: [string, RegExp][] = [
      [GOOD.replace('ws://127.0.0.1:9001', 'ftp://x'), /^config error: pools\.chat\.backends\[0\]\.url: must be ws:\/\/host:port/],
      [GOOD.replace('ip-hash', 'fastest'), /^config error: pools\.chat\.algorithm: /],
      [GOOD.replace('idleTimeout: 30s', 'idleTimeout: soon'), /^config error: routes\[0\]\.idleTimeout: must be a duration/],
      [GOOD.replace('maxPayload: 1MiB', 'maxPayload: lots'), /^config error: routes\[0\]\.maxPayload: must be a size/],
      [GOOD.replace('pool: chat,', 'pool: chatt,'), /^config error: routes\[0\]\.pool: names pool "chatt", which is not defined/],
      [GOOD.replace('workers: 2', 'workers: 2\nbogus: 1'), /^config error: bogus: unknown key/],
      [GOOD.replace('weight: 2', 'weight: 2, colour: red'), /^config error: pools\.chat\.backends\[1\]\.colour: unknown key/],
      [GOOD.replace('listen: { port: 9000 }', 'listen: { port: 70000 }'), /^config error: listen\.port: /],
      [GOOD.replace(/routes:[\s\S]*/, 'routes: []'), /^config error: routes: needs at least one route/],
      ['pools: [1, 2', /^config error: .* is not valid YAML\/JSON/],
      ['- just\n- a list', /^config error: .*: the top level must be a mapping/],
    ];
    for (const [text, expected] of cases) assert.match(errorOf(() => loadConfig({ config: file(text) })), expected);
  });

  it('limits are on by default and sized for chat; a maxPayload past 64 MiB or past messageAssemblyLimit is refused', () => {
    const c = loadConfig({ backend: ['ws://127.0.0.1:9001'] });
    assert.equal(c.routes[0].maxPayload, 1024 * 1024, 'maxPayload defaults to 1 MiB');
    assert.equal(c.messageAssemblyLimit, 64 * 1024 * 1024);
    assert.equal(c.workerConnections, 'auto');
    assert.equal(c.pools.default.maxConnectsInFlight, 128);
    assert.equal(loadConfig({ config: file(GOOD.replace('maxPayload: 1MiB', 'maxPayload: 64MiB')) }).routes[0].maxPayload, 64 * 1024 * 1024);
    const cases: [string, RegExp][] = [
      [GOOD.replace('maxPayload: 1MiB', 'maxPayload: 1GiB'), /^config error: routes\[0\]\.maxPayload: must be at most 64MiB/],
      [GOOD.replace('maxPayload: 1MiB', 'maxPayload: 8MiB').replace('workers: 2', 'workers: 2\nmessageAssemblyLimit: 4MiB'), /^config error: routes\[0\]\.maxPayload: exceeds messageAssemblyLimit/],
      [GOOD.replace('workers: 2', 'workers: 2\nworkerConnections: 0'), /^config error: workerConnections: /],
      [GOOD.replace('algorithm: ip-hash', 'algorithm: ip-hash\n    maxConnectsInFlight: 0'), /^config error: pools\.chat\.maxConnectsInFlight: /],
    ];
    for (const [text, expected] of cases) assert.match(errorOf(() => loadConfig({ config: file(text) })), expected);
  });

  it('reports a missing file and a missing backend list clearly', () => {
    assert.match(errorOf(() => loadConfig({ config: join(dir, 'nope.yaml') })), /^config error: cannot read .*nope\.yaml/);
    assert.match(errorOf(() => loadConfig({})), /^config error: pools: no backends; give --backend/);
  });

  it('admin listener: on by default at 127.0.0.1:8405 (no Prometheus port); flags and file set it; bad keys named', () => {
    const c = withTokenEnv(undefined, () => loadConfig({ config: file(GOOD) }));
    assert.deepEqual(c.admin, { enabled: true, host: '127.0.0.1', port: 8405, allowedHosts: [] });
    assert.equal(c.adminToken, undefined, 'no token unless one is given');
    assert.equal(c.maxRetiringGenerations, 2);
    const f = loadConfig({ config: file(`${GOOD}\nadmin: { port: 9191, enabled: true }`), adminHost: '10.0.0.5', adminPort: 0 });
    assert.deepEqual(f.admin, { enabled: true, host: '10.0.0.5', port: 0, allowedHosts: [] });
    assert.equal(loadConfig({ config: file(GOOD), admin: false }).admin.enabled, false);
    assert.equal(loadConfig({ config: file(`${GOOD}\nadmin: { enabled: false }`), admin: true }).admin.enabled, false, 'commander\'s default true does not override the file');
    assert.match(errorOf(() => loadConfig({ config: file(`${GOOD}\nadmin: { port: 9000 }`) })), /^config error: admin\.port: must differ from listen\.port/);
    assert.match(errorOf(() => loadConfig({ config: file(`${GOOD}\nadmin: { path: /x }`) })), /^config error: admin\.path: unknown key/);
    assert.match(errorOf(() => loadConfig({ config: file(`${GOOD}\nadmin: { port: -1 }`) })), /^config error: admin\.port: /);
  });

  it('admin token: admin.token, else admin.tokenFile (relative to the config, one line), else SWITCHYARD_ADMIN_TOKEN; --admin-token-file overrides; bad ones named', () => {
    const token = 'a'.repeat(20);
    const sub = mkdtempSync(join(dir, 'token-'));
    writeFileSync(join(sub, 'admin-token'), `${'f'.repeat(32)}\n`);
    const inSub = (text: string): string => {
      const path = join(sub, `c${n++}.yaml`);
      writeFileSync(path, text);
      return path;
    };
    withTokenEnv('e'.repeat(24), () => {
      assert.deepEqual(loadConfig({ config: file(`${GOOD}admin: { token: ${token} }\n`) }).adminToken, { value: token, from: 'admin.token' });
      assert.deepEqual(loadConfig({ config: inSub(`${GOOD}admin: { tokenFile: admin-token }\n`) }).adminToken, { value: 'f'.repeat(32), from: 'admin.tokenFile' });
      assert.deepEqual(loadConfig({ config: file(GOOD) }).adminToken, { value: 'e'.repeat(24), from: 'SWITCHYARD_ADMIN_TOKEN' });
      const flagged = loadConfig({ config: file(`${GOOD}admin: { token: ${token} }\n`), adminTokenFile: join(sub, 'admin-token') });
      assert.deepEqual(flagged.adminToken, { value: 'f'.repeat(32), from: 'admin.tokenFile' });
    });
    withTokenEnv('short', () => assert.equal(errorOf(() => loadConfig({ config: file(GOOD) })), 'config error: SWITCHYARD_ADMIN_TOKEN: must be at least 16 characters (e.g. openssl rand -hex 32)'));
    withTokenEnv(undefined, () => {
      const cases: [string, RegExp][] = [
        [`${GOOD}admin: { token: tooshort }\n`, /^config error: admin\.token: must be at least 16 characters/],
        [`${GOOD}admin: { token: "has a space in it, long enough" }\n`, /^config error: admin\.token: must be printable ASCII without spaces/],
        [`${GOOD}admin: { token: ${token}, tokenFile: /x }\n`, /^config error: admin\.tokenFile: give admin\.token or admin\.tokenFile, not both/],
        [`${GOOD}admin: { tokenFile: ${join(sub, 'missing')} }\n`, /^config error: admin\.tokenFile: cannot read .*missing: ENOENT/],
        [`${GOOD}admin: { allowedHosts: ["lb1:8405"] }\n`, /^config error: admin\.allowedHosts\[0\]: must be a host name or an IP address, without a port/],
        [`${GOOD}maxRetiringGenerations: -1\n`, /^config error: maxRetiringGenerations: /],
      ];
      for (const [text, expected] of cases) assert.match(errorOf(() => loadConfig({ config: file(text) })), expected);
      writeFileSync(join(sub, 'two-lines'), `${'f'.repeat(32)}\nmore\n`);
      assert.match(errorOf(() => loadConfig({ config: inSub(`${GOOD}admin: { tokenFile: two-lines }\n`) })), /^config error: admin\.tokenFile \(.*two-lines\): must be printable ASCII without spaces/);
    });
  });

  it('a reload may change the admin token and allowed hosts, not where the admin listener is', () => {
    const load = (admin: string): ReturnType<typeof loadConfig> => loadConfig({ config: file(`${GOOD}admin: ${admin}\n`) });
    const running = load(`{ token: ${'a'.repeat(16)} }`);
    checkReloadable(running, load(`{ token: ${'b'.repeat(16)}, allowedHosts: [lb1] }`));
    checkReloadable(running, load('{}'));
    assert.equal(errorOf(() => checkReloadable(running, load('{ port: 9999 }'))), 'config error: admin: cannot change on reload; restart switchyard to change it');
    assert.equal(errorOf(() => checkReloadable(running, load('{ socket: /tmp/x.sock }'))), 'config error: admin: cannot change on reload; restart switchyard to change it');
  });

  it('listen.proxyProtocol needs trustedProxies, and a reload cannot turn it on or off', () => {
    assert.equal(
      errorOf(() => loadConfig({ config: file(GOOD.replace('{ port: 9000 }', '{ port: 9000, proxyProtocol: true }')) })),
      'config error: listen.proxyProtocol: needs trustedProxies: the addresses of the load balancers that send the PROXY header',
    );
    const on = loadConfig({ config: file(`${GOOD.replace('{ port: 9000 }', '{ port: 9000, proxyProtocol: true }')}trustedProxies: [10.0.0.0/8]\n`) });
    assert.equal(on.listen.proxyProtocol, true);
    checkReloadable(on, loadConfig({ config: file(`${GOOD.replace('{ port: 9000 }', '{ port: 9000, proxyProtocol: true }')}trustedProxies: [10.0.0.0/8, 192.0.2.1]\n`) }));
    assert.equal(errorOf(() => checkReloadable(on, loadConfig({ config: file(GOOD) }))), 'config error: listen.proxyProtocol: cannot change on reload; restart switchyard to change it');
  });

  it('rejects routes on one path with different client-side settings', () => {
    const text = `pools: { p: { backends: [{ url: "ws://127.0.0.1:1" }] } }
routes:
  - { host: a.test, path: /chat, pool: p, idleTimeout: 30s }
  - { host: b.test, path: /chat, pool: p, idleTimeout: 60s }`;
    assert.match(errorOf(() => loadConfig({ config: file(text) })), /^config error: routes\[1\]\.idleTimeout: differs from routes\[0\]/);
  });

  it('rejects routes for one host whose paths differ only by a trailing slash, or not at all', () => {
    const routes = (...lines: string[]): string => `pools: { p: { backends: [{ url: "ws://127.0.0.1:1" }] } }\nroutes:\n${lines.map((l) => `  - ${l}`).join('\n')}`;
    const load = (text: string): unknown => loadConfig({ config: file(text) });
    assert.equal(
      errorOf(() => load(routes('{ path: /chat, pool: p }', '{ path: /chat/, pool: p }'))),
      'config error: routes[1].path: "/chat/" differs from routes[0]\'s "/chat" only by a trailing slash, for the same host: both match the same requests, so this route would never be used',
    );
    assert.match(errorOf(() => load(routes('{ host: Chat.test, path: /a//, pool: p }', '{ host: chat.test., path: /a, pool: p }'))), /^config error: routes\[1\]\.path: "\/a" differs from routes\[0\]'s "\/a\/\/" only by a trailing slash/);
    assert.match(errorOf(() => load(routes('{ path: /chat, pool: p }', '{ host: "*", path: /chat, pool: p }'))), /^config error: routes\[1\]\.path: "\/chat" the same host and path as routes\[0\]/);
    // Other hosts, or paths that are really different, are fine.
    assert.equal(load(routes('{ host: a.test, path: /chat, pool: p }', '{ host: b.test, path: /chat/, pool: p }', '{ path: /chat, pool: p }', '{ path: /chatroom, pool: p }', '{ path: /, pool: p }')) !== undefined, true);
  });
});

describe('health and shared-state config', () => {
  it('has active checks off, outlier detection on and no Redis by default', () => {
    const c = loadConfig({ config: file(GOOD) });
    assert.equal(c.pools.chat.healthCheck, undefined);
    assert.deepEqual(c.pools.chat.outlierDetection, {
      enabled: true,
      consecutiveFailures: 5,
      window: 30_000,
      baseEjectionTime: 30_000,
      maxEjectionTime: 300_000,
      maxEjectionPercent: 50,
    });
    assert.equal(c.pools.chat.herdingGuard, 'p2c');
    assert.equal(c.redis, undefined);
  });

  it('has per-client limits on by default, sized for chat, per machine', () => {
    const c = loadConfig({ config: file(GOOD) });
    assert.deepEqual(c.clientLimits, { maxTunnels: 1024, upgradesPerSecond: 20, upgradeBurst: 100, scope: 'machine' });
    const fleet = loadConfig({ config: file(GOOD + 'redis: { url: "redis://127.0.0.1:1" }\nclientLimits: { scope: fleet, maxTunnels: 0 }\n') });
    assert.equal(fleet.clientLimits.scope, 'fleet');
    assert.equal(fleet.clientLimits.maxTunnels, 0);
  });

  it('fills health-check and Redis defaults', () => {
    const text = GOOD.replace('algorithm: ip-hash', 'algorithm: ip-hash\n    healthCheck: { type: http, expectStatus: 204 }') + 'redis: { url: "redis://10.0.0.5:6379" }\n';
    const c = loadConfig({ config: file(text) });
    assert.deepEqual(c.pools.chat.healthCheck, { type: 'http', path: '/', expectStatus: '204', interval: 5000, timeout: 2000, rise: 2, fall: 3 });
    assert.deepEqual(c.redis, { url: 'redis://10.0.0.5:6379', clusterName: 'default', cluster: false, leaseTtl: 5000, syncInterval: 100, countTtl: 3000, reconcileInterval: 60_000, options: {} });
  });

  it('takes REDIS_URL when the file names no Redis URL, and the file when it does', () => {
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = 'redis://env:6379';
    try {
      assert.equal(loadConfig({ config: file(GOOD) }).redis?.url, 'redis://env:6379');
      const named = loadConfig({ config: file(GOOD + 'redis: { clusterName: eu }\n') }).redis;
      assert.deepEqual([named?.url, named?.clusterName], ['redis://env:6379', 'eu']);
      assert.equal(loadConfig({ config: file(GOOD + 'redis: { url: "redis://file:6379" }\n') }).redis?.url, 'redis://file:6379');
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  it('names the key of a bad health, outlier, Redis or admin setting', () => {
    const hc = (v: string): string => GOOD.replace('algorithm: ip-hash', `algorithm: ip-hash\n    ${v}`);
    const cases: [string, RegExp][] = [
      [hc('healthCheck: { type: udp }'), /^config error: pools\.chat\.healthCheck\.type: /],
      [hc('healthCheck: { expectStatus: 2xx }'), /^config error: pools\.chat\.healthCheck\.expectStatus: must be a status such as 200/],
      [hc('healthCheck: { interval: 10ms }'), /^config error: pools\.chat\.healthCheck\.interval: must be at least 50ms/],
      [hc('healthCheck: { rise: 0 }'), /^config error: pools\.chat\.healthCheck\.rise: /],
      [hc('outlierDetection: { maxEjectionPercent: 150 }'), /^config error: pools\.chat\.outlierDetection\.maxEjectionPercent: /],
      [hc('outlierDetection: { consecutive: 3 }'), /^config error: pools\.chat\.outlierDetection\.consecutive: unknown key/],
      [GOOD + 'redis: { url: "http://x" }\n', /^config error: redis\.url: must be a redis:\/\/ or rediss:\/\/ URL/],
      [GOOD + 'redis: { url: "redis://x", clusterName: "a b" }\n', /^config error: redis\.clusterName: /],
      [GOOD + 'admin: { host: 127.0.0.1, port: 99999 }\n', /^config error: admin\.port: /],
      [GOOD + 'clientLimits: { scope: fleet }\n', /^config error: clientLimits\.scope: fleet needs redis/],
      [GOOD + 'clientLimits: { maxTunnels: -1 }\n', /^config error: clientLimits\.maxTunnels: /],
      [GOOD + 'clientLimits: { upgradeBurst: 0 }\n', /^config error: clientLimits\.upgradeBurst: /],
      [GOOD + 'clientLimits: { perIp: 3 }\n', /^config error: clientLimits\.perIp: unknown key/],
    ];
    for (const [text, expected] of cases) assert.match(errorOf(() => loadConfig({ config: file(text) })), expected);
  });
});

describe('balancing keys', () => {
  const pool = (keys: string): string => GOOD.replace('algorithm: ip-hash', keys);

  it('hash with a hashKey, balanceFactor and slowStart; defaults: no bound, no slow start; ip-hash keeps its name', () => {
    const c = loadConfig({ config: file(pool('algorithm: hash\n    hashKey: path:2\n    balanceFactor: 1.25\n    slowStart: 30s')) });
    assert.deepEqual([c.pools.chat.algorithm, c.pools.chat.hashKey, c.pools.chat.balanceFactor, c.pools.chat.slowStart], ['hash', 'path:2', 1.25, 30_000]);
    const d = loadConfig({ config: file(GOOD) });
    assert.deepEqual([d.pools.chat.algorithm, d.pools.chat.hashKey, d.pools.chat.balanceFactor, d.pools.chat.slowStart], ['ip-hash', undefined, 0, 0]);
    assert.equal(loadConfig({ config: file(pool('algorithm: ip-hash\n    balanceFactor: 1.5')) }).pools.chat.balanceFactor, 1.5);
    assert.equal(loadConfig({ config: file(pool('algorithm: round-robin\n    slowStart: 10s')) }).pools.chat.slowStart, 10_000);
  });

  it('names the key of a bad hashKey, balanceFactor or slowStart, and of one that does not fit the algorithm', () => {
    const cases: [string, RegExp][] = [
      [pool('algorithm: hash'), /^config error: pools\.chat\.hashKey: is required with algorithm: hash \(ip, ip\/24/],
      [pool('algorithm: hash\n    hashKey: room'), /^config error: pools\.chat\.hashKey: must be ip, ip\/24, ip\/24,64, header:NAME, cookie:NAME, query:NAME or path:N$/],
      [pool('algorithm: hash\n    hashKey: ip/33'), /^config error: pools\.chat\.hashKey: ip takes an IPv4 prefix length 1-32/],
      [pool('algorithm: hash\n    hashKey: path:0'), /^config error: pools\.chat\.hashKey: path: needs a segment number/],
      [pool('algorithm: hash\n    hashKey: "header:"'), /^config error: pools\.chat\.hashKey: header: needs a header name/],
      [pool('algorithm: round-robin\n    hashKey: path:2'), /^config error: pools\.chat\.hashKey: only with algorithm: hash \(this pool's algorithm is round-robin\)/],
      [pool('algorithm: ip-hash\n    hashKey: path:2'), /^config error: pools\.chat\.hashKey: ip-hash always hashes on the client IP/],
      [pool('algorithm: hash\n    hashKey: ip\n    balanceFactor: 1'), /^config error: pools\.chat\.balanceFactor: must be more than 1/],
      [pool('algorithm: hash\n    hashKey: ip\n    balanceFactor: 0.5'), /^config error: pools\.chat\.balanceFactor: must be more than 1/],
      [pool('algorithm: least-connections\n    balanceFactor: 1.25'), /^config error: pools\.chat\.balanceFactor: only with algorithm: hash or ip-hash/],
      [pool('algorithm: hash\n    hashKey: ip\n    slowStart: soon'), /^config error: pools\.chat\.slowStart: must be a duration/],
    ];
    for (const [text, expected] of cases) assert.match(errorOf(() => loadConfig({ config: file(text) })), expected);
  });
});

describe('units', () => {
  it('parses durations', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration(250), 250);
    assert.equal(parseDuration('soon'), undefined);
    assert.equal(parseDuration(-1), undefined);
  });
  it('parses sizes', () => {
    assert.equal(parseSize('16MiB'), 16 * 1024 * 1024);
    assert.equal(parseSize('64k'), 65536);
    assert.equal(parseSize('1MB'), 1_000_000);
    assert.equal(parseSize(1024), 1024);
    assert.equal(parseSize('big'), undefined);
  });
});
