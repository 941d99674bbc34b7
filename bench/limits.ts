// What one client can make a worker spend at its limits, build against build (docs/operations.md,
// "Limits"): not a speed benchmark, a robustness one. Each scenario starts a one-worker balancer of
// every build given with --cli, in turn, round after round (so no build always runs first), and
// prints the median of each figure.
//
//   node --import tsx bench/limits.ts [--scenario payload,pings,fd-limit,refuse] [--rounds 3] [--cli <dist/cli.js>]...
//
// payload   three clients announce a 30 MiB message and send all but its last byte: the worker's RSS
//           before and after; then 10 clients do the same with the largest message the default
//           maxPayload lets uWS hold (maxPayload + 1 MiB - 1 byte), the worst case of the default.
// pings     a backend that stops reading and sends 200,000 pings of 125 bytes: the worker's RSS
//           before, and once every ping has reached it.
// fd-limit  the worker under `prlimit --nofile=80:80`, five tunnels open, one client opening 70
//           connections that send nothing: the worker's CPU over 3 s (it spun on accept EMFILE).
// refuse    a client retrying upgrades as fast as it can, 8 at a time, for 3 s against a worker that
//           cannot take them: at workerConnections (answered 503 + Connection: close), and stopped
//           at the descriptor limit (the listen socket closed: refused by the kernel). Worker CPU.
import { connect as netConnect, type Socket } from 'node:net';
import { Command } from 'commander';
import { closeAll, PING_FLOOD, startEchoBackend, startRawWsBackend, type EchoBackend } from '../test/helpers/backends';
import { CLI, startBalancer } from '../test/helpers/balancer';
import { cpuShare, rssBytes } from '../test/helpers/proc';
import { openSocket, unfinishedMessages, upgradeRequest } from '../test/helpers/raw-client';
import { waitFor, waitStable } from '../test/helpers/wait';
import { connectMany, type TestClient } from '../test/helpers/ws-client';

const opts = new Command()
  .option('--scenario <names>', 'comma-separated: payload, pings, fd-limit, refuse', 'payload,pings,fd-limit,refuse')
  .option('--rounds <n>', 'rounds (median reported)', Number, 3)
  .option('--cli <path>', "a build's dist/cli.js; repeat to compare builds (default: this checkout's)", (v: string, all: string[] = []) => [...all, v])
  .parse()
  .opts<{ scenario: string; rounds: number; cli?: string[] }>();

const MiB = 1024 * 1024;
const clis = opts.cli ?? [CLI];
const label = (cli: string): string => (clis.length === 1 ? 'this build' : cli.replace(/\/dist\/cli\.js$/, ''));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

type Figures = Record<string, number>;

async function payload(cli: string, echo: EchoBackend): Promise<Figures> {
  const b = await startBalancer({ cli, workers: 1, config: { pools: { echo: { backends: [{ url: echo.url }] } }, routes: [{ path: '/', pool: 'echo' }] } });
  try {
    const worker = b.pids[0];
    const settled = (): Promise<number> => waitStable(() => rssBytes(worker), { stableMs: 1000, timeoutMs: 20_000, tolerance: MiB, what: "the worker's RSS" });
    const idle = await settled();
    const three = await unfinishedMessages(b.port, 3, 30 * MiB);
    const afterThree = await settled(); // what the kernel took, the worker has read
    for (const s of three) s.destroy();
    // The largest message a route with the default maxPayload lets uWS hold.
    const ready = b.logs.find((l) => l.msg === 'switchyard ready');
    const defaultHeld = ready?.workerConnections === undefined ? 32 * MiB : 2 * MiB; // older builds: 16 MiB x 2
    const ten = await unfinishedMessages(b.port, 10, defaultHeld - 1);
    const afterTen = await settled();
    for (const s of ten) s.destroy();
    return { 'idle RSS MiB': idle / MiB, '+ 3 x 30 MiB unfinished, RSS MiB': afterThree / MiB, '+ 10 x largest the default holds, RSS MiB': afterTen / MiB };
  } finally {
    await b.stop();
  }
}

async function pings(cli: string): Promise<Figures> {
  const pinger = await startRawWsBackend('ping-flood');
  const b = await startBalancer({ cli, workers: 1, config: { pools: { pinger: { backends: [{ url: pinger.url }] } }, routes: [{ path: '/', pool: 'pinger' }] } });
  const clients: TestClient[] = [];
  try {
    const worker = b.pids[0];
    const idle = await waitStable(() => rssBytes(worker), { stableMs: 1000, timeoutMs: 20_000, tolerance: MiB, what: "the worker's RSS" });
    clients.push(...(await connectMany(1, () => b.url('/pings'))));
    await waitFor(() => pinger.upgraded.length === 1 && pinger.upgraded[0].writableLength === 0, 30_000, 'every ping sent', 50);
    const flooded = await waitStable(() => rssBytes(worker), { stableMs: 1000, timeoutMs: 30_000, tolerance: MiB, what: "the worker's RSS" });
    return { 'idle RSS MiB': idle / MiB, [`after ${PING_FLOOD} pings, RSS MiB`]: flooded / MiB };
  } finally {
    for (const c of clients) c.terminate();
    await b.stop();
    await pinger.close();
  }
}

async function fdLimit(cli: string, echo: EchoBackend): Promise<Figures> {
  const b = await startBalancer({ cli, workers: 1, wrapper: ['prlimit', '--nofile=80:80'], config: { pools: { echo: { backends: [{ url: echo.url }] } }, routes: [{ path: '/', pool: 'echo' }] } });
  const clients: TestClient[] = [];
  const silent: Socket[] = [];
  try {
    clients.push(...(await connectMany(5, (i) => b.url(`/t${i}`))));
    for (let i = 0; i < 70; i++) silent.push(await openSocket(b.port, undefined, 1000).catch(() => null as unknown as Socket));
    const cpu = await cpuShare(b.pids[0], 3000);
    let answering = 0;
    for (const c of clients) answering += await c.request('still there?', 3000).then(
      () => 1,
      () => 0,
    );
    return { 'worker CPU % of a core': cpu * 100, 'tunnels answering of 5': answering };
  } finally {
    for (const s of silent) s?.destroy();
    for (const c of clients) c.terminate();
    await b.stop();
  }
}

/** Upgrade attempts, `parallel` at a time, for `ms`; counts what came back. */
async function hammer(port: number, ms: number, parallel: number): Promise<{ attempts: number; answered503: number; refused: number }> {
  const request = upgradeRequest({ path: '/again' }).text;
  const end = Date.now() + ms;
  const counts = { attempts: 0, answered503: 0, refused: 0 };
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      counts.attempts++;
      const s = netConnect(port, '127.0.0.1');
      s.once('connect', () => s.write(request));
      s.once('data', (d: Buffer) => {
        if (d.subarray(0, 12).toString('latin1') === 'HTTP/1.1 503') counts.answered503++;
        s.destroy();
      });
      s.once('error', () => {
        counts.refused++;
        s.destroy();
      });
      s.once('close', () => resolve());
    });
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < end) await one();
    }),
  );
  return counts;
}

async function refuse(cli: string, echo: EchoBackend): Promise<Figures> {
  const figures: Figures = {};
  // At workerConnections: 10 tunnels held, every further upgrade answered 503 (builds without it: skipped).
  const capped = await startBalancer({ cli, workers: 1, config: { workerConnections: 10, pools: { echo: { backends: [{ url: echo.url }] } }, routes: [{ path: '/', pool: 'echo' }] } }).catch(() => undefined);
  if (capped === undefined) Object.assign(figures, { 'at workerConnections: CPU %': NaN, 'at workerConnections: attempts/s': NaN, 'at workerConnections: 503 share %': NaN });
  else {
    const b = capped;
    const clients: TestClient[] = [];
    try {
      clients.push(...(await connectMany(10, (i) => b.url(`/t${i}`))));
      const [cpu, counts] = await Promise.all([cpuShare(b.pids[0], 3000), hammer(b.port, 3000, 8)]);
      figures['at workerConnections: CPU %'] = cpu * 100;
      figures['at workerConnections: attempts/s'] = counts.attempts / 3;
      figures['at workerConnections: 503 share %'] = (100 * counts.answered503) / counts.attempts;
    } finally {
      for (const c of clients) c.terminate();
      await b.stop();
    }
  }
  // At the descriptor limit: the listen socket closed.
  {
    const b = await startBalancer({ cli, workers: 1, wrapper: ['prlimit', '--nofile=80:80'], config: { pools: { echo: { backends: [{ url: echo.url }] } }, routes: [{ path: '/', pool: 'echo' }] } });
    const silent: Socket[] = [];
    try {
      for (let i = 0; i < 70; i++) silent.push(await openSocket(b.port, undefined, 1000).catch(() => null as unknown as Socket));
      const [cpu, counts] = await Promise.all([cpuShare(b.pids[0], 3000), hammer(b.port, 3000, 8)]);
      figures['at the descriptor limit: CPU %'] = cpu * 100;
      figures['at the descriptor limit: attempts/s'] = counts.attempts / 3;
    } finally {
      for (const s of silent) s?.destroy();
      await b.stop();
    }
  }
  return figures;
}

const SCENARIOS: Record<string, (cli: string, echo: EchoBackend) => Promise<Figures>> = { payload, pings, 'fd-limit': fdLimit, refuse };

async function main(): Promise<void> {
  const echo = await startEchoBackend({ name: 'limits-bench' });
  try {
    for (const name of opts.scenario.split(',')) {
      const run = SCENARIOS[name];
      if (!run) throw new Error(`--scenario: payload, pings, fd-limit or refuse, not ${name}`);
      const samples = new Map<string, Figures[]>(clis.map((c) => [c, []]));
      for (let round = 0; round < opts.rounds; round++) {
        const order = round % 2 === 0 ? clis : [...clis].reverse();
        for (const cli of order) {
          const figures = await run(cli, echo);
          samples.get(cli)!.push(figures);
          process.stderr.write(`${name} round ${round + 1} ${label(cli)}: ${JSON.stringify(figures, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}\n`);
        }
      }
      console.log(`\n${name} (median of ${opts.rounds})\n`);
      const keys = Object.keys(samples.get(clis[0])![0]);
      console.log(`| | ${clis.map(label).join(' | ')} |`);
      console.log(`|---|${clis.map(() => '---').join('|')}|`);
      for (const key of keys) console.log(`| ${key} | ${clis.map((c) => median(samples.get(c)!.map((f) => f[key] ?? NaN)).toFixed(1)).join(' | ')} |`);
    }
  } finally {
    await closeAll(echo);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

