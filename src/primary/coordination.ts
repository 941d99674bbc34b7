// Health and connection-count coordination, in the primary (the control path). It owns the active
// checkers, the outlier detectors and the shared state; workers report their tunnel counts and
// passive outcomes over IPC every sync interval, and get back each backend's state (health x admin)
// and the tunnels held elsewhere (other workers, other machines). Workers never wait on any of it:
// they act on the last state they were sent. A pool's backends are its config's plus those DNS
// discovery finds (src/discovery/): a change of that set rebuilds the entries as a reload does, and
// workers get the pool's new list ('backends') before its state.
import { EventEmitter } from 'node:events';
import type { Worker } from 'node:cluster';
import type { LoadedConfig } from '../config/load';
import { fixedBackends, usesDns, type AdminState, type BackendConfig, type PoolConfig } from '../config/schema';
import { Discovery } from '../discovery/discovery';
import { ActiveChecker, type ProbeResult } from '../health/active-check';
import { OutlierDetector } from '../health/outlier-detection';
import { slowStartEnds } from '../load-balancer/slow-start';
import type { Logger } from '../log';
import type { BackendStatus, DiscoveryStatus, StatusReport } from '../admin/admin-api';
import type { SharedState, StateStatus } from '../state/shared-state';
import { Backend } from '../upstream/backend';
import { forgetBackend } from '../stats/metrics';
import { ClientCounts } from './client-counts';
import { Rebalancer } from './rebalancer';
import { isWorkerMessage, type BackendView, type PrimaryMessage } from '../ipc';

interface Entry {
  pool: string;
  backend: Backend;
  configAdmin: AdminState;
  checked: boolean;
  detector: OutlierDetector;
  ejected: boolean;
  /** The pool's slowStart, ms. */
  slowStart: number;
  /** Eligible (up and ready) when last looked at; undefined before the first look (no ramp for the state found at start). */
  eligible: boolean | undefined;
  /** When it last became eligible, epoch ms; 0: since the start. Sent to workers for slow start. */
  eligibleSince: number;
  /** Found by DNS discovery (not written in the config). */
  discovered: boolean;
}

export interface CoordinationEvents {
  /** Every active-check probe this machine ran (latency hook for metrics). */
  checked: [key: string, result: ProbeResult];
  /** Shared-state connectivity changed (metrics hook). */
  status: [status: StateStatus, detail: string | undefined];
}

export class Coordination extends EventEmitter<CoordinationEvents> {
  private readonly entries = new Map<string, Entry>();
  private readonly checkers: ActiveChecker[] = [];
  private readonly workers = new Map<Worker, { counts: Map<string, number>; sent: string }>();
  /** Per-client-IP counts, kept apart: they concern clients, not backends. */
  private readonly clients: ClientCounts;
  /** Live rebalancing of the pools (its own rounds, on these entries and workers' counts). */
  readonly rebalancer: Rebalancer;
  private timer: NodeJS.Timeout | undefined;
  private config: LoadedConfig;
  /** Each pool's backends found by DNS. */
  private readonly discovery: Discovery;

  constructor(
    config: LoadedConfig,
    private readonly state: SharedState,
    private readonly log: Logger,
    private readonly syncInterval: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.config = config;
    this.discovery = new Discovery(config.pools, log, now);
    this.build();
    this.clients = new ClientCounts(state, config.clientLimits.scope === 'fleet');
    this.rebalancer = new Rebalancer(
      config,
      state,
      { loads: (pool) => this.poolLoads(pool), workerCounts: (key) => this.workerCounts(key), send: (worker, m) => this.send(worker, m) },
      log,
      now,
    );
  }

  /** A pool's eligible, non-backup backends with their fleet-wide tunnels and this machine's (for the rebalancer). */
  private poolLoads(pool: string): { key: string; name: string; weight: number; tunnels: number; here: number }[] {
    const machine = this.machineCounts();
    const remote = this.state.remoteCounts();
    const out: { key: string; name: string; weight: number; tunnels: number; here: number }[] = [];
    for (const [key, e] of this.entries) {
      if (e.pool !== pool || e.backend.backup) continue;
      const view = this.view(key, e);
      if (view.health !== 'up' || view.admin !== 'ready') continue;
      const here = machine.get(key) ?? 0;
      out.push({ key, name: e.backend.name, weight: e.backend.weight, tunnels: here + (remote.get(key) ?? 0), here });
    }
    return out;
  }

  /** Each worker's tunnels on a backend key, as last reported. */
  private workerCounts(key: string): [Worker, number][] {
    return [...this.workers].map(([worker, w]): [Worker, number] => [worker, w.counts.get(key) ?? 0]);
  }

  /** A pool's backends: its config's fixed ones, then those its DNS sources give (a name written in the config is not repeated). */
  private backendsOf(pool: string, pc: PoolConfig): BackendConfig[] {
    const fixed = fixedBackends(pc);
    const found = this.discovery.backendsOf(pool);
    if (found.length === 0) return fixed;
    const written = new Set(fixed.map((b) => new Backend(b).name));
    return [...fixed, ...found.filter((b) => !written.has(new Backend(b).name))];
  }

  /** The backends and active checkers of the config, with what discovery found. */
  private build(): void {
    for (const [pool, pc] of Object.entries(this.config.pools)) {
      const configs = this.backendsOf(pool, pc);
      const backends = configs.map((b) => new Backend(b, pool, pc));
      const detector = new OutlierDetector(pc.outlierDetection, backends.map((b) => b.key));
      for (const [i, backend] of backends.entries()) {
        this.entries.set(backend.key, {
          pool,
          backend,
          discovered: i >= fixedBackends(pc).length,
          configAdmin: configs[i].admin,
          checked: pc.healthCheck !== undefined,
          detector,
          ejected: false,
          slowStart: pc.slowStart,
          eligible: undefined,
          eligibleSince: 0,
        });
      }
      if (pc.healthCheck) {
        const checker = new ActiveChecker(pc.healthCheck, backends.map((backend) => ({ key: backend.key, backend })), {
          shouldCheck: (key) => this.state.holdsLease(key),
          userAgent: `switchyard-health-check (${this.state.machineId})`,
        });
        checker.on('change', (key, health, detail) => {
          const e = this.entries.get(key)!;
          this.log.warn({ pool: e.pool, backend: e.backend.name, health, reason: detail }, health === 'down' ? 'health check: backend down' : 'health check: backend up');
          this.state.publishHealth(key, health);
        });
        checker.on('checked', (key, result) => this.emit('checked', key, result));
        this.checkers.push(checker);
      }
    }
  }

  /** Starts the active checkers from the fleet's last verdicts. */
  private startCheckers(): void {
    for (const c of this.checkers) {
      for (const key of this.entries.keys()) {
        const h = this.state.healthOf(key);
        if (h !== undefined) c.adopt(key, h);
      }
      c.start();
    }
  }

  /**
   * A reload: the backends and checks of `config` replace the current ones. Active-check verdicts
   * and admin overrides are the shared state's, by backend key, so a backend kept by the reload
   * keeps them, and its outlier-detection record (streak, ejection, multiplier) is carried over.
   * Workers of the old generation still report their tunnels, so fleet counts stay whole.
   */
  reconfigure(config: LoadedConfig): void {
    this.config = config;
    this.discovery.configure(config.pools);
    this.rebuild();
    this.clients.reconfigure(config.clientLimits.scope === 'fleet');
    this.rebalancer.reconfigure(config);
    // No rebalance closes until the new workers take the reconnects: the old ones know only the old backends.
    this.rebalancer.paused = true;
  }

  /** The reload that reconfigured ended (new workers listening, or rolled back): rebalancing may go on. */
  settled(): void {
    this.rebalancer.paused = false;
  }

  /** The entries again from the config and discovery, keeping what each kept backend had (a reload, or a change DNS brought). */
  private rebuild(): void {
    for (const c of this.checkers) c.stop();
    this.checkers.length = 0;
    const previous = new Map(this.entries);
    this.entries.clear();
    this.build();
    // A backend the reload keeps keeps its passive-health record: an ejected one stays out.
    const oldDetectors = new Set([...previous.values()].map((e) => e.detector));
    for (const detector of new Set([...this.entries.values()].map((e) => e.detector))) for (const old of oldDetectors) detector.carryOver(old);
    const now = this.now();
    for (const [key, e] of this.entries) {
      const old = previous.get(key);
      e.ejected = old?.ejected ?? false;
      // Slow start: a backend the reload adds joins now; a kept one keeps its ramp.
      e.eligible = old?.eligible;
      e.eligibleSince = old === undefined ? now : old.eligibleSince;
    }
    for (const [key, e] of previous) if (!this.entries.has(key)) forgetBackend(e.pool, e.backend.name);
    this.state.track([...this.entries.keys()]);
    this.startCheckers();
    for (const worker of this.workers.keys()) this.sendBackends(worker);
    this.broadcastState();
    this.pushElsewhere();
  }

  /** A change DNS brought: new or removed backends rebuild the entries (new ones join with slow start); a drain or a return is a change of state. */
  private onDiscovered(change: { joined: string[]; removed: string[]; reweighted: string[] }): void {
    if (change.joined.length + change.removed.length + change.reweighted.length !== 0) this.rebuild();
    else this.broadcastState();
  }

  /** Each pool with DNS sources: its whole backend list, so the worker's pool matches the primary's entries. */
  private sendBackends(worker: Worker): void {
    for (const [pool, pc] of Object.entries(this.config.pools)) {
      if (usesDns(pc)) this.send(worker, { type: 'backends', pool, backends: this.backendsOf(pool, pc) });
    }
  }

  /** Each pool's discovery (DNS name, backends found, lookups failing), for the status page and /status. */
  discoveryStatus(): Record<string, DiscoveryStatus> {
    return this.discovery.status();
  }

  async start(): Promise<void> {
    this.state.on('health', (key, health, by) => {
      const e = this.entries.get(key);
      if (e === undefined || !e.checked) return;
      for (const c of this.checkers) c.adopt(key, health);
      if (by !== this.state.machineId) this.log.info({ pool: e.pool, backend: e.backend.name, health, by }, 'health verdict from the fleet');
      this.broadcastState();
    });
    this.state.on('admin', (key, admin) => {
      const e = this.entries.get(key);
      if (e === undefined) return;
      this.log.info({ pool: e.pool, backend: e.backend.name, admin }, 'admin state set');
      this.broadcastState();
    });
    this.state.on('lease', (key, held) => {
      const e = this.entries.get(key);
      if (e?.checked) this.log.info({ pool: e.pool, backend: e.backend.name, machine: this.state.machineId }, held ? 'health-check lease acquired' : 'health-check lease lost');
    });
    this.state.on('repaired', (pool, fields) => this.log.warn({ pool, fields }, 'fleet totals repaired: Redis held counts that did not add up'));
    // Workers decide on fleet counts: they hear them as soon as the primary does.
    this.state.on('counts', () => this.pushElsewhere());
    this.state.on('status', (status, detail) => {
      if (status === 'degraded') this.log.warn({ state: this.state.kind, reason: detail }, 'shared state unreachable: running degraded on last known state');
      else this.log.info({ state: this.state.kind }, 'shared state connected');
      this.emit('status', status, detail);
    });
    // The first answers before the first worker: what DNS gives at start is there from the start (no slow start for it).
    await this.discovery.start();
    this.entries.clear();
    this.checkers.length = 0;
    this.build();
    this.discovery.on('changed', (_pool, change) => this.onDiscovered(change));
    await this.state.start([...this.entries.keys()]);
    this.views(); // what is eligible at start: no slow start for it
    this.startCheckers();
    this.timer = setInterval(() => this.sync(), this.syncInterval);
    this.timer.unref();
    this.rebalancer.start();
  }

  async close(graceful = true): Promise<void> {
    clearInterval(this.timer);
    this.rebalancer.stop();
    this.discovery.stop();
    for (const c of this.checkers) c.stop();
    await this.state.close(graceful);
  }

  addWorker(worker: Worker): void {
    this.workers.set(worker, { counts: new Map(), sent: '' });
    this.clients.addWorker(worker);
    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      if (m.type === 'state-request') {
        this.sendBackends(worker);
        this.send(worker, { type: 'backend-state', backends: this.views() });
      }
      else if (m.type === 'backend-report') this.onReport(worker, m.counts, m.outcomes);
      else if (m.type === 'client-report') this.clients.onReport(worker, m.clients);
      else if (m.type === 'rebalance-closed') this.rebalancer.onClosed(m.pool, m.closed);
    });
  }

  /** A dead worker's tunnels are gone with it. */
  removeWorker(worker: Worker): void {
    this.workers.delete(worker);
    this.clients.removeWorker(worker);
  }

  /** Sets an admin override for the whole fleet (rejects when the shared store cannot be reached). */
  async setAdmin(pool: string, backendName: string, admin: AdminState): Promise<void> {
    const key = `${pool}/${backendName}`;
    if (!this.entries.has(key)) throw new Error(`no backend ${backendName} in pool ${pool}`);
    await this.state.setAdmin(key, admin);
  }

  /** Pool and backend name of a backend key, for metric labels. */
  labelsOf(key: string): { pool: string; backend: string } | undefined {
    const e = this.entries.get(key);
    return e && { pool: e.pool, backend: e.backend.name };
  }

  status(): StatusReport {
    const now = this.now();
    const machine = this.machineCounts();
    const remote = this.state.remoteCounts();
    const pools: Record<string, BackendStatus[]> = {};
    for (const [key, e] of this.entries) {
      const view = this.view(key, e);
      const here = machine.get(key) ?? 0;
      const rampEnds = slowStartEnds(view.eligibleSince, e.slowStart);
      (pools[e.pool] ??= []).push({
        backend: e.backend.name,
        url: e.backend.url,
        health: view.health,
        activeCheck: e.checked ? (this.state.healthOf(key) ?? 'up') : 'off',
        checkedHere: e.checked && this.state.holdsLease(key),
        ejected: e.ejected,
        ejections: view.ejections,
        admin: view.admin,
        connections: { machine: here, fleet: here + (remote.get(key) ?? 0) },
        maxConnections: e.backend.maxConnections,
        backup: e.backend.backup,
        slowStartUntil: rampEnds > now ? rampEnds : 0,
        weight: e.backend.weight,
        discovered: e.discovered,
      });
    }
    const rebalance: StatusReport['rebalance'] = {};
    for (const pool of Object.keys(pools)) {
      const r = this.rebalancer.status(pool);
      if (r !== undefined) rebalance[pool] = r;
    }
    return { machine: this.state.machineId, state: { kind: this.state.kind, status: this.state.status }, pools, rebalance, discovery: this.discovery.status() };
  }

  /** What workers are told of a backend; notes when it became eligible (every change of health or admin state passes here). */
  private view(key: string, e: Entry): BackendView {
    const activeDown = e.checked && this.state.healthOf(key) === 'down';
    const health = activeDown || e.ejected ? 'down' : 'up';
    const set = this.state.adminOf(key) ?? e.configAdmin;
    // A backend DNS no longer gives drains (unless the operator put it in maintenance).
    const admin = set === 'ready' && e.discovered && this.discovery.isDraining(e.pool, e.backend.name) ? 'drain' : set;
    const eligible = health === 'up' && admin === 'ready';
    if (eligible && e.eligible === false) e.eligibleSince = this.now();
    e.eligible = eligible;
    return { key, health, admin, ejections: e.detector.ejections(key), eligibleSince: e.eligibleSince };
  }

  private views(): BackendView[] {
    return [...this.entries].map(([key, e]) => this.view(key, e));
  }

  private broadcastState(): void {
    const message: PrimaryMessage = { type: 'backend-state', backends: this.views() };
    for (const worker of this.workers.keys()) this.send(worker, message);
  }

  private send(worker: Worker, message: PrimaryMessage): void {
    if (worker.isConnected()) worker.send(message);
  }

  private onReport(worker: Worker, counts: Record<string, number>, outcomes: [string, boolean][]): void {
    const w = this.workers.get(worker);
    if (w !== undefined) w.counts = new Map(Object.entries(counts));
    // The other workers hear of it now rather than at the next tick: less time deciding on stale counts.
    this.pushElsewhere();
    const now = this.now();
    let changed = false;
    for (const [key, ok] of outcomes) {
      const e = this.entries.get(key);
      if (e === undefined) continue;
      if (ok) {
        e.detector.recordSuccess(key);
        continue;
      }
      const ejection = e.detector.recordFailure(key, now);
      if (ejection === undefined) continue;
      e.ejected = true;
      changed = true;
      this.log.warn({ pool: e.pool, backend: e.backend.name, durationMs: ejection.durationMs, ejections: ejection.ejections }, 'outlier detection: backend ejected');
    }
    if (changed) this.broadcastState();
  }

  private machineCounts(): Map<string, number> {
    const total = new Map<string, number>();
    for (const w of this.workers.values()) for (const [k, n] of w.counts) total.set(k, (total.get(k) ?? 0) + n);
    return total;
  }

  /** Every sync interval: end due ejections, publish this machine's counts, tell each worker what is held elsewhere. */
  private sync(): void {
    const now = this.now();
    let changed = false;
    for (const e of this.entries.values()) {
      if (e.ejected && !e.detector.isEjected(e.backend.key, now)) {
        e.detector.expire(now);
        e.ejected = false;
        changed = true;
        this.log.info({ pool: e.pool, backend: e.backend.name }, 'outlier detection: backend returned');
      }
    }
    if (changed) this.broadcastState();
    const machine = this.machineCounts();
    // Workers report at every sync: a tunnel opened just before its backend left DNS is counted within a few.
    this.discovery.sweep(Math.max(1000, 5 * this.syncInterval), (pool, name) => machine.get(`${pool}/${name}`) ?? 0);
    this.state.setLocalCounts(machine);
    this.clients.sync();
    this.pushElsewhere();
  }

  /** Tells each worker the tunnels held elsewhere (other workers + other machines), when that changed. */
  private pushElsewhere(): void {
    const machine = this.machineCounts();
    const remote = this.state.remoteCounts();
    for (const [worker, w] of this.workers) {
      const elsewhere: Record<string, number> = {};
      for (const key of this.entries.keys()) {
        const n = (machine.get(key) ?? 0) - (w.counts.get(key) ?? 0) + (remote.get(key) ?? 0);
        if (n !== 0) elsewhere[key] = n;
      }
      const text = JSON.stringify(elsewhere);
      if (text === w.sent) continue;
      w.sent = text;
      this.send(worker, { type: 'elsewhere', counts: elsewhere });
    }
  }
}
