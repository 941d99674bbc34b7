// Live rebalancing, in the primary (the control path): runs the rounds of a pool's rebalance. Each
// round it takes the pool's fleet counts, the policy's sheds (src/load-balancer/rebalance.ts), claims
// this machine's part of the round from the shared state (so the fleet as a whole closes at most
// closesPerSecond and each backend's shed once), and tells the workers holding those tunnels how
// many to close. A rebalance starts by command (`switchyard rebalance POOL`, told to the whole
// fleet through the shared state) or, for a pool with `rebalance` set, by itself when the skew is
// above maxSkew; it ends when the pool is within the skew, at its deadline, or when nothing could
// be closed for STALL_ROUNDS rounds (all that is left is too young, or at home under hash).
import type { Worker } from 'node:cluster';
import type { LoadedConfig } from '../config/load';
import { rebalanceSchema, type PoolConfig, type RebalanceConfig } from '../config/schema';
import type { RebalanceClose, PrimaryMessage } from '../ipc';
import type { Logger } from '../log';
import { roundBudget, roundOf, ROUND_CLOSE_WINDOW_MS, ROUND_MS, shareOut, sheds, skewOf, STALL_ROUNDS, type CloseClaim } from '../load-balancer/rebalance';
import type { SharedState } from '../state/shared-state';
import { RebalanceConflict, type RebalanceStatus } from '../admin/admin-api';

/** What the rebalancer needs of the coordination: the pool's loads, the workers' counts, a way to tell them. */
export interface RebalanceFleet {
  /** The pool's eligible, non-backup backends: fleet-wide tunnels and this machine's. */
  loads(pool: string): { key: string; name: string; weight: number; tunnels: number; here: number }[];
  /** Each live worker's tunnels on a backend key. */
  workerCounts(key: string): [Worker, number][];
  send(worker: Worker, message: PrimaryMessage): void;
}

/** A run of an opt-in pool that stalled waits this long (or minTunnelAge, if longer) before the next. */
const AUTO_COOLDOWN_MS = 30_000;
/** A rebalance by command ends at the latest this long after it began, unless the command says otherwise. */
export const DEFAULT_REBALANCE_TIMEOUT_MS = 10 * 60_000;

interface Run {
  trigger: 'command' | 'auto';
  settings: RebalanceConfig;
  startedAt: number;
  /** Epoch ms; Infinity: none (auto). */
  until: number;
  /** Tunnels this machine's workers closed (are closing). */
  closed: number;
  closedThisRound: number;
  /** The fleet's shed at the last round, to see progress made by other machines. */
  lastShed: number;
  idle: number;
  skewAtStart: number;
  skew: number;
  ended?: { reason: 'balanced' | 'stalled' | 'deadline'; at: number };
}

export class Rebalancer {
  private readonly runs = new Map<string, Run>();
  private pools: Record<string, PoolConfig>;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** Set during a reload, until the new workers listen: a client closed then would reconnect to an old worker, which knows only the old backends. */
  paused = false;

  constructor(
    config: LoadedConfig,
    private readonly state: SharedState,
    private readonly fleet: RebalanceFleet,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.pools = config.pools;
  }

  start(): void {
    this.state.on('rebalance', (pool, startedAt, until, by) => {
      if (by === this.state.machineId || this.pools[pool] === undefined || this.running(pool)) return;
      this.begin(pool, 'command', startedAt, until);
      this.log.info({ pool, by }, 'rebalance started by another machine');
    });
    this.timer = setInterval(() => void this.tick(), ROUND_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  reconfigure(config: LoadedConfig): void {
    this.pools = config.pools;
    for (const pool of this.runs.keys()) if (this.pools[pool] === undefined) this.runs.delete(pool);
  }

  private running(pool: string): boolean {
    const run = this.runs.get(pool);
    return run !== undefined && run.ended === undefined;
  }

  /**
   * `switchyard rebalance POOL`: starts a rebalance of the pool on every machine (with its
   * `rebalance` settings, or the defaults), ending at the latest after `timeoutMs`. Throws when the
   * pool is unknown, or a RebalanceConflict when one runs already.
   */
  async command(pool: string, timeoutMs = DEFAULT_REBALANCE_TIMEOUT_MS): Promise<RebalanceStatus> {
    if (this.pools[pool] === undefined) throw new Error(`no pool ${pool}`);
    if (this.running(pool)) throw new RebalanceConflict(`a rebalance of ${pool} is running`);
    const startedAt = this.now();
    // The fleet first: without the shared store no machine can be granted closes, so nothing starts.
    await this.state.startRebalance(pool, startedAt, startedAt + timeoutMs);
    this.begin(pool, 'command', startedAt, startedAt + timeoutMs);
    this.log.info({ pool, timeoutMs }, 'rebalance started by command');
    return this.status(pool)!;
  }

  private begin(pool: string, trigger: Run['trigger'], startedAt: number, until: number): Run {
    const skew = skewOf(this.fleet.loads(pool));
    const run: Run = { trigger, settings: this.settingsOf(pool), startedAt, until, closed: 0, closedThisRound: 0, lastShed: Infinity, idle: 0, skewAtStart: skew, skew };
    this.runs.set(pool, run);
    return run;
  }

  private settingsOf(pool: string): RebalanceConfig {
    return this.pools[pool].rebalance ?? rebalanceSchema.parse({});
  }

  /** A worker's answer: how many tunnels it is closing. */
  onClosed(pool: string, closed: number): void {
    const run = this.runs.get(pool);
    if (run === undefined) return;
    run.closed += closed;
    run.closedThisRound += closed;
  }

  /** The pool's rebalance, running or last ended; undefined when none ran. */
  status(pool: string): RebalanceStatus | undefined {
    const run = this.runs.get(pool);
    if (run === undefined) return undefined;
    return {
      state: run.ended?.reason ?? 'running',
      trigger: run.trigger,
      startedAt: run.startedAt,
      endedAt: run.ended?.at ?? 0,
      until: Number.isFinite(run.until) ? run.until : 0,
      closed: run.closed,
      skewAtStart: round2(run.skewAtStart),
      skew: round2(run.skew),
      maxSkew: run.settings.maxSkew,
      closesPerSecond: run.settings.closesPerSecond,
      minTunnelAge: run.settings.minTunnelAge,
    };
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.paused) return;
    this.ticking = true;
    try {
      for (const pool of Object.keys(this.pools)) await this.round(pool);
    } catch (err) {
      this.log.warn({ err }, 'rebalance round failed');
    } finally {
      this.ticking = false;
    }
  }

  private end(pool: string, run: Run, reason: NonNullable<Run['ended']>['reason']): void {
    run.ended = { reason, at: this.now() };
    this.log.info({ pool, reason, closed: run.closed, skew: round2(run.skew), skewAtStart: round2(run.skewAtStart) }, 'rebalance ended');
  }

  private async round(pool: string): Promise<void> {
    const now = this.now();
    const loads = this.fleet.loads(pool);
    let run = this.runs.get(pool);
    const auto = this.pools[pool].rebalance;
    if (run === undefined || run.ended !== undefined) {
      if (auto === undefined || !auto.auto) return;
      // Opt-in: starts by itself when the pool is above the skew (not again at once after a stall).
      const cooldown = Math.max(AUTO_COOLDOWN_MS, auto.minTunnelAge);
      if (run?.ended !== undefined && run.ended.reason === 'stalled' && now - run.ended.at < cooldown) return;
      if (sheds(loads, auto.maxSkew).size === 0) return;
      run = this.begin(pool, 'auto', now, Infinity);
      this.log.info({ pool, skew: round2(run.skew), maxSkew: auto.maxSkew }, 'rebalance started: the pool is above maxSkew');
    }
    run.skew = skewOf(loads);
    const shed = sheds(loads, run.settings.maxSkew);
    if (shed.size === 0) return this.end(pool, run, 'balanced');
    if (now >= run.until) return this.end(pool, run, 'deadline');
    // Progress: this machine closed something last round, or the fleet's shed went down.
    let total = 0;
    for (const n of shed.values()) total += n;
    if (run.closedThisRound > 0 || total < run.lastShed) run.idle = 0;
    else if (++run.idle >= STALL_ROUNDS) return this.end(pool, run, 'stalled');
    run.lastShed = total;
    run.closedThisRound = 0;

    const claims: CloseClaim[] = [];
    for (const b of loads) {
      const n = shed.get(b.key);
      if (n !== undefined && b.here > 0) claims.push({ key: b.key, want: Math.min(n, b.here), shed: n });
    }
    if (claims.length === 0) return;
    const granted = await this.state.claimCloses(pool, roundOf(now), roundBudget(run.settings.closesPerSecond), claims);
    const hashing = this.pools[pool].algorithm === 'hash' || this.pools[pool].algorithm === 'ip-hash';
    const startedAt = run.startedAt;
    const minTunnelAge = run.settings.minTunnelAge;
    const members = hashing ? loads.map((b): [string, number, number] => [b.name, b.weight, b.tunnels]) : null;
    claims.forEach((claim, i) => {
      if (granted[i] <= 0) return;
      const workers = this.fleet.workerCounts(claim.key);
      const shares = shareOut(granted[i], workers.map(([, n]) => n));
      workers.forEach(([worker], w) => {
        if (shares[w] === 0) return;
        const order: RebalanceClose = {
          type: 'rebalance-close',
          pool,
          backend: claim.key,
          count: shares[w],
          startedAt,
          minTunnelAge,
          windowMs: ROUND_CLOSE_WINDOW_MS,
          members,
        };
        this.fleet.send(worker, order);
      });
    });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
