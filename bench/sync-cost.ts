// What one machine's count sync costs Redis, in instructions: a redis-server under callgrind, a pool
// of N machines' shares written in full, then syncs of random machines each changing a few backends,
// counted from a zeroed counter to a dump. Instructions do not move with the machine's load, where
// Redis CPU seconds on a shared two-core box move by a third; fleet-scale.ts gives the seconds.
// `--legacy <commit>` prices that commit's sync script (the per-pool totals design, with its totals
// read inside the script) the same way, for before/after.
//
//   node --import tsx bench/sync-cost.ts                                     # 10, 100, 500 machines x 100 backends, 8 changed
//   node --import tsx bench/sync-cost.ts --legacy fec079d --machines 500     # before/after
//   node --import tsx bench/sync-cost.ts --quick                             # one short run (the harness check)
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import Redis from 'ioredis';
import { accepts, freePort } from '../test/helpers/ports';
import { waitFor } from '../test/helpers/wait';
import { SYNC_LUA } from '../src/state/redis-scripts';

const program = new Command()
  .option('--machines <list>', 'machines sharing the pool', '10,100,500')
  .option('--backends <n>', 'backends in the pool', Number, 100)
  .option('--changed <n>', 'backends whose count changed since a machine\'s last sync', Number, 8)
  .option('--syncs <n>', 'syncs counted per run', Number, 1000)
  .option('--legacy <commit>', 'also price the sync script of this commit')
  .option('--quick', 'one run of 10 machines, 100 syncs')
  .parse();
const opts = program.opts<{ machines: string; backends: number; changed: number; syncs: number; legacy?: string; quick?: boolean }>();
if (opts.quick) Object.assign(opts, { machines: '10', syncs: 100 });

type Design = 'current' | 'legacy';
type Scripted = Redis & { syncPool(...args: (string | number)[]): Promise<unknown> };
const P = 'switchyard:{bench:chat}:';

/** The legacy commit's SYNC_LUA, from its source file. */
function legacyScript(commit: string): string {
  const source = execFileSync('git', ['show', `${commit}:src/state/redis-scripts.ts`], { cwd: join(__dirname, '..'), encoding: 'utf8' });
  const m = /export const SYNC_LUA = `([\s\S]*?)`;/.exec(source);
  if (m === null) throw new Error(`${commit}: no SYNC_LUA in src/state/redis-scripts.ts`);
  return m[1];
}

/** Total instructions of the dump callgrind writes for `pid` on `callgrind_control -d`. */
async function dumped(dir: string, seen: Set<string>): Promise<number> {
  let total = 0;
  await waitFor(
    () => {
      for (const f of readdirSync(dir).filter((name) => /\.\d+$/.test(name))) {
        if (seen.has(f)) continue;
        const m = /^totals: (\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
        if (m === null) continue;
        seen.add(f);
        total = Number(m[1]);
        return true;
      }
      return false;
    },
    60_000,
    'the callgrind dump',
  );
  return total;
}

async function run(design: Design, script: string, machines: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'sync-cost-'));
  const port = await freePort();
  const redis = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${dir}/cg.%p`, 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const client = new Redis(port, '127.0.0.1', { enableAutoPipelining: true, lazyConnect: true });
  client.on('error', () => undefined);
  try {
    await waitFor(() => accepts(port), 60_000, 'redis-server under valgrind');
    await client.connect();
    client.defineCommand('syncPool', { numberOfKeys: 4, lua: script });
    const backends = Array.from({ length: opts.backends }, (_, i) => `10.0.${i >> 8}.${i & 255}:9000`);
    const seq = new Array<number>(machines).fill(0);
    const counts = Array.from({ length: machines }, () => backends.map(() => 20));
    const sync = (m: number, mode: string, args: (string | number)[]): Promise<unknown> => {
      const s = ++seq[m];
      const call = (client as unknown as Scripted).syncPool(`${P}machines`, `${P}totals`, `${P}conns:m${m}`, `${P}reconcile`, `m${m}`, 3_600_000, mode, 0, `${P}conns:`, 3_600_000, s, s - 1, ...args);
      // The current design reads the totals with a plain HGETALL behind the script, in the same round trip.
      return design === 'current' && mode === 'delta' ? Promise.all([call, client.hgetall(`${P}totals`)]) : call;
    };
    for (let m = 0; m < machines; m++) await sync(m, 'full', backends.flatMap((b, i) => [b, counts[m][i]]));
    const seen = new Set<string>();
    execFileSync('callgrind_control', ['-z', String(redis.pid)], { stdio: 'ignore' });
    let rnd = 12345; // a fixed sequence: both designs see the same syncs
    const random = (n: number): number => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff), rnd % n);
    let left = opts.syncs;
    const worker = async (): Promise<void> => {
      while (left-- > 0) {
        const m = random(machines);
        const picked = new Set<number>();
        while (picked.size < Math.min(opts.changed, opts.backends)) picked.add(random(opts.backends));
        const args: (string | number)[] = [];
        for (const i of picked) {
          const before = counts[m][i];
          const now = (counts[m][i] = Math.max(0, before + (random(2) === 0 ? 1 : -1)));
          // current: backend, tunnels, tunnels before; legacy: backend, tunnels
          if (design === 'current') args.push(backends[i], now, before);
          else args.push(backends[i], now);
        }
        await sync(m, 'delta', args);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    execFileSync('callgrind_control', ['-d', String(redis.pid)], { stdio: 'ignore' });
    return (await dumped(dir, seen)) / opts.syncs;
  } finally {
    client.disconnect();
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const designs: [Design, string][] = [['current', SYNC_LUA]];
  if (opts.legacy !== undefined) designs.push(['legacy', legacyScript(opts.legacy)]);
  console.log(`| design | machines | backends | changed per sync | Redis instructions per sync |`);
  console.log(`|---|---|---|---|---|`);
  for (const machines of opts.machines.split(',').map(Number)) {
    for (const [design, script] of designs) {
      const perSync = await run(design, script, machines);
      console.log(`| ${design === 'legacy' ? `legacy (${opts.legacy})` : 'current'} | ${machines} | ${opts.backends} | ${opts.changed} | ${Math.round(perSync / 1000)} k |`);
    }
  }
}

void main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
