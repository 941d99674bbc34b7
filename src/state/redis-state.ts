// Shared state for a fleet of balancer machines, in Redis (ioredis). One instance per machine, in
// the primary. Key layout (every key carries the cluster name in a hash tag, so a Redis Cluster keeps
// them in one slot and two fleets can share one Redis):
//
//   switchyard:{<cluster>}:lease:<pool>/<host:port>   string  machine id of the health checker, PX leaseTtl
//   switchyard:{<cluster>}:health                     hash    <pool>/<host:port> -> up | down
//   switchyard:{<cluster>}:admin                      hash    <pool>/<host:port> -> ready | drain | maintenance
//   switchyard:{<cluster>}:machines                   set     machine ids that wrote counts
//   switchyard:{<cluster>}:conns:<machine id>         hash    <pool>/<host:port> -> live tunnels, PX countTtl
//   switchyard:{<cluster>}:client-machines            set     machine ids that wrote per-client counts
//   switchyard:{<cluster>}:clients:<machine id>       hash    client IP -> "tunnels:debt", PX countTtl
//                                                             (clientLimits.scope: fleet only; IPs near a limit)
//   switchyard:{<cluster>}:events                     pub/sub {"t":"health"|"admin","key",...}
//
// Failure behaviour: nothing waits on Redis. Reads answer from the last known state; when Redis is
// unreachable the status turns `degraded`, this machine checks every backend itself, and ioredis
// reconnects; on reconnect the state is read back and this machine's counts, verdicts and admin
// overrides are written again, so a restarted (empty) Redis converges without a balancer restart.
import Redis, { Cluster, type ChainableCommander, type RedisOptions } from 'ioredis';
import type { ClientCount } from '../client-limits';
import type { AdminState, RedisConfig } from '../config/schema';
import type { HealthState } from '../upstream/backend';
import { CachedState } from './shared-state';

/** SET NX PX, or renew when we already hold it: one round trip, atomic. */
const LEASE_LUA = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`;

const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Writes this machine's counts (replacing them, with expiry) and returns the sum over the other
 * machines, dropping machines whose counts expired. KEYS: machines set, own counts key.
 * ARGV: machine id, countTtl ms, counts key prefix, then key/count pairs.
 */
const SYNC_LUA = `
redis.call('DEL', KEYS[2])
if #ARGV > 3 then redis.call('HSET', KEYS[2], unpack(ARGV, 4)) end
redis.call('HSET', KEYS[2], '', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
local sums = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[1] then
    local h = redis.call('HGETALL', ARGV[3] .. m)
    if #h == 0 then redis.call('SREM', KEYS[1], m) end
    for i = 1, #h, 2 do
      if h[i] ~= '' then sums[h[i]] = (sums[h[i]] or 0) + tonumber(h[i + 1]) end
    end
  end
end
local flat = {}
for k, v in pairs(sums) do flat[#flat + 1] = k; flat[#flat + 1] = v end
return flat`;

/**
 * The same for per-client counts (clientLimits.scope: fleet): this machine's hot IPs replace its
 * hash, and the other machines' are summed by IP. KEYS: client machines set, own clients key. ARGV:
 * machine id, countTtl ms, clients key prefix, then ip/"tunnels:debt" pairs. Returns ip, tunnels, debt
 * triples (debt as text: Redis would truncate a Lua number to an integer).
 */
const CLIENT_SYNC_LUA = `
redis.call('DEL', KEYS[2])
if #ARGV > 3 then redis.call('HSET', KEYS[2], unpack(ARGV, 4)) end
redis.call('HSET', KEYS[2], '', '0:0')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
local tunnels, debt = {}, {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[1] then
    local h = redis.call('HGETALL', ARGV[3] .. m)
    if #h == 0 then redis.call('SREM', KEYS[1], m) end
    for i = 1, #h, 2 do
      if h[i] ~= '' then
        local colon = string.find(h[i + 1], ':', 1, true)
        tunnels[h[i]] = (tunnels[h[i]] or 0) + tonumber(string.sub(h[i + 1], 1, colon - 1))
        debt[h[i]] = (debt[h[i]] or 0) + tonumber(string.sub(h[i + 1], colon + 1))
      end
    end
  end
end
local flat = {}
for ip, n in pairs(tunnels) do flat[#flat + 1] = ip; flat[#flat + 1] = n; flat[#flat + 1] = tostring(debt[ip]) end
return flat`;

interface Scripts {
  lease(key: string, machine: string, ttl: number): Promise<number>;
  release(key: string, machine: string): Promise<number>;
  syncCounts(machines: string, own: string, machine: string, ttl: number, prefix: string, ...pairs: (string | number)[]): Promise<(string | number)[]>;
  syncClients(machines: string, own: string, machine: string, ttl: number, prefix: string, ...pairs: string[]): Promise<(string | number)[]>;
}
type ScriptedRedis = Redis & Scripts;
type ScriptedPipeline = ChainableCommander & {
  lease(key: string, machine: string, ttl: number): ScriptedPipeline;
  release(key: string, machine: string): ScriptedPipeline;
};

type EventMessage = { t: 'health'; key: string; health: HealthState; by: string } | { t: 'admin'; key: string; admin: AdminState; by: string };

/**
 * A connection to a single Redis (Sentinel through `options`) or, with `cluster`, to a Redis Cluster
 * seeded from `url`: every key of a fleet carries the `{clusterName}` hash tag, so pipelines and the
 * scripts touch one slot, and pub/sub reaches every node.
 */
function connect(config: RedisConfig, options: RedisOptions): Redis | Cluster {
  if (!config.cluster) return new Redis(config.url, options);
  const u = new URL(config.url);
  const { enableOfflineQueue, retryStrategy, ...redisOptions } = options;
  if (u.username) redisOptions.username = decodeURIComponent(u.username);
  if (u.password) redisOptions.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') redisOptions.tls ??= {};
  return new Cluster([{ host: u.hostname, port: Number(u.port) || 6379 }], { redisOptions, enableOfflineQueue, clusterRetryStrategy: retryStrategy });
}

/** How long start() waits for a first connection before running degraded. */
const START_WAIT_MS = 2000;

export class RedisState extends CachedState {
  readonly kind = 'redis';
  private readonly client: ScriptedRedis;
  private readonly sub: Redis | Cluster;
  private readonly prefix: string;
  private closed = false;

  constructor(machineId: string, config: RedisConfig) {
    super(machineId, config);
    this.status = 'degraded'; // until the first 'ready'
    this.prefix = `switchyard:{${config.clusterName}}:`;
    const options: RedisOptions = {
      // Commands fail at once while disconnected instead of queueing: callers go on with what they know.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      ...(config.options as RedisOptions),
    };
    this.client = connect(config, options) as ScriptedRedis;
    this.client.defineCommand('lease', { numberOfKeys: 1, lua: LEASE_LUA });
    this.client.defineCommand('release', { numberOfKeys: 1, lua: RELEASE_LUA });
    this.client.defineCommand('syncCounts', { numberOfKeys: 2, lua: SYNC_LUA });
    this.client.defineCommand('syncClients', { numberOfKeys: 2, lua: CLIENT_SYNC_LUA });
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
    const subscribed = this.sub.subscribe(`${this.prefix}events`).catch(() => undefined);
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
    this.startTimers(
      () => void this.renewLeases(),
      () => void this.sync(),
    );
  }

  async close(graceful = true): Promise<void> {
    this.closed = true;
    this.stopTimers();
    if (graceful && this.client.status === 'ready') {
      const p = this.client.pipeline() as ScriptedPipeline;
      for (const key of this.held) p.release(this.key(`lease:${key}`), this.machineId);
      p.del(this.key(`conns:${this.machineId}`));
      p.srem(this.key('machines'), this.machineId);
      if (this.localClients !== null) p.del(this.key(`clients:${this.machineId}`)).srem(this.key('client-machines'), this.machineId);
      await p.exec().catch(() => undefined);
      await Promise.all([this.client.quit().catch(() => undefined), this.sub.quit().catch(() => undefined)]);
    }
    this.client.disconnect();
    this.sub.disconnect();
  }

  publishHealth(key: string, health: HealthState): void {
    this.applyHealth(key, health, this.machineId); // at once, Redis or not
    if (this.client.status !== 'ready') return;
    const message: EventMessage = { t: 'health', key, health, by: this.machineId };
    this.client.pipeline().hset(this.key('health'), key, health).publish(this.key('events'), JSON.stringify(message)).exec().catch(() => undefined);
  }

  async setAdmin(key: string, admin: AdminState): Promise<void> {
    this.applyAdmin(key, admin);
    const message: EventMessage = { t: 'admin', key, admin, by: this.machineId };
    // An operator's command: say so when it did not reach the fleet.
    if (this.client.status !== 'ready') throw new Error(`redis is unreachable; ${key} is ${admin} on this machine only`);
    const results = await this.client.pipeline().hset(this.key('admin'), key, admin).publish(this.key('events'), JSON.stringify(message)).exec();
    const failed = results?.find(([err]) => err !== null)?.[0];
    if (failed) throw failed;
  }

  override holdsLease(key: string): boolean {
    // Degraded: nobody can coordinate, so every machine checks every backend itself.
    return this.status === 'degraded' || super.holdsLease(key);
  }

  private key(name: string): string {
    return this.prefix + name;
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
      const [health, admin] = await Promise.all([this.client.hgetall(this.key('health')), this.client.hgetall(this.key('admin'))]);
      for (const [k, v] of Object.entries(health)) if ((v === 'up' || v === 'down') && this.health.get(k) !== v) this.applyHealth(k, v, 'redis');
      for (const [k, v] of Object.entries(admin)) this.applyAdmin(k, v as AdminState);
      const p = this.client.pipeline();
      for (const [k, v] of this.admin) if (!(k in admin)) p.hsetnx(this.key('admin'), k, v);
      await p.exec();
      this.setStatus('ok');
      await this.renewLeases();
      // Our checkers' verdicts, published again: while degraded every machine judged for itself.
      const q = this.client.pipeline();
      for (const k of this.held) {
        const h = this.health.get(k);
        if (h === undefined) continue;
        const message: EventMessage = { t: 'health', key: k, health: h, by: this.machineId };
        q.hset(this.key('health'), k, h).publish(this.key('events'), JSON.stringify(message));
      }
      await q.exec();
      await this.sync();
    } catch (err) {
      this.onDown((err as Error).message);
    }
  }

  private async renewLeases(): Promise<void> {
    if (this.client.status !== 'ready' || this.status !== 'ok') return;
    const p = this.client.pipeline() as ScriptedPipeline;
    for (const key of this.keys) p.lease(this.key(`lease:${key}`), this.machineId, this.timings.leaseTtl);
    const results = await p.exec().catch(() => null);
    if (results === null) return;
    this.keys.forEach((key, i) => {
      const [err, held] = results[i] ?? [];
      if (!err) this.setHeld(key, held === 1);
    });
  }

  private async sync(): Promise<void> {
    if (this.client.status !== 'ready') return;
    const pairs: (string | number)[] = [];
    for (const [k, n] of this.local) if (n > 0) pairs.push(k, n);
    try {
      const flat = await this.client.syncCounts(
        this.key('machines'),
        this.key(`conns:${this.machineId}`),
        this.machineId,
        this.timings.countTtl,
        this.key('conns:'),
        ...pairs,
      );
      const remote = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) remote.set(String(flat[i]), Number(flat[i + 1]));
      this.remote = remote;
      this.emit('counts');
    } catch {
      // Redis went away mid-call: keep the last counts; the status already says degraded.
    }
    if (this.localClients !== null) await this.syncClients(this.localClients);
  }

  /** Writes this machine's hot client IPs and reads the other machines' (clientLimits.scope: fleet). */
  private async syncClients(local: readonly ClientCount[]): Promise<void> {
    if (this.client.status !== 'ready') return;
    const pairs: string[] = [];
    for (const [ip, tunnels, debt] of local) pairs.push(ip, `${tunnels}:${debt}`);
    try {
      const flat = await this.client.syncClients(this.key('client-machines'), this.key(`clients:${this.machineId}`), this.machineId, this.timings.countTtl, this.key('clients:'), ...pairs);
      const remote: ClientCount[] = [];
      for (let i = 0; i + 2 < flat.length; i += 3) remote.push([String(flat[i]), Number(flat[i + 1]), Number(flat[i + 2])]);
      this.remoteClientCounts = remote;
      this.emit('clients');
    } catch {
      // As for the counts above.
    }
  }
}
