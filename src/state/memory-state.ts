// Shared state without Redis: one machine is the whole fleet. The primary holds it and its workers
// share through the primary over IPC (src/primary/coordination.ts). Several MemoryStates can share
// one MemoryStore, which is how the contract tests hold it to the same rules as redis-state.ts:
// leases with a TTL, counts that expire when their machine goes silent, verdicts seen by all.
import { EventEmitter } from 'node:events';
import type { ClientCount } from '../client-limits';
import type { AdminState } from '../config/schema';
import type { HealthState } from '../upstream/backend';
import { grantCloses, type CloseClaim, type RoundGrants } from '../load-balancer/rebalance';
import { addClientCounts, addCounts, CachedState, type StateTimings } from './shared-state';

/** The "server" side: what a Redis would hold, in this process. */
export class MemoryStore extends EventEmitter<{
  health: [key: string, health: HealthState, by: string];
  admin: [key: string, admin: AdminState];
  rebalance: [pool: string, startedAt: number, until: number, by: string];
}> {
  readonly leases = new Map<string, { holder: string; expires: number }>();
  readonly health = new Map<string, HealthState>();
  readonly admin = new Map<string, AdminState>();
  readonly counts = new Map<string, { counts: ReadonlyMap<string, number>; expires: number }>();
  readonly clients = new Map<string, { clients: readonly ClientCount[]; expires: number }>();
  /** Rebalance rounds' grants by pool, the current round's only (as the Redis key's short expiry). */
  readonly rounds = new Map<string, { round: number; grants: RoundGrants }>();
}

export class MemoryState extends CachedState {
  readonly kind = 'memory';
  private readonly onHealth = (key: string, health: HealthState, by: string): void => this.applyHealth(key, health, by);
  private readonly onAdmin = (key: string, admin: AdminState): void => this.applyAdmin(key, admin);
  private readonly onRebalance = (pool: string, startedAt: number, until: number, by: string): void => void this.emit('rebalance', pool, startedAt, until, by);

  constructor(
    machineId: string,
    timings: StateTimings,
    private readonly store = new MemoryStore(),
    private readonly now: () => number = Date.now,
  ) {
    super(machineId, timings);
  }

  start(backendKeys: readonly string[]): Promise<void> {
    this.keys = backendKeys;
    for (const [k, v] of this.store.health) this.health.set(k, v);
    for (const [k, v] of this.store.admin) this.admin.set(k, v);
    this.store.on('health', this.onHealth);
    this.store.on('admin', this.onAdmin);
    this.store.on('rebalance', this.onRebalance);
    this.startTimers(
      () => this.renewLeases(),
      () => this.sync(),
    );
    return Promise.resolve();
  }

  close(graceful = true): Promise<void> {
    this.stopTimers();
    this.store.off('health', this.onHealth);
    this.store.off('admin', this.onAdmin);
    this.store.off('rebalance', this.onRebalance);
    if (graceful) {
      for (const key of this.held) if (this.store.leases.get(key)?.holder === this.machineId) this.store.leases.delete(key);
      this.store.counts.delete(this.machineId);
      this.store.clients.delete(this.machineId);
    }
    this.held.clear();
    return Promise.resolve();
  }

  publishHealth(key: string, health: HealthState): void {
    this.store.health.set(key, health);
    this.store.emit('health', key, health, this.machineId);
  }

  setAdmin(key: string, admin: AdminState): Promise<void> {
    this.store.admin.set(key, admin);
    this.store.emit('admin', key, admin);
    return Promise.resolve();
  }

  startRebalance(pool: string, startedAt: number, until: number): Promise<void> {
    this.store.emit('rebalance', pool, startedAt, until, this.machineId);
    return Promise.resolve();
  }

  claimCloses(pool: string, round: number, budget: number, claims: readonly CloseClaim[]): Promise<number[]> {
    let r = this.store.rounds.get(pool);
    if (r === undefined || r.round !== round) this.store.rounds.set(pool, (r = { round, grants: { total: 0, byBackend: new Map() } }));
    return Promise.resolve(grantCloses(r.grants, budget, claims));
  }

  /** SET NX PX, renewed by the holder: the same rule as the Redis lease. */
  private renewLeases(): void {
    const now = this.now();
    for (const key of this.keys) {
      const lease = this.store.leases.get(key);
      const mine = lease === undefined || lease.expires <= now || lease.holder === this.machineId;
      if (mine) this.store.leases.set(key, { holder: this.machineId, expires: now + this.timings.leaseTtl });
      this.setHeld(key, mine);
    }
  }

  private sync(): void {
    const now = this.now();
    this.store.counts.set(this.machineId, { counts: this.local, expires: now + this.timings.countTtl });
    const remote = new Map<string, number>();
    for (const [machine, entry] of this.store.counts) {
      if (entry.expires <= now) this.store.counts.delete(machine);
      else if (machine !== this.machineId) addCounts(remote, entry.counts);
    }
    this.remote = remote;
    this.emit('counts', now);
    if (this.localClients !== null) this.syncClients(now);
  }

  /** The same rule for per-client counts (clientLimits.scope: fleet), under their own entries. */
  private syncClients(now: number): void {
    this.store.clients.set(this.machineId, { clients: this.localClients!, expires: now + this.timings.countTtl });
    const remote = new Map<string, ClientCount>();
    for (const [machine, entry] of this.store.clients) {
      if (entry.expires <= now) this.store.clients.delete(machine);
      else if (machine !== this.machineId) addClientCounts(remote, entry.clients);
    }
    this.remoteClientCounts = [...remote.values()];
    this.emit('clients');
  }
}
