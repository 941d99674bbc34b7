// One process of fleet-scale.ts: many simulated balancer machines, each a real RedisState (the
// product's own state module, or an earlier version's with --module) with its own ioredis
// connections, fed churning tunnel counts the way the primary feeds it (one setLocalCounts per sync
// interval). It times every count-sync script from the moment ioredis sends it to its reply, samples
// how old the counts behind a decision are, and on request kills machines and times how long their
// tunnels stay in another machine's view. Driven over IPC by fleet-scale.ts; prints nothing.
import { performance } from 'node:perf_hooks';
import Redis from 'ioredis';
import { seeded } from '../test/helpers/seeded';

export interface MachinesConfig {
  /** Path of the state module (exports RedisState). */
  module: string;
  url: string;
  cluster: boolean;
  clusterName: string;
  /** Machine ids this process runs. */
  ids: string[];
  /** backend keys `pool/host:port`, shared by every machine. */
  keys: string[];
  /** Tunnels each machine holds, spread over the backends. */
  tunnels: number;
  /** Share of a machine's tunnels opened per second (as many close). */
  churn: number;
  syncInterval: number;
  countTtl: number;
  leaseTtl: number;
  reconcileInterval: number;
  seed: number;
}

export type ToMachines =
  | { t: 'start'; config: MachinesConfig }
  | { t: 'window-start' }
  | { t: 'window-end' }
  | { t: 'quiet' }
  | { t: 'kill'; count: number; timeoutMs: number }
  | { t: 'exit' };

export interface WindowStats {
  seconds: number;
  /** Count-sync scripts answered (one per pool per sync). */
  scripts: number;
  /** Sync script round trips, ms: p50, p90, p99, max. */
  sync: [number, number, number, number];
  /** Age of the counts behind a decision, ms: p50, p99. */
  age: [number, number];
  /** Backends whose count changed between two syncs of a machine, on average. */
  changedPerSync: number;
  /** This process's CPU, in cores, and the part of it spent in the kernel. */
  cpuCores: number;
  sysCores: number;
}

export type FromMachines = { t: 'ready'; started: number } | { t: 'window'; stats: WindowStats } | { t: 'killed'; leaveMs: number | null } | { t: 'quiet' } | { t: 'error'; message: string };

interface StateLike {
  start(keys: readonly string[]): Promise<void>;
  close(graceful?: boolean): Promise<void>;
  setLocalCounts(counts: ReadonlyMap<string, number>): void;
  remoteCounts(): ReadonlyMap<string, number>;
  on(event: 'counts', listener: () => void): unknown;
  off(event: 'counts', listener: () => void): unknown;
}

/** The send and reply times (performance.now()) of a machine's last few sync scripts. */
class SyncRing {
  static readonly SIZE = 16;
  readonly sent = new Float64Array(SyncRing.SIZE);
  readonly answered = new Float64Array(SyncRing.SIZE).fill(-1);
  next = 0;
  push(sent: number, answered: number): void {
    this.sent[this.next] = sent;
    this.answered[this.next] = answered;
    this.next = (this.next + 1) % SyncRing.SIZE;
  }
  /** Send time of the latest sync answered before `t` (its counts were in Redis by then), or -1. */
  latestBefore(t: number): number {
    let best = -1;
    for (let i = 0; i < SyncRing.SIZE; i++) if (this.answered[i] >= 0 && this.answered[i] < t && this.sent[i] > best) best = this.sent[i];
    return best;
  }
  /** Send time of the latest answered sync, or -1. */
  latest(): number {
    let best = -1;
    for (let i = 0; i < SyncRing.SIZE; i++) if (this.answered[i] >= 0 && this.sent[i] > best) best = this.sent[i];
    return best;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A growable array of samples. */
class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
  reset(): void {
    this.length = 0;
  }
}

const send = (m: FromMachines): void => void process.send!(m);

async function main(config: MachinesConfig): Promise<void> {
  const random = seeded(config.seed);
  const index = new Map(config.ids.map((id, i) => [id, i] as const));
  const rings = config.ids.map(() => new SyncRing());
  const syncTimes = new Samples();
  const ages = new Samples();
  let scripts = 0;

  // Every count-sync script of every design names the machine's own counts key (`...:conns:<id>`)
  // among its keys: time those from send to reply, per machine.
  const proto = Redis.prototype as unknown as { sendCommand: (this: Redis, command: { name: string; args: unknown[]; promise: Promise<unknown> }, stream?: unknown) => unknown };
  const sendCommand = proto.sendCommand;
  proto.sendCommand = function (command, stream) {
    if (command.name === 'evalsha' || command.name === 'eval') {
      const keys = Number(command.args[1]);
      for (let k = 2; k < 2 + keys; k++) {
        const key = String(command.args[k]);
        const at = key.indexOf(':conns:');
        if (at < 0) continue;
        const machine = index.get(key.slice(at + 7));
        if (machine === undefined) break;
        const sent = performance.now();
        command.promise.then(
          () => {
            const answered = performance.now();
            rings[machine].push(sent, answered);
            syncTimes.push(answered - sent);
            scripts++;
          },
          () => undefined,
        );
        break;
      }
    }
    return sendCommand.call(this, command, stream);
  };

  const { RedisState } = (await import(config.module)) as { RedisState: new (id: string, c: object) => StateLike };
  const redisConfig = {
    url: config.url,
    clusterName: config.clusterName,
    cluster: config.cluster,
    options: {},
    leaseTtl: config.leaseTtl,
    syncInterval: config.syncInterval,
    countTtl: config.countTtl,
    reconcileInterval: config.reconcileInterval,
  };
  const machines = config.ids.map((id) => new RedisState(id, redisConfig));
  const B = config.keys.length;
  const counts = machines.map(() => {
    const c = new Int32Array(B);
    for (let t = 0; t < config.tunnels; t++) c[Math.floor(random() * B)]++;
    return c;
  });
  const local = (i: number): Map<string, number> => {
    const m = new Map<string, number>();
    const c = counts[i];
    for (let b = 0; b < B; b++) if (c[b] > 0) m.set(config.keys[b], c[b]);
    return m;
  };
  const alive = machines.map(() => true);
  for (let i = 0; i < machines.length; i += 25) {
    await Promise.all(
      machines.slice(i, i + 25).map(async (m, k) => {
        m.setLocalCounts(local(i + k));
        await m.start(config.keys);
      }),
    );
  }

  // Churn: every sync interval, each machine opens and closes its share of tunnels on random backends.
  let churning = true;
  let changed = 0;
  let changedSyncs = 0;
  const perTick = (config.churn * config.tunnels * config.syncInterval) / 1000;
  const carry = new Float64Array(machines.length);
  const touched = new Int32Array(B);
  const churnTimer = setInterval(() => {
    if (!churning) return;
    for (let i = 0; i < machines.length; i++) {
      if (!alive[i]) continue;
      carry[i] += perTick;
      const events = Math.floor(carry[i]);
      carry[i] -= events;
      const c = counts[i];
      touched.fill(0);
      for (let e = 0; e < events; e++) {
        const up = Math.floor(random() * B);
        c[up]++;
        touched[up]++;
        let down = Math.floor(random() * B);
        for (let tries = 0; c[down] === 0 && tries < B; tries++) down = (down + 1) % B;
        if (c[down] === 0) continue;
        c[down]--;
        touched[down]--;
      }
      for (let b = 0; b < B; b++) if (touched[b] !== 0) changed++;
      changedSyncs++;
      machines[i].setLocalCounts(local(i));
    }
  }, config.syncInterval);

  // Decisions: at random instants a random machine decides on its view; how old are the counts of
  // the others (sampled) in it? Conservatively, a count is as old as the send of the other machine's
  // latest sync answered before this machine's latest sync was sent.
  const sampler = setInterval(() => {
    const i = Math.floor(random() * machines.length);
    if (!alive[i]) return;
    const now = performance.now();
    const read = rings[i].latest();
    if (read < 0) return;
    for (let s = 0; s < 10; s++) {
      const j = Math.floor(random() * machines.length);
      if (j === i || !alive[j]) continue;
      const written = rings[j].latestBefore(read);
      if (written >= 0) ages.push(now - written);
    }
  }, 5);

  let windowStart = 0;
  let cpuStart = process.cpuUsage();
  process.on('message', (raw: ToMachines) => {
    void (async () => {
      if (raw.t === 'window-start') {
        syncTimes.reset();
        ages.reset();
        scripts = changed = changedSyncs = 0;
        windowStart = performance.now();
        cpuStart = process.cpuUsage();
      } else if (raw.t === 'window-end') {
        const seconds = (performance.now() - windowStart) / 1000;
        const cpu = process.cpuUsage(cpuStart);
        const s = syncTimes.sorted();
        const a = ages.sorted();
        send({
          t: 'window',
          stats: {
            seconds,
            scripts,
            sync: [percentile(s, 50), percentile(s, 90), percentile(s, 99), s.length ? s[s.length - 1] : NaN],
            age: [percentile(a, 50), percentile(a, 99)],
            changedPerSync: changedSyncs ? changed / changedSyncs : 0,
            cpuCores: (cpu.user + cpu.system) / 1e6 / seconds,
            sysCores: cpu.system / 1e6 / seconds,
          },
        });
      } else if (raw.t === 'quiet') {
        churning = false;
        send({ t: 'quiet' });
      } else if (raw.t === 'kill') {
        send({ t: 'killed', leaveMs: await killAndTime(raw.count, raw.timeoutMs) });
      } else if (raw.t === 'exit') {
        clearInterval(churnTimer);
        clearInterval(sampler);
        await Promise.all(machines.map((m) => m.close(false)));
        process.exit(0);
      }
    })().catch((err: Error) => send({ t: 'error', message: err.stack ?? err.message }));
  });

  /** Kills `count` machines at once (silent, as a crash); ms until machine 0 no longer counts their tunnels. */
  async function killAndTime(count: number, timeoutMs: number): Promise<number | null> {
    const observer = machines[0];
    const sum = (): number => [...observer.remoteCounts().values()].reduce((n, x) => n + x, 0);
    // The fleet is quiet: wait for the view to hold still.
    let last = -1;
    let still = 0;
    const until = Date.now() + 10_000;
    while (still < 3 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, config.syncInterval));
      const now = sum();
      still = now === last ? still + 1 : 0;
      last = now;
    }
    const victims = machines.slice(1, 1 + count);
    const gone = victims.reduce((n, _, k) => n + counts[1 + k].reduce((x, y) => x + y, 0), 0);
    const want = last - gone;
    const t0 = performance.now();
    for (let k = 1; k <= victims.length; k++) alive[k] = false;
    await Promise.all(victims.map((v) => v.close(false)));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        observer.off('counts', check);
        resolve(null);
      }, timeoutMs);
      function check(): void {
        if (sum() !== want) return;
        clearTimeout(timer);
        observer.off('counts', check);
        resolve(performance.now() - t0);
      }
      observer.on('counts', check);
    });
  }

  send({ t: 'ready', started: machines.length });
}

// The runner went away (killed, interrupted): so do its machines.
process.on('disconnect', () => process.exit(0));
process.once('message', (m: ToMachines) => {
  if (m.t !== 'start') return;
  main(m.config).catch((err: Error) => send({ t: 'error', message: err.stack ?? err.message }));
});
