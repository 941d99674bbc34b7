// What balancer machines share: health verdicts, admin overrides (drain), health-check leases and
// connection counts. One interface, two implementations: memory-state.ts (one machine; its workers
// share through the primary) and redis-state.ts (a fleet). Lives in the primary, on the control
// path: nothing here is awaited by an upgrade or touched per message. Reads are synchronous answers
// from the last known state; writes are batched by the implementation.
import { EventEmitter } from 'node:events';
import type { ClientCount } from '../client-limits';
import type { AdminState } from '../config/schema';
import type { HealthState } from '../upstream/backend';
import type { CloseClaim } from '../load-balancer/rebalance';

export interface SharedStateEvents {
  /** A health verdict published by any machine (this one included). */
  health: [key: string, health: HealthState, by: string];
  /** An admin override set by any machine (this one included). */
  admin: [key: string, admin: AdminState];
  /** This machine started or stopped holding a backend's health-check lease. */
  lease: [key: string, held: boolean];
  /** Fresh tunnel counts of the other machines arrived (see remoteCounts()), from a sync begun at `startedAt` (Date.now()). */
  counts: [startedAt: number];
  /** A reconciliation found a pool's fleet totals off and repaired `fields` of them (metrics hook). */
  repaired: [pool: string, fields: number];
  /** Fresh per-client counts of the other machines arrived (see remoteClients()). */
  clients: [];
  /** A rebalance of `pool` by command, begun by machine `by` at `startedAt`, to end by `until` (epoch ms). */
  rebalance: [pool: string, startedAt: number, until: number, by: string];
  /** Connectivity of the shared store: `degraded` while it cannot be reached (metrics hook). */
  status: [status: StateStatus, detail: string | undefined];
}

export type StateStatus = 'ok' | 'degraded';

export interface SharedState extends EventEmitter<SharedStateEvents> {
  /** This machine's name in the fleet (host:pid:random). */
  readonly machineId: string;
  /** 'memory' or 'redis', for the status page. */
  readonly kind: string;
  readonly status: StateStatus;

  /** Begins leasing and syncing for these backend keys (`pool/host:port`). Resolves once usable. */
  start(backendKeys: readonly string[]): Promise<void>;
  /** Changes the backend keys after a reload; leases of keys no longer configured are let go (they lapse). */
  track(backendKeys: readonly string[]): void;
  /**
   * Stops. `graceful` releases this machine's leases and removes its counts at once; without it the
   * machine just goes silent, as a killed one would, and its leases and counts expire.
   */
  close(graceful?: boolean): Promise<void>;

  /** Should this machine run the active checks of `key`? (Only one machine of the fleet does.) */
  holdsLease(key: string): boolean;
  /** Publishes an active-check verdict to every machine. */
  publishHealth(key: string, health: HealthState): void;
  /** Last known active-check verdict, if any machine published one. */
  healthOf(key: string): HealthState | undefined;

  /** Sets an admin override (e.g. drain) for every machine. */
  setAdmin(key: string, admin: AdminState): Promise<void>;
  /** The admin override, if any was set. */
  adminOf(key: string): AdminState | undefined;

  /** This machine's live tunnels per backend (absolute); written in the next batch. */
  setLocalCounts(counts: ReadonlyMap<string, number>): void;
  /** Tunnels per backend held by the other machines, as last read. */
  remoteCounts(): ReadonlyMap<string, number>;

  /**
   * This machine's client IPs near a per-client limit (clientLimits.scope: fleet only), at most
   * MAX_REPORTED_CLIENTS; written in the next batch, with the counts' expiry. Until the first call
   * nothing of clients is written or read.
   */
  setLocalClients(clients: readonly ClientCount[]): void;
  /** Per client IP, what the other machines hold (summed), as last read; empty while the store is unreachable. */
  remoteClients(): readonly ClientCount[];

  /** Tells every machine (this one included) that a rebalance of `pool` began at `startedAt` and ends by `until`. */
  startRebalance(pool: string, startedAt: number, until: number): Promise<void>;
  /**
   * Claims closes of a rebalance round for this machine (src/load-balancer/rebalance.ts grantCloses):
   * the whole fleet gets at most `budget` in the round, and each backend at most its shed. Resolves
   * with what each claim was granted; all zero when the store cannot be reached (no agreement, no closes).
   */
  claimCloses(pool: string, round: number, budget: number, claims: readonly CloseClaim[]): Promise<number[]>;
}

/** host:pid:random, unique per primary process. */
export function newMachineId(hostname: string, pid: number): string {
  return `${hostname}:${pid}:${Math.random().toString(36).slice(2, 8)}`;
}

/** Sums `counts` into `into`. */
export function addCounts(into: Map<string, number>, counts: Iterable<readonly [string, number]>): void {
  for (const [k, n] of counts) into.set(k, (into.get(k) ?? 0) + n);
}

/** Sums per-client counts into `into`, by IP (entries of `into` are its own). */
export function addClientCounts(into: Map<string, ClientCount>, counts: Iterable<readonly [string, number, number]>): void {
  for (const [ip, tunnels, debt] of counts) {
    const sum = into.get(ip);
    if (sum === undefined) into.set(ip, [ip, tunnels, debt]);
    else {
      sum[1] += tunnels;
      sum[2] += debt;
    }
  }
}

export interface StateTimings {
  leaseTtl: number;
  syncInterval: number;
  countTtl: number;
}

/** Defaults when no Redis is configured (the same as redis.* defaults). */
export const DEFAULT_TIMINGS: StateTimings = { leaseTtl: 5000, syncInterval: 100, countTtl: 3000 };

/**
 * The last known state both implementations answer from; subclasses fill it from their store.
 * Keeping it here means a store outage changes nothing a reader sees, only how fresh it is.
 */
export abstract class CachedState extends EventEmitter<SharedStateEvents> implements SharedState {
  abstract readonly kind: string;
  status: StateStatus = 'ok';
  protected readonly health = new Map<string, HealthState>();
  protected readonly admin = new Map<string, AdminState>();
  protected readonly held = new Set<string>();
  protected local: ReadonlyMap<string, number> = new Map();
  protected remote: ReadonlyMap<string, number> = new Map();
  /** Set once setLocalClients() was called: clients are shared (clientLimits.scope: fleet). */
  protected localClients: readonly ClientCount[] | null = null;
  protected remoteClientCounts: readonly ClientCount[] = [];
  protected keys: readonly string[] = [];
  private timers: NodeJS.Timeout[] = [];

  constructor(
    readonly machineId: string,
    protected readonly timings: StateTimings,
  ) {
    super();
  }

  abstract start(backendKeys: readonly string[]): Promise<void>;
  abstract close(graceful?: boolean): Promise<void>;
  abstract publishHealth(key: string, health: HealthState): void;
  abstract setAdmin(key: string, admin: AdminState): Promise<void>;
  abstract startRebalance(pool: string, startedAt: number, until: number): Promise<void>;
  abstract claimCloses(pool: string, round: number, budget: number, claims: readonly CloseClaim[]): Promise<number[]>;

  track(backendKeys: readonly string[]): void {
    this.keys = backendKeys;
    const kept = new Set(backendKeys);
    for (const key of [...this.held]) if (!kept.has(key)) this.setHeld(key, false);
  }

  holdsLease(key: string): boolean {
    return this.held.has(key);
  }
  healthOf(key: string): HealthState | undefined {
    return this.health.get(key);
  }
  adminOf(key: string): AdminState | undefined {
    return this.admin.get(key);
  }
  setLocalCounts(counts: ReadonlyMap<string, number>): void {
    this.local = new Map(counts);
  }
  remoteCounts(): ReadonlyMap<string, number> {
    return this.remote;
  }
  setLocalClients(clients: readonly ClientCount[]): void {
    this.localClients = clients;
  }
  remoteClients(): readonly ClientCount[] {
    return this.remoteClientCounts;
  }

  /** Runs `leases` every third of the lease TTL and `sync` every sync interval (unref'd timers). */
  protected startTimers(leases: () => void, sync: () => void): void {
    leases();
    sync();
    this.timers.push(setInterval(leases, Math.max(50, Math.floor(this.timings.leaseTtl / 3))), setInterval(sync, this.timings.syncInterval));
    for (const t of this.timers) t.unref();
  }
  protected stopTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  protected applyHealth(key: string, health: HealthState, by: string): void {
    this.health.set(key, health);
    this.emit('health', key, health, by);
  }
  protected applyAdmin(key: string, admin: AdminState): void {
    if (this.admin.get(key) === admin) return;
    this.admin.set(key, admin);
    this.emit('admin', key, admin);
  }
  protected setHeld(key: string, held: boolean): void {
    if (this.held.has(key) === held) return;
    if (held) this.held.add(key);
    else this.held.delete(key);
    this.emit('lease', key, held);
  }
  protected setStatus(status: StateStatus, detail?: string): void {
    if (this.status === status) return;
    this.status = status;
    this.emit('status', status, detail);
  }
}
