// Shared state for a fleet of balancer machines, in Redis (ioredis). One instance per machine, in
// the primary. Every key carries the cluster name and the pool in its hash tag, so a Redis Cluster
// spreads pools over its shards and every script touches one slot (`P` = switchyard:{<cluster>:<pool>}:):
//
//   P machines            zset    machine id -> deadline (Redis ms); a machine past it is taken out
//   P totals              hash    <host:port> -> tunnels fleet-wide; '#' -> version
//   P conns:<machine id>  hash    <host:port> -> that machine's tunnels, as counted in the totals; '#' -> write number
//   P reconcile           hash    a reconciliation in progress (transient)
//   P reconciled          string  PX reconcileInterval: a reconciliation started this interval
//   P lease:<host:port>   string  machine id of the health checker, PX leaseTtl
//   P health              hash    <host:port> -> up | down
//   P admin               hash    <host:port> -> ready | drain | maintenance
//   switchyard:{<cluster>}:events   pub/sub {"t":"health"|"admin","key",...} (rare, so one channel)
//   F client-deadlines    zset    machine id -> deadline, of the machines that write per-client counts
//   F client-sums         hash    client IP -> "machines:tunnels:debt", summed over them
//   F clients:<machine>   hash    client IP -> "tunnels:debt", that machine's share of the sums
//                                 (F = switchyard:{<cluster>}:; clientLimits.scope: fleet only, IPs near a limit)
//
// Counts are aggregated in Redis (redis-scripts.ts): each sync writes only the counts that changed
// and reads the pool's totals back in the same round trip (a plain HGETALL behind the script, and
// only when they moved), so a sync costs Redis the same whatever the size of the fleet, and an idle
// machine's sync is a heartbeat. A machine's share of the totals is
// kept beside them, so a machine that stops writing is taken out exactly once, countTtl after its
// last write.
//
// Failure behaviour: nothing waits on Redis. Reads answer from the last known state; when Redis is
// unreachable the status turns `degraded`, this machine checks every backend itself, and ioredis
// reconnects; on reconnect the state is read back and this machine's counts, verdicts and admin
// overrides are written again, so a restarted (empty) Redis converges without a balancer restart.
import Redis, { Cluster, type ChainableCommander, type RedisOptions } from 'ioredis';
import type { ClientCount } from '../client-limits';
import type { AdminState, RedisConfig } from '../config/schema';
import type { HealthState } from '../upstream/backend';
import { PoolCounts, type SyncRequest } from './pool-counts';
import { CLIENT_SYNC_LUA, LEASES_LUA, RECONCILE_LUA, RELEASE_LUA, SYNC_LUA } from './redis-scripts';
import { CachedState } from './shared-state';

interface Scripts {
  leases(prefix: string, machine: string, ttl: number, ...backends: string[]): Promise<string>;
  release(key: string, machine: string): Promise<number>;
  syncPool(machines: string, totals: string, conns: string, reconcile: string, machine: string, countTtl: number, mode: string, version: number, connsPrefix: string, lifetime: number, seq: number, base: number, ...pairs: (string | number)[]): Promise<[number, number]>;
  reconcilePool(machines: string, totals: string, reconcile: string, gate: string, connsPrefix: string, interval: number, batch: number): Promise<number[]>;
  syncClients(machines: string, sums: string, own: string, machine: string, ttl: number, prefix: string, lifetime: number, mode: 'sync' | 'leave', ...pairs: string[]): Promise<(string | number)[]>;
}
type ScriptedRedis = (Redis | Cluster) & Scripts;
type ScriptedPipeline = ChainableCommander & { release(key: string, machine: string): ScriptedPipeline };

type EventMessage = { t: 'health'; key: string; health: HealthState; by: string } | { t: 'admin'; key: string; admin: AdminState; by: string };

/** The keys of one pool (see the table above). */
interface PoolKeys {
  machines: string;
  totals: string;
  connsPrefix: string;
  reconcile: string;
  reconciled: string;
  health: string;
  admin: string;
  leasePrefix: string;
}

function poolKeys(cluster: string, pool: string): PoolKeys {
  const p = `switchyard:{${cluster}:${pool}}:`;
  return {
    machines: `${p}machines`,
    totals: `${p}totals`,
    connsPrefix: `${p}conns:`,
    reconcile: `${p}reconcile`,
    reconciled: `${p}reconciled`,
    health: `${p}health`,
    admin: `${p}admin`,
    leasePrefix: `${p}lease:`,
  };
}

/** `pool/host:port` -> [pool, host:port] (pool names never hold a '/'). */
function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

/** Backend keys `pool/host:port`, by pool. */
function keysByPool(keys: Iterable<string>): Map<string, string[]> {
  const pools = new Map<string, string[]>();
  for (const key of keys) {
    const [pool, backend] = splitKey(key);
    const list = pools.get(pool);
    if (list === undefined) pools.set(pool, [backend]);
    else list.push(backend);
  }
  return pools;
}

/**
 * A connection to a single Redis (Sentinel through `options`) or, with `cluster`, to a Redis Cluster
 * seeded from `url`: a pool's keys share its `{cluster:pool}` hash tag, so pipelines and scripts of
 * one pool touch one slot, and pub/sub reaches every node.
 */
function connect(config: RedisConfig, options: RedisOptions): Redis | Cluster {
  if (!config.cluster) return new Redis(config.url, options);
  const u = new URL(config.url);
  const { enableOfflineQueue, enableAutoPipelining, retryStrategy, ...redisOptions } = options;
  if (u.username) redisOptions.username = decodeURIComponent(u.username);
  if (u.password) redisOptions.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') redisOptions.tls ??= {};
  return new Cluster([{ host: u.hostname, port: Number(u.port) || 6379 }], { redisOptions, enableOfflineQueue, enableAutoPipelining, clusterRetryStrategy: retryStrategy });
}

/** How long start() waits for a first connection before running degraded. */
const START_WAIT_MS = 2000;
/** A pool's keys outlive the last full write of any machine by this much (a whole fleet gone). */
const KEY_LIFETIME_MS = 24 * 3600 * 1000;
/** Machines a reconciliation step visits at most (when the machines zset is large enough to page). */
const RECONCILE_BATCH = 16;
/**
 * Each machine offers a step to its pools' reconciliations this many times per reconcileInterval:
 * rare enough to cost Redis little, often enough that a fleet finishes a run within a second or so.
 */
const RECONCILE_OFFERS = 20;

export class RedisState extends CachedState {
  readonly kind = 'redis';
  private readonly client: ScriptedRedis;
  private readonly sub: Redis | Cluster;
  private readonly channel: string;
  /** switchyard:{<cluster>}: for the keys that are not a pool's (per-client counts). */
  private readonly fleetPrefix: string;
  private readonly keysOf = new Map<string, PoolKeys>();
  /** Per pool: this machine's share as written, and the totals as read. */
  private readonly pools = new Map<string, PoolCounts>();
  private closed = false;
  /** Date.now() when the sync in flight began; one sync at a time. */
  private syncStarted: number | undefined;
  /** Bumped by every sync: replies of a sync given up on are not applied. */
  private syncGeneration = 0;
  /** `pool/host:port` -> [pool, host:port], for the keys seen (split once, not every sync). */
  private readonly split = new Map<string, [string, string]>();
  /** The pools of `keys`, and the `keys` they were taken from. */
  private tracked: { keys: readonly string[]; pools: ReadonlySet<string> } = { keys: [], pools: new Set() };
  /** Sequence number of this machine's writes (see SYNC_LUA). */
  private writes = 0;
  private lastRewrite = 0;
  private lastStep = 0;

  constructor(
    machineId: string,
    private readonly config: RedisConfig,
  ) {
    super(machineId, config);
    this.status = 'degraded'; // until the first 'ready'
    this.fleetPrefix = `switchyard:{${config.clusterName}}:`;
    this.channel = `${this.fleetPrefix}events`;
    const options: RedisOptions = {
      // Commands fail at once while disconnected instead of queueing: callers go on with what they know.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      ...(config.options as RedisOptions),
    };
    // A sync's scripts (one a pool) leave in one write per Redis node: fewer system calls for Redis.
    this.client = connect(config, { enableAutoPipelining: true, ...options }) as ScriptedRedis;
    this.client.defineCommand('leases', { numberOfKeys: 1, lua: LEASES_LUA });
    this.client.defineCommand('release', { numberOfKeys: 1, lua: RELEASE_LUA });
    this.client.defineCommand('syncPool', { numberOfKeys: 4, lua: SYNC_LUA });
    this.client.defineCommand('reconcilePool', { numberOfKeys: 4, lua: RECONCILE_LUA });
    this.client.defineCommand('syncClients', { numberOfKeys: 3, lua: CLIENT_SYNC_LUA });
    // The subscriber queues its SUBSCRIBE until connected and resubscribes after a reconnect.
    this.sub = connect(config, { ...options, enableOfflineQueue: true, maxRetriesPerRequest: null });
    this.client.on('ready', () => void this.onReady());
    this.client.on('close', () => this.onDown('connection closed'));
    this.client.on('error', (err: Error) => this.onDown(err.message));
    this.sub.on('error', () => undefined); // the client's events already say the same
    this.sub.on('message', (_channel: string, text: string) => this.onEvent(text));
  }

  async start(backendKeys: readonly string[]): Promise<void> {
    this.keys = backendKeys;
    const subscribed = this.sub.subscribe(this.channel).catch(() => undefined);
    const ready = new Promise<void>((resolve) => {
      if (this.status === 'ok') return resolve();
      const onStatus = (status: string): void => {
        if (status !== 'ok') return;
        this.off('status', onStatus);
        resolve();
      };
      this.on('status', onStatus);
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([ready, subscribed]), new Promise<void>((resolve) => (timer = setTimeout(resolve, START_WAIT_MS)))]);
    clearTimeout(timer);
    if (this.status === 'degraded') this.onDown('no connection yet');
    this.lastRewrite = this.lastStep = Date.now();
    this.startTimers(
      () => void this.renewLeases(),
      () => void this.sync(),
    );
  }

  async close(graceful = true): Promise<void> {
    this.closed = true;
    this.stopTimers();
    if (graceful && this.client.status === 'ready') {
      this.syncGeneration++;
      const leaving = [...this.pools].map(([pool, counts]) => this.syncPool(pool, counts, counts.leave(++this.writes), this.syncGeneration));
      const released = [...keysByPool(this.held)].map(([pool, backends]) => {
        const p = this.client.pipeline() as ScriptedPipeline;
        for (const backend of backends) p.release(this.poolKeys(pool).leasePrefix + backend, this.machineId);
        return p.exec().catch(() => undefined);
      });
      const clients = this.localClients === null ? [] : [this.clientsScript('leave', []).catch(() => undefined)];
      await Promise.all([...leaving, ...released, ...clients]);
      await Promise.all([this.client.quit().catch(() => undefined), this.sub.quit().catch(() => undefined)]);
    }
    this.client.disconnect();
    this.sub.disconnect();
  }

  publishHealth(key: string, health: HealthState): void {
    this.applyHealth(key, health, this.machineId); // at once, Redis or not
    if (this.client.status !== 'ready') return;
    const [pool, backend] = splitKey(key);
    const message: EventMessage = { t: 'health', key, health, by: this.machineId };
    this.client.pipeline().hset(this.poolKeys(pool).health, backend, health).publish(this.channel, JSON.stringify(message)).exec().catch(() => undefined);
  }

  async setAdmin(key: string, admin: AdminState): Promise<void> {
    this.applyAdmin(key, admin);
    const message: EventMessage = { t: 'admin', key, admin, by: this.machineId };
    // An operator's command: say so when it did not reach the fleet.
    if (this.client.status !== 'ready') throw new Error(`redis is unreachable; ${key} is ${admin} on this machine only`);
    const [pool, backend] = splitKey(key);
    const results = await this.client.pipeline().hset(this.poolKeys(pool).admin, backend, admin).publish(this.channel, JSON.stringify(message)).exec();
    const failed = results?.find(([err]) => err !== null)?.[0];
    if (failed) throw failed;
  }

  override holdsLease(key: string): boolean {
    // Degraded: nobody can coordinate, so every machine checks every backend itself.
    return this.status === 'degraded' || super.holdsLease(key);
  }

  private poolKeys(pool: string): PoolKeys {
    let k = this.keysOf.get(pool);
    if (k === undefined) this.keysOf.set(pool, (k = poolKeys(this.config.clusterName, pool)));
    return k;
  }

  private onEvent(text: string): void {
    let m: EventMessage;
    try {
      m = JSON.parse(text) as EventMessage;
    } catch {
      return;
    }
    if (m.by === this.machineId) return;
    if (m.t === 'health') this.applyHealth(m.key, m.health, m.by);
    else if (m.t === 'admin') this.applyAdmin(m.key, m.admin);
  }

  private onDown(detail: string): void {
    if (this.closed) return;
    this.setStatus('degraded', detail);
    // Other machines' client counts cannot be refreshed: each machine limits on its own counts
    // rather than on old ones (which could keep refusing a client that has left).
    if (this.remoteClientCounts.length > 0) {
      this.remoteClientCounts = [];
      this.emit('clients');
    }
  }

  /** (Re)connected: read the fleet's state back, then write ours again (a restarted Redis is empty). */
  private async onReady(): Promise<void> {
    if (this.closed) return;
    try {
      await this.adoptFleetWideAdmin();
      const pools = [...keysByPool(this.keys).keys()];
      await Promise.all(pools.map((pool) => this.readBack(pool)));
      this.setStatus('ok');
      await this.renewLeases();
      // Our checkers' verdicts, published again: while degraded every machine judged for itself.
      await Promise.all(
        [...keysByPool(this.held)].map(([pool, backends]) => {
          const q = this.client.pipeline();
          for (const backend of backends) {
            const key = `${pool}/${backend}`;
            const h = this.health.get(key);
            if (h === undefined) continue;
            const message: EventMessage = { t: 'health', key, health: h, by: this.machineId };
            q.hset(this.poolKeys(pool).health, backend, h).publish(this.channel, JSON.stringify(message));
          }
          return q.exec();
        }),
      );
      // Our counts, all of them, and the totals whatever their version: this may be a new Redis.
      for (const counts of this.pools.values()) {
        counts.rewrite();
        counts.forgetTotals();
      }
      this.syncStarted = undefined;
      await this.sync();
    } catch (err) {
      this.onDown((err as Error).message);
    }
  }

  /**
   * Admin overrides set before each pool had its own keys sat in one fleet-wide hash
   * (switchyard:{<cluster>}:admin). Those of tracked backends that this machine has no word on are
   * adopted; readBack then writes them into the pools' hashes unless those already say otherwise.
   */
  private async adoptFleetWideAdmin(): Promise<void> {
    const tracked = new Set(this.keys);
    const old = await this.client.hgetall(`switchyard:{${this.config.clusterName}}:admin`);
    for (const [key, v] of Object.entries(old)) if (tracked.has(key) && !this.admin.has(key)) this.applyAdmin(key, v as AdminState);
  }

  /** One pool's verdicts and overrides read back; the overrides this machine knows and Redis lacks, written. */
  private async readBack(pool: string): Promise<void> {
    const k = this.poolKeys(pool);
    const [health, admin] = await Promise.all([this.client.hgetall(k.health), this.client.hgetall(k.admin)]);
    for (const [b, v] of Object.entries(health)) if ((v === 'up' || v === 'down') && this.health.get(`${pool}/${b}`) !== v) this.applyHealth(`${pool}/${b}`, v, 'redis');
    for (const [b, v] of Object.entries(admin)) this.applyAdmin(`${pool}/${b}`, v as AdminState);
    const p = this.client.pipeline();
    for (const [key, v] of this.admin) {
      const [kp, b] = splitKey(key);
      if (kp === pool && !(b in admin)) p.hsetnx(k.admin, b, v);
    }
    await p.exec();
  }

  private async renewLeases(): Promise<void> {
    if (this.client.status !== 'ready' || this.status !== 'ok') return;
    const tracked = new Set(this.keys);
    await Promise.all(
      [...keysByPool(this.keys)].map(async ([pool, names]) => {
        const held = await this.client.leases(this.poolKeys(pool).leasePrefix, this.machineId, this.timings.leaseTtl, ...names).catch(() => null);
        if (held === null) return;
        names.forEach((b, i) => {
          const key = `${pool}/${b}`;
          if (tracked.has(key)) this.setHeld(key, held[i] === '1');
        });
      }),
    );
  }

  /**
   * Every sync interval: each pool's script writes what changed in this machine's counts and reads
   * the pool's totals; then the other machines' counts are the totals minus what this one wrote.
   */
  private async sync(): Promise<void> {
    if (this.client.status !== 'ready' || this.closed) return;
    const startedAt = Date.now();
    // One sync at a time; one that has not answered within countTtl is given up on.
    if (this.syncStarted !== undefined && startedAt - this.syncStarted < this.timings.countTtl) return;
    this.syncStarted = startedAt;
    const generation = ++this.syncGeneration;
    if (startedAt - this.lastRewrite >= this.config.reconcileInterval) {
      // Now and then, every count again: repairs this machine's share should Redis have lost a write.
      this.lastRewrite = startedAt;
      for (const counts of this.pools.values()) counts.rewrite();
    }
    const local = this.localByPool();
    if (this.tracked.keys !== this.keys) this.tracked = { keys: this.keys, pools: new Set(keysByPool(this.keys).keys()) };
    const wanted = new Set([...this.tracked.pools, ...local.keys()]);
    for (const pool of wanted) if (!this.pools.has(pool)) this.pools.set(pool, new PoolCounts(pool));
    const again = await Promise.all(
      [...this.pools].map(([pool, counts]) => this.syncPool(pool, counts, wanted.has(pool) ? counts.request(local.get(pool) ?? new Map(), ++this.writes) : counts.leave(++this.writes), generation)),
    );
    if (generation !== this.syncGeneration) return;
    this.syncStarted = undefined;
    const remote = new Map<string, number>();
    for (const counts of this.pools.values()) counts.addRemote(remote);
    this.remote = remote;
    this.emit('counts', startedAt);
    if (this.localClients !== null) void this.syncClients(this.localClients);
    if (startedAt - this.lastStep >= Math.max(this.timings.syncInterval, this.config.reconcileInterval / RECONCILE_OFFERS)) {
      this.lastStep = startedAt;
      for (const pool of this.pools.keys()) void this.reconcileStep(pool);
    }
    // A pool refused a write on top of a share that is not there (this machine was taken out while
    // alive, a reply was lost, Redis lost a write): all of its counts, now.
    if (again.some(Boolean)) void this.sync();
  }

  /** This machine's counts (keyed `pool/host:port`) by pool, keyed host:port. */
  private localByPool(): Map<string, Map<string, number>> {
    const pools = new Map<string, Map<string, number>>();
    for (const [key, n] of this.local) {
      let parts = this.split.get(key);
      if (parts === undefined) this.split.set(key, (parts = splitKey(key)));
      let m = pools.get(parts[0]);
      if (m === undefined) pools.set(parts[0], (m = new Map<string, number>()));
      m.set(parts[1], n);
    }
    return pools;
  }

  /**
   * One pool's script, and its totals read back: in the same round trip while the pool is busy,
   * after the script's reply when an idle pool's totals moved. True when the reply asks for every
   * count at once.
   */
  private async syncPool(pool: string, counts: PoolCounts, request: SyncRequest, generation: number): Promise<boolean> {
    const k = this.poolKeys(pool);
    try {
      const script = this.client.syncPool(
        k.machines,
        k.totals,
        k.connsPrefix + this.machineId,
        k.reconcile,
        this.machineId,
        this.timings.countTtl,
        request.mode,
        request.version,
        k.connsPrefix,
        KEY_LIFETIME_MS,
        request.seq,
        request.base,
        ...request.pairs,
      );
      // Auto-pipelining sends both in one write; Redis runs them in order on this connection.
      // (Its failure is the script's: caught there, so never left unhandled.)
      const ahead = request.mode !== 'leave' && counts.readAhead() ? this.client.hgetall(k.totals).catch(() => null) : undefined;
      const [applied, version] = await script;
      let totals = ahead === undefined ? undefined : await ahead;
      if (generation !== this.syncGeneration || totals === null) {
        counts.failed();
        return false;
      }
      if (request.mode === 'leave') {
        this.pools.delete(pool);
        return false;
      }
      if (totals === undefined && applied === 1 && counts.behind(version)) totals = await this.client.hgetall(k.totals);
      return counts.applied(request, { applied: applied === 1, version, totals });
    } catch {
      // Redis went away mid-call, or the call failed: the counts are sent again in full next time.
      counts.failed();
      return false;
    }
  }

  /** Offers a step to the pool's reconciliation (most calls find none due and return at once). */
  private async reconcileStep(pool: string): Promise<void> {
    const k = this.poolKeys(pool);
    try {
      const [phase, repaired] = await this.client.reconcilePool(k.machines, k.totals, k.reconcile, k.reconciled, k.connsPrefix, this.config.reconcileInterval, RECONCILE_BATCH);
      if (phase === 2 && repaired > 0) this.emit('repaired', pool, repaired);
    } catch {
      // The next step (any machine's) goes on from the same cursor.
    }
  }

  /** Writes this machine's hot client IPs and reads the other machines' (clientLimits.scope: fleet). */
  private async syncClients(local: readonly ClientCount[]): Promise<void> {
    if (this.client.status !== 'ready') return;
    const pairs: string[] = [];
    for (const [ip, tunnels, debt] of local) pairs.push(ip, `${tunnels}:${debt}`);
    try {
      const flat = await this.clientsScript('sync', pairs);
      const remote: ClientCount[] = [];
      for (let i = 0; i + 2 < flat.length; i += 3) remote.push([String(flat[i]), Number(flat[i + 1]), Number(flat[i + 2])]);
      this.remoteClientCounts = remote;
      this.emit('clients');
    } catch {
      // As for the counts above.
    }
  }

  private clientsScript(mode: 'sync' | 'leave', pairs: string[]): Promise<(string | number)[]> {
    const f = this.fleetPrefix;
    return this.client.syncClients(`${f}client-deadlines`, `${f}client-sums`, `${f}clients:${this.machineId}`, this.machineId, this.timings.countTtl, `${f}clients:`, KEY_LIFETIME_MS, mode, ...pairs);
  }
}
