// What listen.proxyProtocol costs: Switchyard with and without it (with it, a TCP front in each worker
// reads the header and relays every byte to uWS on an internal port), beside NGINX with and without
// `listen ... proxy_protocol`, in one run on the same echo backends. Every connection of a
// "+pp" target opens with a PROXY v2 header (ws-load --proxy-header), carrying its source address.
// switchyard+pp-v2 (proxyProtocol: v2) has no front where uWS reads the header itself: a plain
// listener on the current uWebSockets.js build (run it there: scripts/run-leg trixie -- node --import tsx bench/proxy-protocol.ts).
// Measured: the proxy process tree's CPU per upgrade cycle (churn: connect, upgrade, one echo,
// close) and per chat message (echo: connections with one 64-byte message in flight each).
// Usage: node --import tsx bench/proxy-protocol.ts [--rounds 3] [--seconds 5] [--tls] [--quick]
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { accepts } from '../test/helpers/ports';
import { freePort, hardNofile, makeBenchCertificate, runJson, spawnWithLimit, startBackends, startProxy, stopChild, type ProxySetup, type RunningProxy } from './proxies';

const opts = new Command()
  .option('--rounds <n>', 'rounds, the targets in a rotated order each', Number, 3)
  .option('--seconds <n>', 'measured seconds per target, scenario and round', Number, 5)
  .option('--connections <n>', 'chat connections', Number, 200)
  .option('--tls', 'every target terminates TLS (the header comes before the handshake)')
  .option('--quick', 'one round of 2 s: a harness check, its numbers not for reporting')
  .parse()
  .opts<{ rounds: number; seconds: number; connections: number; tls?: boolean; quick?: boolean }>();
if (opts.quick) {
  opts.rounds = 1;
  opts.seconds = 2;
}

/** switchyard+pp: proxyProtocol true (the front); switchyard+pp-v2: proxyProtocol v2 (uWS itself, on the current build). */
const TARGETS = ['switchyard', 'switchyard+pp', 'switchyard+pp-v2', 'nginx', 'nginx+pp'] as const;
type Target = (typeof TARGETS)[number];
/** ws-load's source addresses (127.0.0.2-9): the proxies the balancer trusts to send the header. */
const SOURCES = 8;
const TRUSTED = ['127.0.0.2/31', '127.0.0.4/30', '127.0.0.8/31'];

/** NGINX from the bench's anchor config, with `proxy_protocol` on its listen line and X-Real-IP from the header. */
async function startNginxProxyProtocol(port: number, setup: ProxySetup): Promise<RunningProxy> {
  const dir = join(setup.dir, 'nginx-pp');
  mkdirSync(dir, { recursive: true });
  const values: Record<string, string | number> = {
    workers: setup.workers,
    nofile: setup.nofile,
    dir,
    port,
    servers: setup.backendPorts.map((p) => `        server 127.0.0.1:${p};`).join('\n'),
    upstream: 'http',
    ssl: `${setup.tls ? ' ssl' : ''} proxy_protocol`,
    certificate: setup.tls ? `            ssl_certificate ${setup.tls.cert};\n            ssl_certificate_key ${setup.tls.key};\n            ssl_protocols TLSv1.2 TLSv1.3;` : '',
  };
  const conf = readFileSync(join(__dirname, 'anchors/nginx.conf'), 'utf8')
    .replace(/\{\{(\w+)\}\}/g, (_m, key: string) => String(values[key]))
    .replace('X-Real-IP $remote_addr', 'X-Real-IP $proxy_protocol_addr')
    .replace('X-Forwarded-For $proxy_add_x_forwarded_for', 'X-Forwarded-For $proxy_protocol_addr');
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const child = spawnWithLimit('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], join(setup.dir, 'nginx-pp.log'));
  const until = Date.now() + 15_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > until) throw new Error('nginx with proxy_protocol did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { name: 'nginx', target: `127.0.0.1:${port}`, pid: child.pid, stop: () => stopChild(child) };
}

async function start(target: Target, setup: ProxySetup): Promise<RunningProxy> {
  const port = await freePort();
  if (target === 'nginx') return startProxy('nginx', port, setup);
  if (target === 'nginx+pp') return startNginxProxyProtocol(port, setup);
  const tls = setup.tls ? { tls: { cert: setup.tls.cert, key: setup.tls.key } } : {};
  const mode = target === 'switchyard+pp' ? true : target === 'switchyard+pp-v2' ? 'v2' : false;
  const extra = mode !== false ? { listen: { host: '127.0.0.1', port, proxyProtocol: mode, ...tls }, trustedProxies: TRUSTED } : {};
  return startProxy('switchyard', port, { ...setup, switchyardExtra: { admin: { enabled: false }, ...extra } });
}

interface Sample {
  cpuMicrosPerUpgrade: number;
  upgradesPerSecond: number;
  cpuMicrosPerMessage: number;
  messagesPerSecond: number;
  errors: number;
}

async function measure(target: Target, running: RunningProxy): Promise<Sample> {
  const common = ['--import', 'tsx', join(__dirname, 'ws-load.ts'), '--target', running.target, '--sources', String(SOURCES), '--watch-pid', String(running.pid), '--warmup', '1', '--duration', String(opts.seconds)];
  if (target.includes('+pp')) common.push('--proxy-header', 'v2');
  if (opts.tls) common.push('--tls');
  const churn = (await runJson(process.execPath, [...common, '--mode', 'churn', '--concurrency', '20'], 120_000)).result;
  const chat = (await runJson(process.execPath, [...common, '--mode', 'echo', '--connections', String(opts.connections), '--window', '1', '--size', '64'], 120_000)).result;
  const errors = (r: Record<string, unknown>): number => Number(r.errors ?? 0) + Number(r.connectErrors ?? 0) + Number(r.unexpectedCloses ?? 0);
  return {
    cpuMicrosPerUpgrade: churn.proxyCpuMicrosPerUpgrade as number,
    upgradesPerSecond: churn.upgradesPerSecond as number,
    cpuMicrosPerMessage: chat.proxyCpuMicrosPerMessage as number,
    messagesPerSecond: chat.messagesPerSecond as number,
    errors: errors(churn) + errors(chat),
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-pp-'));
  const backends = await startBackends(dir);
  const setup: ProxySetup = { workers: 1, backendPorts: backends.ports, nofile: hardNofile(), dir, tls: opts.tls ? makeBenchCertificate(dir) : undefined };
  const samples = new Map<Target, Sample[]>(TARGETS.map((t) => [t, []]));
  try {
    for (let round = 0; round < opts.rounds; round++) {
      const order = TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length]);
      for (const target of order) {
        const running = await start(target, setup);
        try {
          const s = await measure(target, running);
          samples.get(target)!.push(s);
          process.stderr.write(`round ${round + 1} ${target}: ${JSON.stringify(s)}\n`);
        } finally {
          await running.stop();
        }
      }
    }
  } finally {
    await backends.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const rows = TARGETS.map((t) => {
    const s = samples.get(t)!;
    return {
      target: t,
      cpuMicrosPerUpgrade: median(s.map((x) => x.cpuMicrosPerUpgrade)),
      upgradesPerSecond: Math.round(median(s.map((x) => x.upgradesPerSecond))),
      cpuMicrosPerMessage: median(s.map((x) => x.cpuMicrosPerMessage)),
      messagesPerSecond: Math.round(median(s.map((x) => x.messagesPerSecond))),
      errors: s.reduce((n, x) => n + x.errors, 0),
    };
  });
  process.stdout.write(JSON.stringify({ tls: opts.tls === true, rounds: opts.rounds, seconds: opts.seconds, connections: opts.connections, rows }, null, 2) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`proxy-protocol bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
