// The benchmark runner: starts two echo backends, then for every scenario and round starts each proxy
// in turn (the order rotates every round, so no proxy always runs first or last on a warming machine),
// drives the load, stops the proxy, and finally writes bench/results/<date>.{json,md,svg} with medians
// and ratios to NGINX. `npm run bench -- --quick` runs every scenario briefly. With `switchyard-trixie`
// among the proxies, Switchyard also runs on the other runtime (bench/rootfs.ts), in the same rounds.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createConnection } from 'node:net';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { sampleTree } from './proc-tree';
import { freePort, hardNofile, inRootfs, makeBenchCertificate, PROXIES, ROOTFS_PROXIES, runJson, spawnWithLimit, startBackends, startProxy, stopChild, VARIANTS, type ProxyName, type ProxySetup, type RunningProxy } from './proxies';
import { LATEST_RUN_FILE, renderMarkdown, renderSvg, summarise, updateLatestRun, type RunResult, type Sample } from './report';
import { bindingName, holdRootfs, type Rootfs } from './rootfs';
import { scenarios, type Scenario } from './scenarios';

const program = new Command()
  .option('--quick', 'every scenario briefly, one round (the harness check; numbers are not for reporting)')
  .option('--rounds <n>', 'rounds of every scenario (default 3; 1 with --quick)', Number)
  .option('--only <names>', 'comma-separated scenarios: chat,throughput,idle,churn,http')
  .option('--proxies <names>', `comma-separated proxies: ${[...PROXIES, ...VARIANTS, ...ROOTFS_PROXIES].join(',')} (switchyard-trixie: Switchyard on Node 24 in a Debian 13 root filesystem, SWITCHYARD_ROOTFS)`, PROXIES.join(','))
  .option('--no-variants', `leave out the Switchyard variants (${VARIANTS.join(', ')}) in chat and churn; they need redis-server`)
  .option('--out <dir>', 'where results go', join(__dirname, 'results'))
  .option('--switchyard-extra <json>', 'JSON merged over the Switchyard config (for example a redis section)')
  .option('--switchyard-node-args <flags>', 'node flags for the Switchyard primary and its workers, space-separated (for example --single-threaded-gc)')
  .option('--tls', 'every proxy terminates TLS (wss://, https://) with one throwaway certificate, backends stay plain; no direct; results go to <date>-tls.*, not bench/README.md')
  .option('--label <text>', 'a name for this run in the results file')
  .option('--no-readme', 'do not rewrite the latest-run table in bench/README.md')
  .parse();

const opts = program.opts<{
  quick?: boolean;
  rounds?: number;
  only?: string;
  proxies: string;
  out: string;
  switchyardExtra?: string;
  switchyardNodeArgs?: string;
  label?: string;
  readme: boolean;
  variants: boolean;
  tls?: boolean;
}>();

const ROOT = join(__dirname, '..');
const TSX = ['--import', 'tsx'];

function requireBinary(name: string, pkg: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${name} is not installed: apt-get install -y ${pkg}`);
  }
}

async function measure(scenario: Scenario, target: string, pid: number | undefined, seconds: number, tls: boolean): Promise<Sample> {
  const timeoutMs = (seconds + 120) * 1000;
  if (scenario.name === 'http') {
    // autocannon reports the run; the proxy's CPU is sampled around it.
    const [host] = target.split(',');
    const url = `${tls ? 'https' : 'http'}://${host}/`;
    const autocannon = join(ROOT, 'node_modules/autocannon/autocannon.js');
    if (scenario.warmup) await runJson(process.execPath, [autocannon, ...scenario.warmup, '--json', url], timeoutMs);
    const before = pid ? sampleTree(pid) : undefined;
    const result = (await runJson(process.execPath, [autocannon, ...scenario.args, '--json', url], timeoutMs)).result;
    const after = pid ? sampleTree(pid) : undefined;
    const requests = result.requests as { total: number; average: number };
    const latency = result.latency as { p50: number; p99: number; p99_9?: number };
    const non2xx = Number(result.non2xx ?? 0) + Number(result.errors ?? 0) + Number(result.timeouts ?? 0);
    const cpu = before && after ? after.cpuSeconds - before.cpuSeconds : undefined;
    return {
      requestsPerSecond: requests.average,
      latencyP99Ms: latency.p99,
      proxyCpuMicrosPerRequest: cpu !== undefined && requests.total > 0 ? Math.round((cpu / requests.total) * 1e7) / 10 : undefined,
      errors: non2xx,
    };
  }
  const args = [...TSX, join(__dirname, 'ws-load.ts'), '--target', target, ...scenario.args];
  if (pid) args.push('--watch-pid', String(pid));
  if (tls) args.push('--tls');
  const r = (await runJson(process.execPath, args, timeoutMs)).result;
  const errors = Number(r.errors ?? 0) + Number(r.connectErrors ?? 0) + Number(r.unexpectedCloses ?? 0);
  const sample: Sample = { errors };
  if (r.errorSamples && (r.errorSamples as string[]).length > 0) sample.errorSamples = r.errorSamples as string[];
  if (scenario.name === 'idle') {
    sample.rssBytesPerConnection = r.proxyRssBytesPerConnection as number | undefined;
    sample.connected = r.stillOpen as number;
  } else if (scenario.name === 'churn') {
    sample.upgradesPerSecond = r.upgradesPerSecond as number;
    sample.upgradeLatencyP99Ms = (r.upgradeLatencyMs as { p99: number }).p99;
    sample.proxyCpuMicrosPerUpgrade = r.proxyCpuMicrosPerUpgrade as number | undefined;
  } else {
    const latency = r.latencyMs as { p50: number; p99: number; p999: number };
    sample.messagesPerSecond = r.messagesPerSecond as number;
    sample.latencyP50Ms = latency.p50;
    sample.latencyP99Ms = latency.p99;
    sample.latencyP999Ms = latency.p999;
    sample.proxyCpuMicrosPerMessage = r.proxyCpuMicrosPerMessage as number | undefined;
  }
  return sample;
}

/** Starts a proxy on a free port; a start that fails (a port taken meanwhile) is retried twice on new ports. */
async function startWithRetry(name: ProxyName, setup: ProxySetup): Promise<RunningProxy> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startProxy(name, await freePort(), setup);
    } catch (err) {
      if (attempt === 3) throw err;
      process.stderr.write(`${(err as Error).message}; retrying\n`);
    }
  }
}

function scrape(url: string): void {
  get(url, (res) => res.resume()).on('error', () => undefined);
}

/** A private redis-server on a free port, without persistence, that can be stopped and restarted. */
async function startRedis(dir: string): Promise<{ url: string; stop: () => Promise<void>; start: () => Promise<void> }> {
  const port = await freePort();
  let child: ReturnType<typeof spawnWithLimit> | undefined;
  const start = async () => {
    child = spawnWithLimit('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], join(dir, 'redis.log'));
    const until = Date.now() + 10_000;
    for (;;) {
      const up = await new Promise<boolean>((resolve) => {
        const s = createConnection(port, '127.0.0.1');
        s.on('connect', () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (up) return;
      if (Date.now() > until) throw new Error(`redis-server did not start on port ${port}; see ${join(dir, 'redis.log')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, start, stop: async () => void (child && (await stopChild(child))) };
}

async function main(): Promise<void> {
  const quick = opts.quick === true;
  const rounds = opts.rounds ?? (quick ? 1 : 3);
  const tls = opts.tls === true;
  // The backends speak no TLS: under --tls there is no direct baseline.
  const proxies = opts.proxies.split(',').map((p) => p.trim()).filter((p) => !tls || p !== 'direct') as ProxyName[];
  if (opts.variants && opts.proxies.split(',').includes('switchyard')) proxies.push(...VARIANTS.filter((v) => !proxies.includes(v)));
  const known: readonly string[] = [...PROXIES, ...VARIANTS, ...ROOTFS_PROXIES];
  for (const p of proxies) if (!known.includes(p)) throw new Error(`unknown proxy "${p}" (known: ${known.join(', ')})`);
  const withRedis = proxies.some((p) => (VARIANTS as readonly string[]).includes(p));
  if (withRedis) requireBinary('redis-server', 'redis-server');
  if (proxies.includes('nginx')) requireBinary('nginx', 'nginx-light');
  if (proxies.includes('haproxy')) requireBinary('haproxy', 'haproxy');

  const nofile = hardNofile();
  // The proxy holds two descriptors per tunnel; keep headroom for listeners, logs and backends' pools.
  // Under --tls, 10,000: the load generator makes each TLS handshake itself (~1 ms of its CPU each).
  const idleConnections = quick ? 1000 : Math.max(1000, Math.min(tls ? 10_000 : 50_000, Math.floor((nofile - 500) / 2)));
  let chosen = scenarios({ quick, idleConnections });
  if (opts.only) {
    const names = opts.only.split(',');
    chosen = chosen.filter((s) => names.includes(s.name));
    if (chosen.length === 0) throw new Error(`--only matched no scenario: ${opts.only}`);
  }

  // Switchyard on the other runtime: its root filesystem stays mounted until the run ends, or until
  // this process dies (run-leg reads our end of a pipe). A chroot does not see this machine's /tmp,
  // so the run's files (configs, certificate, logs) go under the root filesystem's.
  const rootfs = proxies.some(inRootfs) ? await holdRootfs() : undefined;
  const dir = mkdtempSync(join(rootfs ? join(rootfs.root, 'tmp') : tmpdir(), 'switchyard-bench-'));
  const backends = await startBackends(dir);
  const redis = withRedis ? await startRedis(dir) : undefined;
  if (tls) requireBinary('openssl', 'openssl');
  const certificate = tls ? makeBenchCertificate(dir) : undefined;
  const extra = opts.switchyardExtra ? (JSON.parse(opts.switchyardExtra) as Record<string, unknown>) : undefined;
  const startedAt = new Date();
  const result: RunResult = {
    label: tls ? ['tls', opts.label].filter(Boolean).join(' ') : opts.label,
    date: startedAt.toISOString(),
    quick,
    rounds,
    machine: { cpus: cpus().length, node: process.version, nofile, kernel: release(), ...(rootfs ? { rootfs: rootfs.root } : {}) },
    versions: versions(proxies, rootfs),
    command: `npm run bench --${process.argv.slice(2).map((a) => ` ${a}`).join('')}`,
    scenarios: {},
  };
  try {
    for (const scenario of chosen) {
      const order = proxies.filter((p) => (p !== 'direct' || scenario.withDirect) && (!(VARIANTS as readonly string[]).includes(p) || scenario.variants));
      const samples: Record<string, Sample[]> = {};
      for (let round = 0; round < rounds; round++) {
        const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
        for (const name of rotated) {
          const proxy = await startWithRetry(name, { workers: scenario.workers, backendPorts: backends.ports, nofile, dir, switchyardExtra: extra, redisUrl: redis?.url, switchyardNodeArgs: opts.switchyardNodeArgs?.split(' ').filter(Boolean), tls: certificate, rootfs });
          // Redis goes away after the balancer has connected to it: the outage is what is measured.
          if (name === 'switchyard-redis-down') await redis!.stop();
          try {
            const at = scenario.args.findIndex((a) => a === '--duration' || a === '-d');
            const seconds = at >= 0 ? Number(scenario.args[at + 1]) : 10;
            // Switchyard with metrics on is scraped every second, as a (busy) Prometheus would.
            const scraper = proxy.metricsUrl ? setInterval(scrape, 1000, proxy.metricsUrl) : undefined;
            const sample = await measure(scenario, proxy.target, proxy.pid, seconds, tls).finally(() => clearInterval(scraper));
            (samples[name] ??= []).push(sample);
            process.stderr.write(`${scenario.name} round ${round + 1} ${name}: ${JSON.stringify(sample)}\n`);
          } finally {
            await proxy.stop();
            if (name === 'switchyard-redis-down') await redis!.start();
          }
        }
      }
      result.scenarios[scenario.name] = { title: scenario.title, workers: scenario.workers, samples };
    }
  } finally {
    await redis?.stop();
    await backends.stop();
    rmSync(dir, { recursive: true, force: true });
    await rootfs?.release();
  }

  summarise(result);
  mkdirSync(opts.out, { recursive: true });
  const stem = join(opts.out, startedAt.toISOString().slice(0, 10) + (quick ? '-quick' : '') + (tls ? '-tls' : '') + (opts.label ? `-${opts.label}` : ''));
  writeFileSync(`${stem}.json`, JSON.stringify(result, null, 2) + '\n');
  const markdown = renderMarkdown(result);
  writeFileSync(`${stem}.md`, markdown);
  writeFileSync(`${stem}.svg`, renderSvg(result));
  process.stdout.write(markdown + `\nwritten: ${stem}.{json,md,svg}\n`);
  if (!quick && !tls && opts.readme && !opts.label && opts.out === join(__dirname, 'results')) updateLatestRun(LATEST_RUN_FILE, markdown, `${stem}.svg`);
}

function versions(proxies: ProxyName[], rootfs: Rootfs | undefined): Record<string, string> {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const v: Record<string, string> = { switchyard: `${version} on Node ${process.version} with ${bindingName()}` };
  if (rootfs) v['switchyard-trixie'] = `${version} on ${rootfs.runtime} with ${bindingName(rootfs)}`;
  // nginx -v prints on stderr.
  const read = (cmd: string, args: string[]) =>
    execFileSync('sh', ['-c', `${cmd} ${args.join(' ')} 2>&1`], { encoding: 'utf8' }).trim().split('\n')[0]?.replace(/ - https?:\S+$/, '') ?? '';
  if (proxies.includes('nginx')) v.nginx = read('nginx', ['-v']);
  if (proxies.includes('haproxy')) v.haproxy = read('haproxy', ['-v']);
  return v;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
