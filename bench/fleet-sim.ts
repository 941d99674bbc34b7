// A deterministic simulation of a fleet of balancers sharing one pool, driving the product's own
// balancing policies (src/load-balancer, built by createLoadBalancer). Each balancer decides as a
// worker does: on its own tunnels exactly and on everyone else's as of the last sync (every
// `syncMs`), so balancers deciding at once on stale counts can herd. Time and randomness are the
// simulation's own (seeded), so every run gives the same numbers.
//
// Events (client arrivals, closes, a backend dying or joining, and later live rebalancing or upgrade
// pacing) are functions scheduled at a simulated time; run() executes them in order and takes each
// sync at its boundary first. Used by bench/balance-sim.ts and test/load-balancer/herding.test.ts.
import { createLoadBalancer, type BalancingConfig } from '../src/load-balancer';
import type { LoadBalancer } from '../src/load-balancer/load-balancer';
import { seeded } from '../test/helpers/seeded';

export { seeded };

/** Ranks 1..n with P(k) proportional to 1/k^s (Zipf), drawn with `random`. */
export function zipf(n: number, s: number, random: () => number): () => number {
  const cdf: number[] = [];
  let total = 0;
  for (let k = 1; k <= n; k++) cdf.push((total += 1 / k ** s));
  return () => {
    const u = random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

/** The simulated clock starts here (epoch-like ms), so that eligibleSince 0 keeps its meaning: "since the start". */
export const SIM_EPOCH = 1_000_000;

export interface SimClient {
  /** Its hash key (a room); undefined: none. */
  key: string | undefined;
  /** The backend holding its tunnel, or -1. */
  backend: number;
  /** The balancer that opened its tunnel (which counts it exactly), or -1. */
  balancer: number;
}

interface SimBackend {
  name: string;
  weight: number;
  up: boolean;
  eligibleSince: number;
  /** Live tunnels (the truth). */
  tunnels: number;
  clients: Set<SimClient>;
  /** Upgrades per `bucketMs` bucket (bucket index -> count). */
  upgrades: Map<number, number>;
}

interface Candidate {
  name: string;
  weight: number;
  active: number;
  connections: number;
  eligibleSince: number;
  index: number;
}

interface Balancer {
  policy: LoadBalancer;
  /** Its own live tunnels per backend (exact). */
  own: number[];
  /** Everyone else's per backend, as of the last sync. */
  elsewhere: number[];
  candidates: Candidate[];
}

export interface FleetOptions {
  balancers: number;
  /** ms between syncs of the fleet counts (the product's redis.syncInterval, 100 by default). */
  syncMs: number;
  pool: BalancingConfig;
  backends: readonly string[];
  seed: number;
  /** Width of the upgrade-rate buckets, ms. */
  bucketMs?: number;
}

interface Scheduled {
  at: number;
  seq: number;
  run: () => void;
}

export class FleetSim {
  now = SIM_EPOCH;
  readonly backends: SimBackend[] = [];
  /** The simulation's own randomness (arrivals, which balancer a client reaches); the policies have theirs. */
  readonly random: () => number;
  readonly bucketMs: number;
  private readonly balancers: Balancer[];
  private readonly syncMs: number;
  private nextSync = SIM_EPOCH;
  private readonly queue: Scheduled[] = [];
  private seq = 0;

  constructor(options: FleetOptions) {
    this.random = seeded(options.seed);
    this.syncMs = options.syncMs;
    this.bucketMs = options.bucketMs ?? 100;
    this.balancers = Array.from({ length: options.balancers }, (_, b) => ({
      policy: createLoadBalancer(options.pool, seeded(options.seed * 1000 + b)),
      own: [],
      elsewhere: [],
      candidates: [],
    }));
    for (const name of options.backends) this.addBackend(name, 0);
  }

  /** A backend joins (eligibleSince: now for one added at run time, 0 for one there from the start). */
  addBackend(name: string, eligibleSince = this.now, weight = 1): number {
    const index = this.backends.length;
    this.backends.push({ name, weight, up: true, eligibleSince, tunnels: 0, clients: new Set(), upgrades: new Map() });
    for (const b of this.balancers) {
      b.own.push(0);
      b.elsewhere.push(0);
      b.candidates.push({ name, weight, active: 0, connections: 0, eligibleSince, index });
    }
    return index;
  }

  /** `count` tunnels on `backend` opened by balancers outside the simulation (seen by all at the next sync). */
  preload(backend: number, count: number): void {
    this.backends[backend].tunnels += count;
  }

  schedule(at: number, run: () => void): void {
    const q = this.queue;
    q.push({ at, seq: this.seq++, run });
    // sift up (a binary min-heap on (at, seq))
    let i = q.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(q[i], q[parent])) break;
      [q[i], q[parent]] = [q[parent], q[i]];
      i = parent;
    }
  }

  /** Runs every event scheduled up to `until` (inclusive), syncing at each boundary on the way. */
  run(until: number): void {
    for (;;) {
      const next = this.queue[0];
      const t = next === undefined || next.at > until ? until : next.at;
      while (this.nextSync <= t) {
        this.now = this.nextSync;
        this.sync();
        this.nextSync += this.syncMs;
      }
      this.now = t;
      if (next === undefined || next.at > until) return;
      this.pop().run();
    }
  }

  /** Opens a tunnel for `client` through balancer `balancer` (random when omitted); returns the backend, -1 when none is up. */
  connect(client: SimClient, balancer = Math.floor(this.random() * this.balancers.length)): number {
    const b = this.balancers[balancer];
    const candidates: Candidate[] = [];
    for (const c of b.candidates) {
      const backend = this.backends[c.index];
      if (!backend.up) continue;
      c.active = b.own[c.index];
      c.connections = b.own[c.index] + b.elsewhere[c.index];
      c.eligibleSince = backend.eligibleSince;
      candidates.push(c);
    }
    if (candidates.length === 0) return -1;
    const index = candidates.length === 1 ? candidates[0].index : b.policy.pick(candidates, client.key, this.now).index;
    const backend = this.backends[index];
    b.own[index]++;
    backend.tunnels++;
    backend.clients.add(client);
    const bucket = Math.floor((this.now - SIM_EPOCH) / this.bucketMs);
    backend.upgrades.set(bucket, (backend.upgrades.get(bucket) ?? 0) + 1);
    client.backend = index;
    client.balancer = balancer;
    return index;
  }

  /** The client's tunnel closes (its balancer sees that at once, the others at the next sync). */
  disconnect(client: SimClient): void {
    if (client.backend < 0) return;
    const backend = this.backends[client.backend];
    backend.tunnels--;
    backend.clients.delete(client);
    this.balancers[client.balancer].own[client.backend]--;
    client.backend = client.balancer = -1;
  }

  /** The backend dies: its tunnels drop and every balancer stops picking it. Returns its clients. */
  kill(index: number): SimClient[] {
    const backend = this.backends[index];
    const clients = [...backend.clients];
    for (const c of clients) this.disconnect(c);
    backend.tunnels = 0; // preloaded tunnels too
    backend.up = false;
    return clients;
  }

  /** Live tunnels per backend that is up. */
  loads(): number[] {
    return this.backends.filter((b) => b.up).map((b) => b.tunnels);
  }

  /** max/mean of loads(). */
  imbalance(): number {
    const loads = this.loads();
    const mean = loads.reduce((x, y) => x + y, 0) / loads.length;
    return Math.max(...loads) / mean;
  }

  /** The highest upgrade rate (per second) one backend saw in any bucket from `from` to `to` (sim ms). */
  peakUpgradeRate(index: number, from: number, to: number): number {
    let peak = 0;
    for (let bucket = Math.floor((from - SIM_EPOCH) / this.bucketMs); bucket * this.bucketMs < to - SIM_EPOCH; bucket++) {
      peak = Math.max(peak, this.backends[index].upgrades.get(bucket) ?? 0);
    }
    return (peak * 1000) / this.bucketMs;
  }

  private sync(): void {
    for (const b of this.balancers) {
      for (let i = 0; i < this.backends.length; i++) b.elsewhere[i] = this.backends[i].tunnels - b.own[i];
    }
  }

  private pop(): Scheduled {
    const q = this.queue;
    const top = q[0];
    const last = q.pop()!;
    if (q.length > 0) {
      q[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < q.length && before(q[l], q[m])) m = l;
        if (r < q.length && before(q[r], q[m])) m = r;
        if (m === i) break;
        [q[i], q[m]] = [q[m], q[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
