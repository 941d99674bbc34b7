// How stale the per-client counts are (docs: "Per-client limits"): a client reaches clientLimits.
// maxTunnels, then keeps asking; the time until every further upgrade is refused is how long the
// other workers (machine scope: 2 workers) or the other machine (fleet scope: 2 balancers sharing a
// redis-server) went on deciding on older counts. Loopback only, a few seconds a round.
//
//   node --import tsx bench/client-limits.ts [--rounds 5]
import { parseArgs } from 'node:util';
import { startBalancer, type Balancer } from '../test/helpers/balancer';
import { startEchoBackend } from '../test/helpers/backends';
import { startRedis } from '../test/helpers/redis';
import { connect, UpgradeRejected, type TestClient } from '../test/helpers/ws-client';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const rounds = Number(values.rounds);
const CAP = 4;
/** Refusals in a row that mean every worker (or machine) refuses. */
const IN_A_ROW = 12;

/** ms from the cap being reached (on `holder`) until `asker` refuses IN_A_ROW in a row; upgrades that pass are closed again. */
async function staleness(holder: Balancer, asker: Balancer, ip: string): Promise<{ ms: number; passed: number }> {
  const held: TestClient[] = [];
  for (let i = 0; i < CAP; i++) held.push(await connect(holder.url('/'), { localAddress: ip }));
  const reached = performance.now();
  let passed = 0;
  let refusals = 0;
  let firstOfRow = 0;
  while (refusals < IN_A_ROW) {
    const at = performance.now();
    try {
      const c = await connect(asker.url('/'), { localAddress: ip });
      passed++;
      refusals = 0;
      await c.close(1000, '', 2000);
    } catch (err) {
      if (!(err instanceof UpgradeRejected)) throw err;
      if (refusals++ === 0) firstOfRow = at;
    }
    if (at - reached > 10_000) throw new Error('no convergence within 10 s');
  }
  await Promise.all(held.map((c) => c.close(1000, '', 2000)));
  return { ms: firstOfRow - reached, passed };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const backend = await startEchoBackend();
  const redis = await startRedis();
  const pools = { p: { backends: [{ url: backend.url }] } };
  const routes = [{ path: '/', pool: 'p' }];
  const machine = await startBalancer({ workers: 2, config: { clientLimits: { maxTunnels: CAP }, pools, routes } });
  const fleetConfig = { clientLimits: { maxTunnels: CAP, scope: 'fleet' }, redis: { url: redis.url }, pools, routes };
  const a = await startBalancer({ workers: 1, config: fleetConfig });
  const b = await startBalancer({ workers: 1, config: fleetConfig });
  const results: Record<string, { ms: number[]; passed: number[] }> = { 'machine (2 workers)': { ms: [], passed: [] }, 'fleet (2 machines, Redis)': { ms: [], passed: [] } };
  try {
    // Alternating rounds; each round a fresh client address, so no state carries over.
    for (let r = 0; r < rounds; r++) {
      const m = await staleness(machine, machine, `127.0.1.${r + 1}`);
      results['machine (2 workers)'].ms.push(m.ms);
      results['machine (2 workers)'].passed.push(m.passed);
      const f = await staleness(a, b, `127.0.2.${r + 1}`);
      results['fleet (2 machines, Redis)'].ms.push(f.ms);
      results['fleet (2 machines, Redis)'].passed.push(f.passed);
    }
  } finally {
    await Promise.all([machine.stop(), a.stop(), b.stop()]);
    await backend.close();
    await redis.stop();
  }
  console.log(`syncInterval 100 ms (default), maxTunnels ${CAP}, ${rounds} rounds`);
  console.log('| scope | until every upgrade is refused, median (min-max) | upgrades passed over the cap, median (max) |');
  console.log('|---|---|---|');
  for (const [scope, { ms, passed }] of Object.entries(results)) {
    console.log(`| ${scope} | ${median(ms).toFixed(0)} ms (${Math.min(...ms).toFixed(0)}-${Math.max(...ms).toFixed(0)}) | ${median(passed)} (${Math.max(...passed)}) |`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
