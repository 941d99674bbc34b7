// The proxies under test, each started the same way: in the foreground, on a given port, in front of
// the same echo backends, with the same worker count, and with the soft file-descriptor limit raised
// to the hard one. Each start resolves once an upgrade through the proxy succeeds.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { sampleTree, TICKS_PER_SECOND } from './proc-tree';
import { ROOTFS_LEG, type Rootfs } from './rootfs';

/** The anchors and Switchyard, compared in every scenario. */
export const PROXIES = ['direct', 'nginx', 'haproxy', 'switchyard'] as const;
/**
 * Switchyard variants that price a feature against plain `switchyard` in the same run (chat and
 * churn only): no admin listener (metrics off; plain `switchyard` is scraped every second), shared
 * state in Redis, and Redis stopped after the balancer connected to it.
 */
export const VARIANTS = ['switchyard-metrics-off', 'switchyard-redis', 'switchyard-redis-down'] as const;
/**
 * Switchyard on the other runtime, against the same anchors and backends: Node 24 with the current
 * uWebSockets.js build in a Debian 13 root filesystem (bench/rootfs.ts), where plain `switchyard`
 * is this machine's Node and whichever build loads on it.
 */
export const ROOTFS_PROXIES = ['switchyard-trixie'] as const;
/**
 * Measuring instruments, for bench/cpu-breakdown.ts only: `floor` is bench/floor-proxy.ts, the least a
 * proxy on this stack can spend per operation (bench/README.md, "The floor of the stack");
 * `floor-trixie` the same in the root filesystem.
 */
export const PROBES = ['floor', 'floor-trixie'] as const;
export type ProxyName = (typeof PROXIES)[number] | (typeof VARIANTS)[number] | (typeof ROOTFS_PROXIES)[number] | (typeof PROBES)[number];

/** Whether `name` runs in the root filesystem (a name ending in -trixie). */
export function inRootfs(name: string): boolean {
  return name.endsWith(`-${ROOTFS_LEG}`);
}

export interface ProxySetup {
  workers: number;
  backendPorts: number[];
  /** The process-wide descriptor limit the proxy may use. */
  nofile: number;
  dir: string;
  /** Extra Switchyard config merged over the bench's own (for example a redis section). */
  switchyardExtra?: Record<string, unknown>;
  /** redis:// URL of the runner's redis-server, for the Redis variants. */
  redisUrl?: string;
  /** Node flags for Switchyard's processes (the workers inherit them), e.g. --cpu-prof. */
  switchyardNodeArgs?: string[];
  /** Every proxy terminates TLS with this certificate (a --tls run); the backends stay plain. */
  tls?: BenchCertificate;
  /** The backends serve TLS (startBackends with this certificate): every proxy connects to them over TLS, without verifying it. */
  backendTls?: boolean;
  /** The root filesystem the -trixie proxies run in, held by the caller; `dir` must be inside it. */
  rootfs?: Rootfs;
}

export interface BenchCertificate {
  cert: string;
  key: string;
  /** Certificate then key in one file, as HAProxy's `crt` takes them. */
  combined: string;
}

/** A throwaway P-256 certificate for 127.0.0.1, made with Debian's openssl, for every proxy of a --tls run. */
export function makeBenchCertificate(dir: string): BenchCertificate {
  const cert = join(dir, 'bench-cert.pem');
  const key = join(dir, 'bench-key.pem');
  const combined = join(dir, 'bench-combined.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc', '-days', '2', '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  writeFileSync(combined, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  return { cert, key, combined };
}

export interface RunningProxy {
  name: ProxyName;
  /** Where clients connect: host:port, comma-separated when several. */
  target: string;
  /** Root of the process tree to measure; undefined for direct. */
  pid?: number;
  /** Switchyard's admin listener, scraped like Prometheus would while the load runs. */
  metricsUrl?: string;
  stop(): Promise<void>;
}

const ROOT = join(__dirname, '..');

/** Runs a command with the soft descriptor limit raised to the hard one; exec keeps the pid. */
export function spawnWithLimit(command: string, args: string[], logFile: string): ChildProcess {
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$@"', 'sh', command, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: ROOT,
  });
  const log: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => log.push(d));
  child.stderr?.on('data', (d: Buffer) => log.push(d));
  child.on('exit', () => writeFileSync(logFile, Buffer.concat(log)));
  return child;
}

/** The hard descriptor limit: what every proxy and load generator raises its soft limit to. */
export function hardNofile(): number {
  return Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || 1024;
}

export interface ChildRun {
  /** The last line of the child's stdout, parsed as JSON. */
  result: Record<string, unknown>;
  /** User + system CPU seconds the child (and anything it waited for) used. */
  cpuSeconds: number;
}

/** Process groups of the load generators running now (see runJson). */
const loadGroups = new Set<number>();

/**
 * A load generator runs in its own process group, so the terminal's Ctrl-C does not reach it:
 * on SIGINT or SIGTERM the runner kills those groups, then dies of the signal as it would have.
 */
let passingSignals = false;
function passSignalsToLoadGroups(): void {
  if (passingSignals) return;
  passingSignals = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const pgid of loadGroups) killGroup(pgid);
      process.kill(process.pid, signal);
    });
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Runs a load generator to completion, with the descriptor limit raised. A shell waits for it and
 * then prints its own children's CPU time (cutime and cstime of /proc/self/stat) on stderr.
 *
 * It gets its own process group (perl's setpgrp, then exec) but stays in the runner's session. Not
 * `detached: true`: that is setsid(), a new session, and with the kernel's sched_autogroup (on by
 * default) a session is a scheduling group of its own, as heavy as the proxy, its primary and both
 * backends together. On two saturated cores that gave the load generator up to half the machine
 * and cost the heavier proxies far more than the light ones (bench/README.md, "Scheduling").
 * `ownSession` brings that back, only to measure the difference (cpu-breakdown.ts --own-session).
 */
export function runJson(command: string, args: string[], timeoutMs: number, ownSession = false): Promise<ChildRun> {
  const script = 'ulimit -n "$(ulimit -Hn)"; "$@"; code=$?; echo "children-ticks $(cut -d" " -f16,17 /proc/$$/stat)" >&2; exit $code';
  return new Promise((resolve, reject) => {
    passSignalsToLoadGroups();
    const ownGroup = 'setpgrp(0, 0) or die "setpgrp: $!"; exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!"';
    const child = ownSession
      ? spawn('sh', ['-c', script, 'sh', command, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      : spawn('perl', ['-e', ownGroup, 'sh', '-c', script, 'sh', command, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const pgid = child.pid!;
    loadGroups.add(pgid);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // The whole group: the shell and the load generator under it.
    const timer = setTimeout(() => killGroup(pgid), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      loadGroups.delete(pgid);
      const last = out.trim().split('\n').pop() ?? '';
      const ticks = /children-ticks (\d+) (\d+)/.exec(err);
      try {
        resolve({ result: JSON.parse(last) as Record<string, unknown>, cpuSeconds: ticks ? (Number(ticks[1]) + Number(ticks[2])) / TICKS_PER_SECOND : NaN });
      } catch {
        const why = err.replace(/children-ticks.*\n?/, '').trim().split('\n').slice(-3).join(' / ');
        reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${why || last}`));
      }
    });
  });
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** The two echo backends every proxy is measured in front of, on free ports. */
export async function startBackends(dir: string, tls?: BenchCertificate): Promise<{ ports: number[]; cpuSeconds: () => number; stop: () => Promise<void> }> {
  const ports = [await freePort(), await freePort()];
  const certArgs = tls ? [tls.cert, tls.key] : [];
  const children = ports.map((port, i) => spawnWithLimit(process.execPath, ['--import', 'tsx', join(__dirname, 'echo-backend.ts'), String(port), ...certArgs], join(dir, `backend-${i + 1}.log`)));
  try {
    await Promise.all(ports.map((port, i) => waitForUpgrade(port, children[i], 15_000, tls !== undefined)));
  } catch (err) {
    await Promise.all(children.map(stopChild));
    throw err;
  }
  return {
    ports,
    cpuSeconds: () => children.reduce((sum, b) => sum + sampleTree(b.pid!).cpuSeconds, 0),
    stop: async () => void (await Promise.all(children.map(stopChild))),
  };
}

/** Resolves when a WebSocket upgrade to port succeeds; rejects after the deadline. */
export async function waitForUpgrade(port: number, child: ChildProcess | undefined, deadlineMs = 15_000, tls = false): Promise<void> {
  const until = Date.now() + deadlineMs;
  let last = 'no answer';
  while (Date.now() < until) {
    if (child && child.exitCode !== null) throw new Error(`exited with code ${child.exitCode} before it accepted an upgrade`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = (tls ? httpsRequest : request)({
        rejectUnauthorized: false,
        host: '127.0.0.1',
        port,
        path: '/',
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
        timeout: 1000,
      });
      req.on('upgrade', (_res, socket) => {
        socket.destroy();
        resolve(true);
      });
      req.on('response', (res) => {
        last = `HTTP ${res.statusCode}`;
        res.resume();
        resolve(false);
      });
      req.on('error', (err) => {
        last = err.message;
        resolve(false);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no upgrade through port ${port} within ${deadlineMs} ms (${last})`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function fill(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_m, key: string) => {
    if (!(key in values)) throw new Error(`template placeholder {{${key}}} has no value`);
    return String(values[key]);
  });
}

/** The root filesystem `name` runs in; undefined on this machine. */
function rootfsOf(name: ProxyName, setup: ProxySetup): Rootfs | undefined {
  if (!inRootfs(name)) return undefined;
  if (!setup.rootfs) throw new Error(`${name} runs in a root filesystem, and none is held (bench/rootfs.ts)`);
  return setup.rootfs;
}

/** `node args…` with this machine's Node, or the root filesystem's for a -trixie name. */
function node(name: ProxyName, setup: ProxySetup, args: string[]): [string, string[]] {
  return rootfsOf(name, setup)?.command('node', args) ?? [process.execPath, args];
}

async function startChild(name: ProxyName, port: number, [command, args]: [string, string[]], setup: ProxySetup): Promise<RunningProxy> {
  const child = spawnWithLimit(command, args, join(setup.dir, `${name}.log`));
  try {
    await waitForUpgrade(port, child, 15_000, setup.tls !== undefined);
  } catch (err) {
    await stopChild(child);
    const log = join(setup.dir, `${name}.log`);
    const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' / ') : '';
    throw new Error(`${name} did not start: ${(err as Error).message}${tail ? `: ${tail}` : ''}`);
  }
  return { name, target: `127.0.0.1:${port}`, pid: child.pid, stop: () => stopChild(child) };
}

export async function startProxy(name: ProxyName, port: number, setup: ProxySetup): Promise<RunningProxy> {
  const backends = setup.backendPorts.map((p) => `127.0.0.1:${p}`);
  switch (name) {
    case 'direct':
      return { name, target: backends.join(','), stop: () => Promise.resolve() };
    case 'nginx': {
      const dir = join(setup.dir, 'nginx');
      mkdirSync(dir, { recursive: true });
      const conf = fill(readFileSync(join(__dirname, 'anchors/nginx.conf'), 'utf8'), {
        workers: setup.workers,
        nofile: setup.nofile,
        dir,
        port,
        servers: backends.map((b) => `        server ${b};`).join('\n'),
        // proxy_ssl_verify is off by default, as Switchyard's verify: false below; sessions are reused (proxy_ssl_session_reuse on).
        upstream: setup.backendTls ? 'https' : 'http',
        ssl: setup.tls ? ' ssl' : '',
        // NGINX 1.22's default protocols stop at TLS 1.2 (1.23.4 added 1.3); an operator sets them.
        certificate: setup.tls ? `            ssl_certificate ${setup.tls.cert};\n            ssl_certificate_key ${setup.tls.key};\n            ssl_protocols TLSv1.2 TLSv1.3;` : '',
      });
      writeFileSync(join(dir, 'nginx.conf'), conf);
      return startChild(name, port, ['nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')]], setup);
    }
    case 'haproxy': {
      const dir = join(setup.dir, 'haproxy');
      mkdirSync(dir, { recursive: true });
      const conf = fill(readFileSync(join(__dirname, 'anchors/haproxy.cfg'), 'utf8'), {
        workers: setup.workers,
        maxconn: Math.floor(setup.nofile / 2) - 100,
        dir,
        port,
        servers: backends.map((b, i) => `    server echo${i + 1} ${b}${setup.backendTls ? ' ssl verify none' : ''}`).join('\n'),
        ssl: setup.tls ? ` ssl crt ${setup.tls.combined}` : '',
        scheme: setup.tls ? 'https' : 'http',
      });
      writeFileSync(join(dir, 'haproxy.cfg'), conf);
      return startChild(name, port, ['haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]], setup);
    }
    case 'floor':
    case 'floor-trixie': {
      if (setup.workers !== 1 || setup.tls) throw new Error('floor runs as one process, without TLS');
      // The checkout is at the same path in the root filesystem.
      const args = ['--max-semi-space-size=4', '--import', 'tsx', join(__dirname, 'floor-proxy.ts'), String(port), ...setup.backendPorts.map(String)];
      return startChild(name, port, node(name, setup, args), setup);
    }
    case 'switchyard':
    case 'switchyard-trixie':
    case 'switchyard-metrics-off':
    case 'switchyard-redis':
    case 'switchyard-redis-down': {
      const withRedis = name === 'switchyard-redis' || name === 'switchyard-redis-down';
      const withMetrics = name !== 'switchyard-metrics-off';
      let adminPort = 0;
      while (withMetrics && (adminPort === 0 || adminPort === port)) adminPort = await freePort();
      if (withRedis && !setup.redisUrl) throw new Error(`${name} needs the runner's redis-server`);
      // Paths as Switchyard sees them: setup.dir is inside the root filesystem for a -trixie name.
      const rootfs = rootfsOf(name, setup);
      const seen = (path: string): string => rootfs?.inside(path) ?? path;
      const config = {
        listen: { host: '127.0.0.1', port, ...(setup.tls ? { tls: { cert: seen(setup.tls.cert), key: seen(setup.tls.key) } } : {}) },
        workers: setup.workers,
        logLevel: 'warn',
        pools: {
          chat: {
            algorithm: 'least-connections',
            backends: backends.map((b) => ({ url: `${setup.backendTls ? 'wss' : 'ws'}://${b}` })),
            ...(setup.backendTls ? { tls: { verify: false } } : {}),
          },
        },
        routes: [{ path: '/', pool: 'chat' }],
        // The whole load comes from one address, which the default per-client limits would refuse
        // (NGINX and HAProxy limit nothing here): limits no run reaches, so their cost is still measured.
        clientLimits: { maxTunnels: 1_000_000, upgradesPerSecond: 100_000, upgradeBurst: 1_000_000 },
        admin: withMetrics ? { host: '127.0.0.1', port: adminPort } : { enabled: false },
        ...setup.switchyardExtra,
        ...(withRedis ? { redis: { url: setup.redisUrl, clusterName: `bench-${port}` } } : {}),
      };
      const file = join(setup.dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(config, null, 2));
      const running = await startChild(name, port, node(name, setup, [...(setup.switchyardNodeArgs ?? []), join(ROOT, 'dist/cli.js'), 'start', '--config', seen(file)]), setup);
      return withMetrics ? { ...running, metricsUrl: `http://127.0.0.1:${adminPort}/metrics` } : running;
    }
  }
}
