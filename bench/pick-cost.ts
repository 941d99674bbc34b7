// The cost of one pick (Pool.pick: filter the eligible backends, run the policy) and of taking a
// request's hash key (Pool.keyOf), in ns, per algorithm and pool size. `--root DIR` measures another
// checkout's Pool (e.g. before a change; algorithms it does not know are skipped).
// Run: node --import tsx bench/pick-cost.ts [--root DIR] [--rounds 5]
import { resolve } from 'node:path';

interface PoolLike {
  backends: readonly { active: number; eligibleSince?: number }[];
  pick(key: string | undefined): unknown;
  keyOf?(request: unknown, ip: string): string | undefined;
}

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const root = resolve(arg('--root', resolve(__dirname, '..')));
const rounds = Number(arg('--rounds', '5'));
const PICKS = 500_000;

/* eslint-disable @typescript-eslint/no-require-imports -- the checkout to measure is chosen at run time */
const { configSchema } = require(`${root}/src/config/schema`) as { configSchema: { safeParse(v: unknown): { success: boolean; data?: { pools: Record<string, unknown> } } } };
const { Pool } = require(`${root}/src/upstream/pool`) as { Pool: new (name: string, config: unknown) => PoolLike };
/* eslint-enable @typescript-eslint/no-require-imports */

const CASES: [string, Record<string, unknown>][] = [
  ['least-connections (p2c)', { algorithm: 'least-connections' }],
  ['least-connections (off)', { algorithm: 'least-connections', herdingGuard: 'off' }],
  ['round-robin', { algorithm: 'round-robin' }],
  ['ip-hash', { algorithm: 'ip-hash' }],
  ['hash path:2', { algorithm: 'hash', hashKey: 'path:2' }],
  ['hash path:2, balanceFactor 1.25', { algorithm: 'hash', hashKey: 'path:2', balanceFactor: 1.25 }],
  ['least-connections, slowStart (one ramping)', { algorithm: 'least-connections', slowStart: '30s' }],
  ['hash path:2, balanceFactor 1.25, slowStart (one ramping)', { algorithm: 'hash', hashKey: 'path:2', balanceFactor: 1.25, slowStart: '30s' }],
];

const keys = Array.from({ length: 1024 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function measure(pool: PoolLike): number {
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let sink = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < PICKS; i++) if (pool.pick(keys[i & 1023]) !== undefined) sink++;
    samples.push(Number(process.hrtime.bigint() - t0) / PICKS);
    if (sink !== PICKS) throw new Error('a pick found no backend');
  }
  return median(samples);
}

const rows: string[] = [`root ${root}; ${PICKS} picks x ${rounds} rounds, median ns per pick`, '', '| pool | 3 backends | 10 backends |', '|---|---|---|'];
for (const [label, settings] of CASES) {
  const cells: string[] = [];
  for (const n of [3, 10]) {
    const backends = Array.from({ length: n }, (_, i) => ({ url: `ws://10.1.0.${i + 1}:8000` }));
    const parsed = configSchema.safeParse({ pools: { p: { ...settings, backends } }, routes: [{ pool: 'p' }] });
    if (!parsed.success) {
      cells.push('-');
      continue;
    }
    const pool = new Pool('p', parsed.data!.pools.p);
    pool.backends.forEach((b, i) => (b.active = 10 + i));
    if (label.includes('ramping')) pool.backends[0].eligibleSince = Date.now();
    cells.push(measure(pool).toFixed(0));
  }
  rows.push(`| ${label} | ${cells.join(' | ')} |`);
}

// Taking the key from a captured request, once per upgrade.
const request = { method: 'GET', url: '/rooms/4242/ws?user=u1&room=4242', peerIp: '203.0.113.9', headers: [['host', 'chat.example'], ['cookie', 'session=abc; room=4242'], ['x-room', '4242']], secure: false };
const keyRows: string[] = [];
for (const hashKey of ['ip', 'ip/24', 'path:2', 'query:room', 'header:x-room', 'cookie:room']) {
  const parsed = configSchema.safeParse({ pools: { p: { algorithm: 'hash', hashKey, backends: [{ url: 'ws://10.1.0.1:8000' }] } }, routes: [{ pool: 'p' }] });
  if (!parsed.success) continue;
  const pool = new Pool('p', parsed.data!.pools.p);
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let sink = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < PICKS; i++) sink += pool.keyOf!(request, '203.0.113.9')!.length;
    samples.push(Number(process.hrtime.bigint() - t0) / PICKS);
    if (sink === 0) throw new Error('no key');
  }
  keyRows.push(`| ${hashKey} | ${median(samples).toFixed(0)} |`);
}
if (keyRows.length) rows.push('', '| hashKey | ns per keyOf |', '|---|---|', ...keyRows);
process.stdout.write(rows.join('\n') + '\n');
