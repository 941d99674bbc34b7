// Where the machine's CPU goes per request (http), per upgrade cycle (churn) or per chat message
// (chat), proxy by proxy: the proxy's processes (user and system time apart), the two echo backends,
// and the load generator. Chat gives the proxy's figures only, over ws-load's measured window (opening
// 1,000 connections is not a message's cost).
// On this 2-core machine all of them share the cores, so requests/s and upgrades/s follow the sum,
// not the proxy's share alone; this is what tells a proxy's own cost from what it makes others pay.
// Usage: node --import tsx bench/cpu-breakdown.ts --scenario http --proxies nginx,switchyard --rounds 3
// `--proxies` also takes `floor` (bench/floor-proxy.ts): the least this stack can spend; and
// `switchyard-trixie`, `floor-trixie`: the same on Node 24 with the current uWebSockets.js build, in a
// Debian 13 root filesystem (bench/rootfs.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { sampleTree, type TreeSample } from './proc-tree';
import { freePort, hardNofile, inRootfs, makeBenchCertificate, runJson, startBackends, startProxy, type ProxyName } from './proxies';
import { holdRootfs } from './rootfs';

const opts = new Command()
  .option('--scenario <name>', 'http (autocannon, 100 connections), churn (50 parallel open-echo-close cycles) or chat (1,000 connections, one 64-byte message in flight each)', 'http')
  .option('--proxies <names>', 'comma-separated, run in turn every round', 'nginx,switchyard')
  .option('--rounds <n>', 'rounds', Number, 3)
  .option('--seconds <n>', 'load per proxy and round', Number, 6)
  .option('--backend-tls', 'the echo backends serve TLS and every proxy connects to them over it (NGINX proxy_pass https://, HAProxy ssl verify none, Switchyard wss://)')
  .option('--own-session', 'start the load generator in a session of its own, as the runner did before 2026-12-03 (bench/README.md, "Scheduling")')
  .parse()
  .opts<{ scenario: string; proxies: string; rounds: number; seconds: number; ownSession?: boolean; backendTls?: boolean }>();

const ROOT = join(__dirname, '..');
const TSX = ['--import', 'tsx'];
const micros = (seconds: number, ops: number): number | string => (Number.isNaN(seconds) ? '–' : Math.round((seconds / ops) * 1e7) / 10);

/** Drives the load at `target`; returns the operations done and the load generator's CPU seconds. */
async function load(target: string, pid: number | undefined): Promise<{ ops: number; cpuSeconds: number; proxyUser?: number; proxySystem?: number }> {
  const seconds = String(opts.seconds);
  if (opts.scenario === 'http') {
    const run = await runJson(process.execPath, [join(ROOT, 'node_modules/autocannon/autocannon.js'), '-c', '100', '-d', seconds, '--json', `http://${target}/`], 120_000, opts.ownSession);
    return { ops: (run.result.requests as { total: number }).total, cpuSeconds: run.cpuSeconds };
  }
  if (opts.scenario === 'chat') {
    const watch = pid ? ['--watch-pid', String(pid)] : [];
    const run = await runJson(process.execPath, [...TSX, join(__dirname, 'ws-load.ts'), '--target', target, '--mode', 'echo', '--connections', '1000', '--window', '1', '--size', '64', '--warmup', '2', '--duration', seconds, ...watch], 120_000, opts.ownSession);
    return { ops: run.result.messages as number, cpuSeconds: Number.NaN, proxyUser: run.result.proxyUserSeconds as number, proxySystem: run.result.proxySystemSeconds as number };
  }
  if (opts.scenario !== 'churn') throw new Error(`--scenario: http, churn or chat, not ${opts.scenario}`);
  // No warmup: every cycle of the run is counted, as is every CPU second.
  const run = await runJson(process.execPath, [...TSX, join(__dirname, 'ws-load.ts'), '--target', target, '--mode', 'churn', '--concurrency', '50', '--warmup', '0', '--duration', seconds], 120_000, opts.ownSession);
  return { ops: run.result.cycles as number, cpuSeconds: run.cpuSeconds };
}

async function main(): Promise<void> {
  const names = opts.proxies.split(',') as ProxyName[];
  // As in run.ts: held until the end or until this process dies; the files go where a chroot sees them.
  const rootfs = names.some(inRootfs) ? await holdRootfs() : undefined;
  const dir = mkdtempSync(join(rootfs ? join(rootfs.root, 'tmp') : tmpdir(), 'switchyard-cpu-'));
  const backendTls = opts.backendTls ? makeBenchCertificate(dir) : undefined;
  const backends = await startBackends(dir, backendTls);
  const ports = backends.ports;
  try {
    const nofile = hardNofile();
    const backendCpu = backends.cpuSeconds;
    const unit = { http: 'request', churn: 'upgrade cycle', chat: 'message' }[opts.scenario] ?? opts.scenario;
    process.stdout.write(`${opts.scenario}${backendTls ? ', TLS to the backends' : ''}: µs of CPU per ${unit} (load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})\n`);
    process.stdout.write('| round | proxy | ops/s | proxy user | proxy system | backends | load generator | all |\n|---|---|---:|---:|---:|---:|---:|---:|\n');
    for (let round = 1; round <= opts.rounds; round++) {
      for (const name of names) {
        const proxy = await startProxy(name, await freePort(), { workers: 1, backendPorts: ports, nofile, dir, rootfs, backendTls: backendTls !== undefined });
        try {
          const before: TreeSample | undefined = proxy.pid ? sampleTree(proxy.pid) : undefined;
          const backendsBefore = backendCpu();
          const { ops, cpuSeconds, proxyUser, proxySystem } = await load(proxy.target.split(',')[0], proxy.pid);
          const after: TreeSample | undefined = proxy.pid ? sampleTree(proxy.pid) : undefined;
          const user = proxyUser ?? (before && after ? after.userSeconds - before.userSeconds : 0);
          const system = proxySystem ?? (before && after ? after.systemSeconds - before.systemSeconds : 0);
          // Chat's backends and load generator also worked while 1,000 connections opened: not shown.
          const backend = opts.scenario === 'chat' ? Number.NaN : backendCpu() - backendsBefore;
          const row = [user, system, backend, cpuSeconds, user + system + backend + cpuSeconds].map((s) => micros(s, ops));
          process.stdout.write(`| ${round} | ${name} | ${Math.round(ops / opts.seconds).toLocaleString('en')} | ${row.join(' | ')} |\n`);
        } finally {
          await proxy.stop();
        }
      }
    }
  } finally {
    await backends.stop();
    rmSync(dir, { recursive: true, force: true });
    await rootfs?.release();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`cpu-breakdown: ${(err as Error).message}\n`);
  process.exit(1);
});
