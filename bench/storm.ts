// Reconnect storm (docs/operations.md "Storm control"): three backends hold 3,000 tunnels through a
// real balancer (2 workers); one backend is killed, and its ~1,000 clients reconnect at once (on
// the 1012 the balancer sends them). Measured at each surviving backend: the peak of upgrades it
// accepts in one second, and in one 100 ms slice (as a rate), with and without maxUpgradesPerSecond;
// and how long until every client is back. Clients that get 503 come back after its Retry-After
// (plus up to a second of their own jitter), as the demo client does. Rounds alternate paced and
// unpaced, each with a fresh balancer and backends. Loopback only, bounded (each round < 60 s).
//
//   node --import tsx bench/storm.ts [--rounds 3] [--tunnels 3000] [--rate 200] [--queue 2s]
//   node --import tsx bench/storm.ts --quick    # 300 tunnels, rate 20, one round: a harness check
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startBalancer } from '../test/helpers/balancer';
import { connect, UpgradeRejected, type TestClient } from '../test/helpers/ws-client';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    tunnels: { type: 'string', default: '3000' },
    rate: { type: 'string' },
    queue: { type: 'string', default: '2s' },
    quick: { type: 'boolean', default: false },
  },
});
const quick = values.quick;
const rounds = quick ? 1 : Number(values.rounds);
const TUNNELS = quick ? 300 : Number(values.tunnels);
/** --quick: 300 tunnels, so a lower rate to be paced at all. */
const RATE = Number(values.rate ?? (quick ? 20 : 200));
const ROUND_DEADLINE_MS = 60_000;

interface RoundResult {
  /** Per surviving backend: the most upgrades it accepted in one second after the kill. */
  peakPerSecond: number[];
  /** The same over 100 ms slices, x 10 (a rate per second). */
  peakPer100ms: number[];
  /** ms from the kill until every client of the killed backend was connected again. */
  backMs: number;
  /** Clients of the killed backend. */
  moved: number;
  /** 503s answered (paced) while they came back. */
  refused: number;
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The most `times` (ms) falling in one slice of `sliceMs`, slices cut from `from`. */
function peak(times: readonly number[], from: number, sliceMs: number): number {
  const bins = new Map<number, number>();
  for (const t of times) if (t >= from) bins.set(Math.floor((t - from) / sliceMs), (bins.get(Math.floor((t - from) / sliceMs)) ?? 0) + 1);
  return Math.max(0, ...bins.values());
}

/** The next message from the backends' process that has `key`. */
function reply<T>(child: ChildProcess, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${key} from the backends' process`)), 30_000);
    const on = (m: Record<string, unknown>): void => {
      if (!(key in m)) return;
      clearTimeout(timer);
      child.off('message', on);
      resolve(m[key] as T);
    };
    child.on('message', on);
  });
}

async function round(paced: boolean): Promise<RoundResult> {
  const child = fork(join(__dirname, 'storm-backends.ts'), [], { execArgv: ['--import', 'tsx'] });
  const urls = await reply<string[]>(child, 'urls');
  const backends = urls.map((url) => ({ url }));
  const balancer = await startBalancer({
    workers: 2,
    readyTimeoutMs: 60_000, // the machine is shared: a busy moment must not end the run
    config: {
      clientLimits: { upgradesPerSecond: 0, maxTunnels: 0 }, // the storm comes from many addresses; here all are 127.0.0.1
      pools: { chat: { maxUpgradesPerSecond: paced ? RATE : 0, upgradeQueueTimeout: values.queue, backends } },
      routes: [{ path: '/', pool: 'chat' }],
    },
  });
  const clients = new Set<TestClient>();
  let stopping = false;
  try {
    for (let i = 0; i < TUNNELS; i += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, TUNNELS - i) }, () => connectRetrying(balancer.url('/chat'), () => stopping)));
      for (const c of batch) clients.add(c);
    }
    let back = 0;
    let refused = 0;
    for (const c of clients) {
      void c.closed.then(async (info) => {
        if (info.code !== 1012 || stopping) return;
        const again = await connectRetrying(balancer.url('/chat'), () => stopping, () => refused++);
        clients.add(again);
        back++;
      });
    }
    const report = async (): Promise<number[][]> => {
      const answer = reply<number[][]>(child, 'upgradesAt');
      child.send({ report: true });
      return answer;
    };
    const moved = (await report())[2].length; // every tunnel on backend 2 is one it accepted
    const killed = reply<number>(child, 'killedAt');
    child.send({ kill: 2 });
    const killedAt = await killed;
    const deadline = Date.now() + ROUND_DEADLINE_MS;
    while (back < moved) {
      if (Date.now() > deadline) throw new Error(`${back} of ${moved} clients back within ${ROUND_DEADLINE_MS / 1000} s`);
      await delay(20);
    }
    const backMs = Date.now() - killedAt;
    const upgradesAt = await report();
    return {
      peakPerSecond: [0, 1].map((i) => peak(upgradesAt[i], killedAt, 1000)),
      peakPer100ms: [0, 1].map((i) => peak(upgradesAt[i], killedAt, 100) * 10),
      backMs,
      moved,
      refused,
    };
  } finally {
    stopping = true;
    for (const c of clients) c.terminate();
    await balancer.stop('SIGKILL', 5000);
    child.kill('SIGKILL');
  }
}

/** Connects; after a 503 waits its Retry-After plus up to a second of jitter, then tries again. */
async function connectRetrying(url: string, stopping: () => boolean, onRefused?: () => void): Promise<TestClient> {
  for (;;) {
    try {
      return await connect(url, { timeoutMs: 30_000, perMessageDeflate: false });
    } catch (err) {
      if (stopping() || !(err instanceof UpgradeRejected) || err.status !== 503) throw err;
      onRefused?.();
      await delay(Number(err.headers['retry-after'] ?? 1) * 1000 + Math.random() * 1000);
    }
  }
}

async function main(): Promise<void> {
  const results: Record<'paced' | 'unpaced', RoundResult[]> = { paced: [], unpaced: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 === 0 ? (['unpaced', 'paced'] as const) : (['paced', 'unpaced'] as const)) {
      const res = await round(mode === 'paced');
      results[mode].push(res);
      process.stdout.write(
        `round ${r + 1} ${mode}: ${res.moved} clients moved; peak upgrades/s at the survivors ${res.peakPerSecond.join(', ')} (per 100 ms x 10: ${res.peakPer100ms.join(', ')}); all back in ${(res.backMs / 1000).toFixed(2)} s; ${res.refused} refused with 503\n`,
      );
    }
  }
  process.stdout.write(`\n${TUNNELS} tunnels on 3 backends, one killed; medians of ${rounds} rounds (maxUpgradesPerSecond ${RATE}, upgradeQueueTimeout ${values.queue} when paced)\n\n`);
  process.stdout.write('| | clients moved | peak upgrades in 1 s, per survivor | peak rate over 100 ms, per survivor | all back after | 503s (then Retry-After) |\n|---|---|---|---|---|---|\n');
  for (const mode of ['unpaced', 'paced'] as const) {
    const rs = results[mode];
    const perSecond = rs.flatMap((r) => r.peakPerSecond);
    const per100 = rs.flatMap((r) => r.peakPer100ms);
    process.stdout.write(
      `| ${mode === 'paced' ? `maxUpgradesPerSecond ${RATE}` : 'unpaced'} | ${median(rs.map((r) => r.moved))} | ${median(perSecond)} (max ${Math.max(...perSecond)}) | ${median(per100)}/s (max ${Math.max(...per100)}/s) | ${(median(rs.map((r) => r.backMs)) / 1000).toFixed(2)} s | ${median(rs.map((r) => r.refused))} |\n`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`storm: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
