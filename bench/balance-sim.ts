// What each balancing algorithm does to a chat fleet, simulated (bench/fleet-sim.ts: 20 balancers
// deciding on fleet counts one 100 ms sync old, the product's own policies, seeded randomness, a
// simulated clock). Prints one markdown table, the same on every run:
//   - imbalance (max/mean tunnels) and rooms split, 3,000 clients in 300 Zipf rooms (s = 1.1), 10 backends;
//   - keys moved when one of 10 backends is removed or an 11th added (every client placed again);
//   - a reconnect storm: one of 3 backends dies, its ~1,000 clients reconnect within a second;
//   - the time to balance after scale-out (3 -> 4 backends) from churn alone, and with live
//     rebalancing (src/load-balancer/rebalance.ts: maxSkew 1.2, 50 closes a second, the fleet's
//     rounds; under hash only keys whose home changed), with the tunnels it closed;
//   - a burst onto a backend that just came back, with slow start off and on.
// Run: npm run sim:balance [-- --seed N]
import { FleetSim, SIM_EPOCH, seeded, zipf, type SimClient } from './fleet-sim';
import { hashKeyOf, type BalancingConfig } from '../src/load-balancer';
import { homeOf, isCandidate, roundBudget, ROUND_CLOSE_WINDOW_MS, ROUND_MS, sheds, type RebalanceSettings } from '../src/load-balancer/rebalance';

const BALANCERS = 20;
const SYNC_MS = 100;
const CLIENTS = 3000;
const ROOMS = 300;
const ZIPF_S = 1.1;
/** Clients arrive over this long at the start (3,000 in 10 s: 30 per sync interval across the fleet). */
const ARRIVAL_MS = 10_000;
/** Reconnecting clients come back within this long (a client's first retry, jittered). */
const RECONNECT_JITTER_MS = 1000;
/** Churn after scale-out: each tunnel lives an exponential time with this mean, then its client reconnects. */
const MEAN_TUNNEL_LIFE_MS = 30 * 60_000;
const SCALE_OUT_LIMIT_MS = 4 * 3600_000;
const SKEW = 1.2;
/** The live rebalancer's settings in the scale-out (the schema's defaults but a shorter minTunnelAge: the clients are 10-20 s old). */
const REBALANCE: RebalanceSettings = { maxSkew: SKEW, closesPerSecond: 50, minTunnelAge: 5000 };

interface Row {
  label: string;
  pool: BalancingConfig;
  /** What the clients' keys are: their room, their own address, or nothing. */
  key: 'room' | 'client' | 'none';
}

const base = { herdingGuard: 'p2c', balanceFactor: 0, slowStart: 0 } as const;
const ROWS: Row[] = [
  { label: 'least-connections (p2c)', pool: { ...base, algorithm: 'least-connections' }, key: 'none' },
  { label: 'least-connections (herdingGuard off)', pool: { ...base, algorithm: 'least-connections', herdingGuard: 'off' }, key: 'none' },
  { label: 'round-robin', pool: { ...base, algorithm: 'round-robin' }, key: 'none' },
  { label: 'ip-hash (client address)', pool: { ...base, algorithm: 'ip-hash' }, key: 'client' },
  { label: 'hash on the room', pool: { ...base, algorithm: 'hash' }, key: 'room' },
  { label: 'hash on the room, balanceFactor 1.25', pool: { ...base, algorithm: 'hash', balanceFactor: 1.25 }, key: 'room' },
  { label: 'hash on the room, balanceFactor 1.5', pool: { ...base, algorithm: 'hash', balanceFactor: 1.5 }, key: 'room' },
  { label: 'hash on the room, balanceFactor 2', pool: { ...base, algorithm: 'hash', balanceFactor: 2 }, key: 'room' },
];

const seedArg = process.argv.indexOf('--seed');
const SEED = seedArg > 0 ? Number(process.argv[seedArg + 1]) : 42;

/** The clients: each with its room (Zipf) and the key the row hashes on. */
function makeClients(row: Row): (SimClient & { room: number })[] {
  const draw = zipf(ROOMS, ZIPF_S, seeded(SEED + 1));
  return Array.from({ length: CLIENTS }, (_, i) => {
    const room = draw();
    const key = row.key === 'room' ? `room-${room}` : row.key === 'client' ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` : undefined;
    return { key, room, backend: -1, balancer: -1 };
  });
}

function names(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `10.1.0.${i + 1}:8000`);
}

/** A fleet with the given backends where every client arrived, spread over ARRIVAL_MS. */
function placed(row: Row, backends: readonly string[]): { sim: FleetSim; clients: ReturnType<typeof makeClients> } {
  const sim = new FleetSim({ balancers: BALANCERS, syncMs: SYNC_MS, pool: row.pool, backends, seed: SEED });
  const clients = makeClients(row);
  clients.forEach((c, i) => sim.schedule(SIM_EPOCH + Math.floor((i * ARRIVAL_MS) / CLIENTS), () => sim.connect(c)));
  sim.run(SIM_EPOCH + ARRIVAL_MS + 1000);
  return { sim, clients };
}

/** Share of rooms with two or more members whose members are on more than one backend. */
function roomsSplit(clients: ReturnType<typeof makeClients>): number {
  const on = new Map<number, Set<number>>();
  const members = new Map<number, number>();
  for (const c of clients) {
    on.set(c.room, (on.get(c.room) ?? new Set()).add(c.backend));
    members.set(c.room, (members.get(c.room) ?? 0) + 1);
  }
  const shared = [...members].filter(([, n]) => n >= 2).map(([room]) => room);
  return shared.filter((room) => on.get(room)!.size > 1).length / shared.length;
}

/** Everyone placed again after one backend goes (or one more comes): who lands elsewhere, and who did so needlessly. */
function moved(row: Row, before: readonly string[], after: readonly string[]): { moved: number; needless: number } {
  const a = placed(row, before).clients.map((c) => before[c.backend]);
  const b = placed(row, after).clients.map((c) => after[c.backend]);
  let movedCount = 0;
  let needless = 0;
  a.forEach((name, i) => {
    if (name === b[i]) return;
    movedCount++;
    // Needless: its backend is still there, and it did not go to a newcomer.
    if (after.includes(name) && before.includes(b[i])) needless++;
  });
  return { moved: movedCount / CLIENTS, needless: needless / CLIENTS };
}

/** One of 3 backends dies at 20 s; its clients reconnect within RECONNECT_JITTER_MS. */
function storm(row: Row): { peak: number; after: number } {
  const { sim } = placed(row, names(3));
  const at = SIM_EPOCH + 20_000;
  sim.run(at);
  const orphans = sim.kill(0);
  for (const c of orphans) sim.schedule(at + Math.floor(sim.random() * RECONNECT_JITTER_MS), () => sim.connect(c));
  sim.run(at + 5000);
  return { peak: Math.max(sim.peakUpgradeRate(1, at, at + 5000), sim.peakUpgradeRate(2, at, at + 5000)), after: sim.imbalance() };
}

/**
 * 3 -> 4 backends at 20 s, then churn: every tunnel ends after an exponential life and its client
 * reconnects. With `rebalance`, a live rebalancer runs from 1 s after the scale-out: each round it
 * sheds what the policy says from the backends above the skew, at the fleet's rate, spread over the
 * round's close window, and the closed clients reconnect within RECONNECT_JITTER_MS. Returns the ms
 * until the newcomer holds mean / SKEW and until max/mean <= SKEW (undefined: not within
 * SCALE_OUT_LIMIT_MS), max/mean at the end, the tunnels the rebalancer closed and whether it closed
 * any client twice.
 */
function scaleOut(row: Row, rebalance: boolean): { filled: number | undefined; balanced: number | undefined; last: number; closed: number; twice: number } {
  const { sim, clients } = placed(row, names(3));
  const life = seeded(SEED + 2);
  const at = SIM_EPOCH + 20_000;
  const openedAt = new Map<SimClient, number>(clients.map((c) => [c, SIM_EPOCH + ARRIVAL_MS]));
  // The client comes back within the jitter; after churn its new tunnel's life starts then.
  const reconnect = (c: SimClient, thenLive: boolean): void => {
    sim.schedule(sim.now + Math.floor(sim.random() * RECONNECT_JITTER_MS), () => {
      sim.connect(c);
      openedAt.set(c, sim.now);
      if (thenLive) live(c);
    });
  };
  const live = (c: SimClient): void => {
    sim.schedule(sim.now + Math.max(1, Math.round(-Math.log(1 - life()) * MEAN_TUNNEL_LIFE_MS)), () => {
      if (c.backend < 0) return live(c); // closed by the rebalancer, reconnecting: its life goes on
      sim.disconnect(c);
      reconnect(c, true);
    });
  };
  sim.run(at);
  for (const c of clients) live(c);
  const newcomer = sim.addBackend('10.1.0.99:8000', sim.now);
  let filledAt: number | undefined;
  let balancedAt: number | undefined;
  let closed = 0;
  const closedOnce = new Set<SimClient>();
  let twice = 0;
  const hashing = hashKeyOf({ algorithm: row.pool.algorithm, hashKey: 'room' }) !== undefined;
  const startedAt = at + 1000;
  const round = (): void => {
    const loads = sim.backends.map((b, i) => ({ key: String(i), weight: b.weight, tunnels: b.tunnels }));
    const shed = sheds(loads, REBALANCE.maxSkew);
    if (shed.size === 0) return;
    const members = sim.backends.map((b) => ({ name: b.name, weight: b.weight, active: b.tunnels, connections: b.tunnels }));
    let budget = roundBudget(REBALANCE.closesPerSecond);
    const picked: SimClient[] = [];
    for (const [key, n] of shed) {
      const index = Number(key);
      let take = Math.min(n, budget);
      for (const c of sim.backends[index].clients) {
        if (take === 0) break;
        if (!isCandidate(openedAt.get(c)!, startedAt, sim.now, REBALANCE.minTunnelAge)) continue;
        if (hashing && c.key !== undefined && homeOf(c.key, members, row.pool.balanceFactor) === sim.backends[index].name) continue;
        picked.push(c);
        take--;
        budget--;
      }
    }
    picked.forEach((c, i) => {
      sim.schedule(sim.now + Math.floor(((i + sim.random()) * ROUND_CLOSE_WINDOW_MS) / picked.length), () => {
        if (c.backend < 0) return;
        if (closedOnce.has(c)) twice++;
        closedOnce.add(c);
        closed++;
        sim.disconnect(c);
        reconnect(c, false);
      });
    });
  };
  const check = (): void => {
    if (sim.backends[newcomer].tunnels >= CLIENTS / 4 / SKEW) filledAt ??= sim.now;
    if (sim.imbalance() <= SKEW) balancedAt ??= sim.now;
    if (rebalance && sim.now >= startedAt && balancedAt === undefined) round();
    if ((filledAt === undefined || balancedAt === undefined) && sim.now < at + SCALE_OUT_LIMIT_MS) sim.schedule(sim.now + ROUND_MS, check);
  };
  sim.schedule(at + ROUND_MS, check);
  sim.run(at + SCALE_OUT_LIMIT_MS);
  const since = (t: number | undefined): number | undefined => (t === undefined ? undefined : t - at);
  return { filled: since(filledAt), balanced: since(balancedAt), last: sim.imbalance(), closed, twice };
}

/** 1,000 new clients in 2 s while one of 3 backends (the others at 1,000 tunnels) has just come back: its share. */
function burstOnReturn(row: Row, slowStart: number): number {
  const sim = new FleetSim({ balancers: BALANCERS, syncMs: SYNC_MS, pool: { ...row.pool, slowStart }, backends: names(2), seed: SEED });
  sim.preload(0, 1000);
  sim.preload(1, 1000);
  sim.run(SIM_EPOCH + 1000);
  const back = sim.addBackend('10.1.0.3:8000', sim.now);
  const clients = makeClients(row).slice(0, 1000);
  clients.forEach((c, i) => sim.schedule(sim.now + Math.floor(i * 2), () => sim.connect(c)));
  sim.run(sim.now + 3000);
  return clients.filter((c) => c.backend === back).length / clients.length;
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const duration = (ms: number | undefined): string => (ms === undefined ? 'never' : ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`);

const lines: string[] = [
  `| algorithm | max/mean | rooms split | moved: 1 of 10 removed (needlessly) | moved: 11th added (needlessly) | storm: peak upgrades/s on a survivor | storm: max/mean after | scale-out: newcomer at mean/${SKEW}; max/mean ≤ ${SKEW} | scale-out with rebalancing: max/mean ≤ ${SKEW}; tunnels closed | returning backend's share of a burst: slowStart off → 30 s |`,
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const row of ROWS) {
  const { sim, clients } = placed(row, names(10));
  const removed = moved(row, names(10), names(9));
  const added = moved(row, names(10), names(11));
  const s = storm(row);
  const out = scaleOut(row, false);
  const re = scaleOut(row, true);
  if (re.twice > 0) throw new Error(`${row.label}: the rebalancer closed ${re.twice} clients twice`);
  const burst = [burstOnReturn(row, 0), burstOnReturn(row, 30_000)];
  lines.push(
    `| ${row.label} | ${sim.imbalance().toFixed(2)} | ${pct(roomsSplit(clients))} | ${pct(removed.moved)} (${pct(removed.needless)}) | ${pct(added.moved)} (${pct(added.needless)}) | ${Math.round(s.peak)} | ${s.after.toFixed(2)} | ${duration(out.filled)}; ${out.balanced === undefined ? `never (${out.last.toFixed(2)} at ${SCALE_OUT_LIMIT_MS / 3600_000} h)` : duration(out.balanced)} | ${re.balanced === undefined ? `never (${re.last.toFixed(2)})` : duration(re.balanced)}; ${re.closed} | ${pct(burst[0])} → ${pct(burst[1])} |`,
  );
}

process.stdout.write(
  [
    `${BALANCERS} balancers, fleet counts synced every ${SYNC_MS} ms; ${CLIENTS} clients in ${ROOMS} rooms (Zipf s = ${ZIPF_S}) arriving over ${ARRIVAL_MS / 1000} s; seed ${SEED}.`,
    `max/mean and rooms split: 10 backends. Moved: every client placed again after the change. Storm: one of 3 backends dies, its clients reconnect within ${RECONNECT_JITTER_MS / 1000} s; peak over ${100} ms windows.`,
    `Scale-out: 3 -> 4 backends; without rebalancing balance comes from churn alone (tunnels live ${MEAN_TUNNEL_LIFE_MS / 60_000} min on average, then reconnect); with no churn: never.`,
    `With rebalancing: maxSkew ${REBALANCE.maxSkew}, ${REBALANCE.closesPerSecond} closes/s for the fleet, from 1 s after the scale-out; under hash only keys whose home changed are closed; no client is closed twice.`,
    `Burst: 1,000 new clients in 2 s, the other two backends at 1,000 tunnels each.`,
    '',
    ...lines,
    '',
  ].join('\n'),
);
