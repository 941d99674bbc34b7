// How much Redis a fleet's shared state costs as the fleet grows. Simulates N balancer machines,
// each the product's own RedisState (bench/fleet-machines.ts, a few processes of many machines, one
// set of ioredis connections per machine), against a real redis-server and a real three-node Redis
// Cluster, with churning tunnel counts. Measures Redis's own CPU (INFO cpu, per node), the round
// trip of a count sync (p50/p99), the age of the counts behind a decision, and how long a killed
// machine's tunnels stay in another machine's view. `--legacy <commit>` runs an earlier version's
// state module (from `git archive`) the same way, for before/after.
//
//   node --import tsx bench/fleet-scale.ts                       # 10, 100, 500 machines x 100 backends, both topologies, 3 rounds
//   node --import tsx bench/fleet-scale.ts --quick               # 10 machines, one short round (the harness check)
//   node --import tsx bench/fleet-scale.ts --legacy 2cb663c --designs current,legacy --machines 10,100
//   node --import tsx bench/fleet-scale.ts --report bench/results/fleet-scale-*.json   # one table over saved runs
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import Redis from 'ioredis';
import { startRedis, startRedisCluster } from '../test/helpers/redis';
import type { FromMachines, MachinesConfig, ToMachines, WindowStats } from './fleet-machines';

const program = new Command()
  .option('--machines <list>', 'fleet sizes', '10,100,500')
  .option('--backends <n>', 'backends per machine (the same set on every machine)', Number, 100)
  .option('--pools <n>', 'pools the backends are split into (default: 1 on a single server, 6 on a cluster)', Number)
  .option('--tunnels <n>', 'tunnels each machine holds', Number, 2000)
  .option('--churn <share>', 'share of a machine\'s tunnels opened per second (as many close)', Number, 0.02)
  .option('--sync <ms>', 'redis.syncInterval', Number, 100)
  .option('--count-ttl <ms>', 'redis.countTtl', Number, 3000)
  .option('--lease-ttl <ms>', 'redis.leaseTtl', Number, 5000)
  .option('--seconds <n>', 'measured window per run', Number, 10)
  .option('--warmup <n>', 'seconds between the last machine started and the window', Number, 3)
  .option('--rounds <n>', 'rounds (the designs alternate within each)', Number, 3)
  .option('--topologies <list>', 'single,cluster', 'single,cluster')
  .option('--designs <list>', 'current,legacy', 'current')
  .option('--legacy <commit>', 'the commit whose src/state/redis-state.ts is the legacy design', '2cb663c')
  .option('--legacy-max <n>', 'largest fleet the legacy design runs (past it, Redis only queues its syncs)', Number, 100)
  .option('--procs <n>', 'processes the machines are spread over', Number, 2)
  .option('--kill <n>', 'machines killed at the end of a run to time how long their tunnels stay counted', Number, 5)
  .option('--node-args <flags>', 'node flags for the machines processes, space-separated (for example --cpu-prof --cpu-prof-dir /tmp/prof)')
  .option('--quick', 'one short round of 10 machines on a single server (numbers not for reporting)')
  .option('--out <dir>', 'where results go', join(__dirname, 'results'))
  .option('--report <files...>', 'print the table of saved results (JSON files of earlier runs) and exit')
  .option('--label <text>', 'suffix of the results files')
  .parse();

const opts = program.opts<{
  machines: string;
  backends: number;
  pools?: number;
  tunnels: number;
  churn: number;
  sync: number;
  countTtl: number;
  leaseTtl: number;
  seconds: number;
  warmup: number;
  rounds: number;
  topologies: string;
  designs: string;
  legacy: string;
  legacyMax: number;
  procs: number;
  kill: number;
  nodeArgs?: string;
  quick?: boolean;
  out: string;
  report?: string[];
  label?: string;
}>();
if (opts.quick) Object.assign(opts, { machines: '10', rounds: 1, seconds: 2, warmup: 1, topologies: 'single', kill: 2 });

type Topology = 'single' | 'cluster';
type Design = 'current' | 'legacy';

interface NodeCpu {
  port: number;
  /** Redis CPU (user + sys) over the window, in cores. */
  cores: number;
  /** EVALSHA calls per second and Redis's own microseconds per call. */
  evalshaPerSecond: number;
  usecPerEvalsha: number;
  /** Redis's own p99 of an EVALSHA (INFO latencystats), µs. */
  evalshaP99Usec: number | null;
  keys: number;
}

export interface FleetRun {
  design: Design;
  topology: Topology;
  machines: number;
  pools: number;
  round: number;
  redisCores: number;
  nodes: NodeCpu[];
  /** Syncs a second the machines achieved, and the target (machines x 1000 / sync). */
  syncsPerSecond: number;
  targetSyncsPerSecond: number;
  syncMs: { p50: number; p90: number; p99: number; max: number };
  ageMs: { p50: number; p99: number };
  changedPerSync: number;
  leaveMs: number | null;
  harnessCores: number;
  harnessSysCores: number;
}

const ROOT = join(__dirname, '..');

/** src/ of `commit`, unpacked beside the results, with this checkout's node_modules. */
function legacyModule(commit: string): string {
  const dir = join(__dirname, 'results', 'tmp', `legacy-${commit}`);
  const module = join(dir, 'src', 'state', 'redis-state.ts');
  if (!existsSync(module)) {
    mkdirSync(dir, { recursive: true });
    execFileSync('sh', ['-c', `git archive ${commit} src | tar -x -C ${JSON.stringify(dir)}`], { cwd: ROOT });
    if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  }
  return module;
}

function keysFor(backends: number, pools: number): string[] {
  const keys: string[] = [];
  for (let b = 0; b < backends; b++) keys.push(`p${b % pools}/10.0.${b >> 8}.${b & 255}:9000`);
  return keys;
}

function info(text: string, key: string): number | undefined {
  const m = new RegExp(`^${key}:([^\\r\\n]+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

async function cpuSeconds(r: Redis): Promise<number> {
  const text = await r.info('cpu');
  return (info(text, 'used_cpu_sys') ?? 0) + (info(text, 'used_cpu_user') ?? 0);
}

async function commandStats(r: Redis): Promise<{ calls: number; usec: number; p99: number | null }> {
  const stats = await r.info('commandstats');
  const m = /^cmdstat_evalsha:calls=(\d+),usec=(\d+)/m.exec(stats);
  const lat = await r.info('latencystats').catch(() => '');
  const p = /^latency_percentiles_usec_evalsha:.*p99=([\d.]+)/m.exec(lat);
  return { calls: m ? Number(m[1]) : 0, usec: m ? Number(m[2]) : 0, p99: p ? Number(p[1]) : null };
}

function startChild(config: MachinesConfig): { child: ChildProcess; next: (t: FromMachines['t']) => Promise<FromMachines> } {
  // A larger young generation: hundreds of simulated machines allocate like one busy server.
  const execArgv = ['--import', 'tsx', '--max-semi-space-size=32', ...(opts.nodeArgs?.split(' ').filter(Boolean) ?? [])];
  const child = fork(join(__dirname, 'fleet-machines.ts'), [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox: FromMachines[] = [];
  const waiting: { t: string; resolve: (m: FromMachines) => void; reject: (e: Error) => void }[] = [];
  const deliver = (): void => {
    for (let i = 0; i < waiting.length; i++) {
      const at = inbox.findIndex((m) => m.t === waiting[i].t || m.t === 'error');
      if (at < 0) continue;
      const [m] = inbox.splice(at, 1);
      const [w] = waiting.splice(i--, 1);
      if (m.t === 'error') w.reject(new Error(`machines process: ${m.message}`));
      else w.resolve(m);
    }
  };
  child.on('message', (m: FromMachines) => {
    inbox.push(m);
    deliver();
  });
  child.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`machines process exited (${code})`));
  });
  child.send({ t: 'start', config } satisfies ToMachines);
  return {
    child,
    next: (t) =>
      new Promise<FromMachines>((resolve, reject) => {
        waiting.push({ t, resolve, reject });
        deliver();
      }),
  };
}

async function runOnce(design: Design, topology: Topology, machines: number, round: number): Promise<FleetRun> {
  const pools = opts.pools ?? (topology === 'cluster' ? 6 : 1);
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-fleet-scale-'));
  const server = await (topology === 'single' ? startRedis() : startRedisCluster(dir)).catch((err: Error) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  const ports = 'ports' in server ? server.ports : [server.port];
  const admins = ports.map((port) => new Redis(port));
  // 0 machines: Redis on its own (a cluster's nodes gossip even when idle), the floor under the rest.
  const procs = machines === 0 ? 0 : Math.max(1, Math.min(opts.procs, Math.ceil(machines / 50)));
  const children: ReturnType<typeof startChild>[] = [];
  try {
    const keys = keysFor(opts.backends, pools);
    const module = design === 'legacy' ? legacyModule(opts.legacy) : resolve(ROOT, 'src/state/redis-state.ts');
    for (let p = 0; p < procs; p++) {
      const ids: string[] = [];
      for (let i = p; i < machines; i += procs) ids.push(`bench-${i}`);
      children.push(
        startChild({
          module,
          url: `redis://127.0.0.1:${ports[0]}`,
          cluster: topology === 'cluster',
          clusterName: 'scale',
          ids,
          keys,
          tunnels: opts.tunnels,
          churn: opts.churn,
          syncInterval: opts.sync,
          countTtl: opts.countTtl,
          leaseTtl: opts.leaseTtl,
          reconcileInterval: 60_000,
          seed: round * 1000 + p,
        }),
      );
    }
    await Promise.all(children.map((c) => c.next('ready')));
    await new Promise((r) => setTimeout(r, opts.warmup * 1000));

    await Promise.all(admins.map((a) => a.config('RESETSTAT')));
    const cpu0 = await Promise.all(admins.map(cpuSeconds));
    const t0 = Date.now();
    for (const c of children) c.child.send({ t: 'window-start' } satisfies ToMachines);
    await new Promise((r) => setTimeout(r, opts.seconds * 1000));
    const ended = children.map((c) => c.next('window'));
    for (const c of children) c.child.send({ t: 'window-end' } satisfies ToMachines);
    const cpu1 = await Promise.all(admins.map(cpuSeconds));
    const seconds = (Date.now() - t0) / 1000;
    const stats = (await Promise.all(ended)).map((m) => (m as { stats: WindowStats }).stats);
    const nodes: NodeCpu[] = await Promise.all(
      admins.map(async (a, i) => {
        const cs = await commandStats(a);
        return {
          port: ports[i],
          cores: (cpu1[i] - cpu0[i]) / seconds,
          evalshaPerSecond: cs.calls / seconds,
          usecPerEvalsha: cs.calls ? cs.usec / cs.calls : 0,
          evalshaP99Usec: cs.p99,
          keys: await a.dbsize(),
        };
      }),
    );

    // The fleet holds still, then machines die: how long do their tunnels stay in a live machine's view?
    const quiet = children.map((c) => c.next('quiet'));
    for (const c of children) c.child.send({ t: 'quiet' } satisfies ToMachines);
    await Promise.all(quiet);
    let leaveMs: number | null = null;
    if (opts.kill > 0 && machines > opts.kill + 1) {
      const killed = children[0].next('killed');
      children[0].child.send({ t: 'kill', count: Math.min(opts.kill, Math.floor(machines / procs) - 1), timeoutMs: opts.countTtl * 5 } satisfies ToMachines);
      leaveMs = (await killed as { leaveMs: number | null }).leaveMs;
    }

    const weight = (f: (s: WindowStats) => number): number => stats.reduce((n, s) => n + f(s) * s.scripts, 0) / Math.max(1, stats.reduce((n, s) => n + s.scripts, 0));
    const scripts = stats.reduce((n, s) => n + s.scripts, 0);
    return {
      design,
      topology,
      machines,
      pools,
      round,
      redisCores: nodes.reduce((n, x) => n + x.cores, 0),
      nodes,
      syncsPerSecond: scripts / (design === 'legacy' ? 1 : pools) / seconds,
      targetSyncsPerSecond: (machines * 1000) / opts.sync,
      // Percentiles of each process, weighted by its share of the scripts (the processes are alike).
      syncMs: { p50: weight((s) => s.sync[0]), p90: weight((s) => s.sync[1]), p99: weight((s) => s.sync[2]), max: Math.max(0, ...stats.map((s) => s.sync[3])) },
      ageMs: { p50: weight((s) => s.age[0]), p99: weight((s) => s.age[1]) },
      changedPerSync: weight((s) => s.changedPerSync),
      leaveMs,
      harnessCores: stats.reduce((n, s) => n + s.cpuCores, 0),
      harnessSysCores: stats.reduce((n, s) => n + s.sysCores, 0),
    };
  } finally {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((done) => {
            if (c.child.exitCode !== null) return done();
            const timer = setTimeout(() => c.child.kill('SIGKILL'), 15_000);
            c.child.once('exit', () => {
              clearTimeout(timer);
              done();
            });
            c.child.send({ t: 'exit' } satisfies ToMachines);
          }),
      ),
    );
    for (const a of admins) a.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const fmt = (n: number | null, digits = 1): string => (n === null || Number.isNaN(n) ? '–' : n.toFixed(digits));

/** One row per design, topology and size: medians over the rounds. */
function table(runs: FleetRun[]): string {
  const lines = [
    '| design | topology | machines | pools | syncs/s achieved (target) | Redis CPU, cores | per node | Redis CPU per sync, µs | at the target rate, cores | sync p50 / p99 ms | counts age p50 / p99 ms | dead machine out after, ms | backends changed per sync | harness CPU, cores |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const groups = new Map<string, FleetRun[]>();
  for (const r of runs) {
    const k = `${r.design}|${r.topology}|${r.machines}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const rs of groups.values()) {
    const m = (f: (r: FleetRun) => number | null): number | null => {
      const v = rs.map(f).filter((x): x is number => x !== null);
      return v.length ? median(v) : null;
    };
    const perNode = rs[0].nodes.map((_, i) => fmt(m((r) => r.nodes[i].cores), 3)).join(' / ');
    // A machine's sync, whatever its pools: Redis's CPU divided by the syncs the harness achieved.
    const perSync = m((r) => (r.syncsPerSecond > 0 ? r.redisCores / r.syncsPerSecond : null));
    if (rs[0].machines === 0) {
      lines.push(`| – | ${rs[0].topology} | 0 | – | – | ${fmt(m((r) => r.redisCores), 3)} | ${rs[0].nodes.map((_, i) => fmt(m((r) => r.nodes[i].cores), 3)).join(' / ')} | – | – | – | – | – | – | – |`);
      continue;
    }
    lines.push(
      `| ${rs[0].design} | ${rs[0].topology} | ${rs[0].machines} | ${rs[0].pools} | ${fmt(m((r) => r.syncsPerSecond), 0)} (${rs[0].targetSyncsPerSecond}) | ${fmt(m((r) => r.redisCores), 3)} | ${perNode} | ${fmt(perSync === null ? null : perSync * 1e6, 0)} | ${fmt(perSync === null ? null : perSync * rs[0].targetSyncsPerSecond, 2)} | ${fmt(m((r) => r.syncMs.p50), 2)} / ${fmt(m((r) => r.syncMs.p99), 2)} | ${fmt(m((r) => r.ageMs.p50), 0)} / ${fmt(m((r) => r.ageMs.p99), 0)} | ${fmt(m((r) => r.leaveMs), 0)} | ${fmt(m((r) => r.changedPerSync), 1)} | ${fmt(m((r) => r.harnessCores), 2)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  if (opts.report !== undefined) {
    // Tables again from saved results (several files: one table over all their runs).
    const runs = opts.report.flatMap((file) => (JSON.parse(readFileSync(file, 'utf8')) as { runs: FleetRun[] }).runs);
    process.stdout.write(`${table(runs)}\n`);
    return;
  }
  const sizes = opts.machines.split(',').map(Number);
  const designs = opts.designs.split(',') as Design[];
  const topologies = opts.topologies.split(',') as Topology[];
  const setup = {
    backends: opts.backends,
    tunnelsPerMachine: opts.tunnels,
    churnPerSecond: opts.churn,
    syncInterval: opts.sync,
    countTtl: opts.countTtl,
    leaseTtl: opts.leaseTtl,
    seconds: opts.seconds,
    rounds: opts.rounds,
    procs: opts.procs,
    legacy: designs.includes('legacy') ? opts.legacy : undefined,
    cpus: cpus().length,
    redis: execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).trim(),
    node: process.version,
  };
  mkdirSync(opts.out, { recursive: true });
  const stem = join(opts.out, `fleet-scale-${new Date().toISOString().slice(0, 10)}${opts.quick ? '-quick' : ''}${opts.label ? `-${opts.label}` : ''}`);
  const runs: FleetRun[] = [];
  // Written after every run, so a long matrix cut short keeps what it measured.
  const save = (): void => {
    writeFileSync(`${stem}.json`, `${JSON.stringify({ setup, runs }, null, 2)}\n`);
    writeFileSync(`${stem}.md`, `# Fleet shared state at scale${opts.quick ? ' (quick: not for reporting)' : ''}\n\n\`node --import tsx bench/fleet-scale.ts ${process.argv.slice(2).join(' ')}\`\n\n${JSON.stringify(setup)}\n\n${table(runs)}\n`);
  };
  for (const topology of topologies) {
    for (const machines of sizes) {
      for (let round = 1; round <= opts.rounds; round++) {
        // Alternate which design goes first, so neither always runs on a warmer machine.
        const here = designs.filter((d) => d !== 'legacy' || machines <= opts.legacyMax);
        const order = machines === 0 ? here.slice(0, 1) : round % 2 ? here : [...here].reverse();
        for (const design of order) {
          process.stderr.write(`${topology} ${machines} machines, ${design}, round ${round}/${opts.rounds} ... `);
          // A Redis that fails to start (a free port taken meanwhile) gets one more try.
          const run = await runOnce(design, topology, machines, round).catch((err: Error) => {
            process.stderr.write(`failed (${err.message.split('\n')[0]}), again ... `);
            return runOnce(design, topology, machines, round);
          });
          runs.push(run);
          save();
          process.stderr.write(
            `Redis ${run.redisCores.toFixed(3)} cores, ${run.syncsPerSecond.toFixed(0)}/${run.targetSyncsPerSecond} syncs/s, sync p99 ${run.syncMs.p99.toFixed(2)} ms, age p99 ${run.ageMs.p99.toFixed(0)} ms, out after ${fmt(run.leaveMs, 0)} ms, harness ${run.harnessCores.toFixed(2)} cores (${run.harnessSysCores.toFixed(2)} kernel)\n`,
          );
        }
      }
    }
  }
  process.stdout.write(`\n${table(runs)}\nresults: ${stem}.json, ${stem}.md\n`);
}

// Interrupted: exit through 'exit', where the test helpers stop the redis-servers they started.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
