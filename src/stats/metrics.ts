// Every Switchyard metric, declared once (Envoy's habit: a component's stats in one list).
//
// Each process (primary and every worker) has this registry. Workers publish their plain hot-path
// counters (counters.ts) and their backends' state at scrape time through collect() callbacks, so
// nothing per message touches prom-client. The primary asks every worker for its registry as JSON
// over IPC and sums them with its own (cluster-metrics.ts, prom-client's AggregatorRegistry);
// `aggregator` below says how a metric combines across processes when plain summing is wrong.
// Label values are bounded: pools, backends, routes, outcomes, close-code classes, worker slots;
// never anything per client.
// No metric may take a process down: a read that fails (process.memoryUsage.rss() throws EMFILE at
// the descriptor limit) leaves that metric out of that scrape, and metricsJson() below answers with
// whatever metrics could be read.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Aggregator } from 'prom-client';
import { ADMIN_STATES, fixedBackends, type PoolConfig } from '../config/schema';
import { AdminRefusals, LOCAL_RESOURCE_ERRORS } from '../errors';
import { LOCAL_FAILURE_OPS } from '../local-failures';
import type { CertificateInfo } from '../config/tls-files';
import { DECISION_LABELS } from '../load-balancer/load-balancer';
import { assemblyBudget } from '../proxy/frame-reader';
import { Backend } from '../upstream/backend';
import type { Pool } from '../upstream/pool';
import { CLOSE_CODE_LABELS, CLOSE_SIDES, counters, STATUS_CLASS_LABELS } from './counters';

/** This process's metrics. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** This process's metrics as JSON; a metric whose collection fails is left out, never the whole answer. */
export async function metricsJson(): Promise<MetricsJson> {
  const out: MetricsJson = [];
  // prom-client's own getMetricsAsJSON() fails whole when one metric's get() does.
  for (const metric of registry.getMetricsAsArray() as unknown as { get(): Promise<MetricsJson[number]> }[]) {
    try {
      out.push(await metric.get());
    } catch {
      // out of descriptors or memory right now: the next scrape has it again
    }
  }
  return out;
}

type Labels<L extends string> = Partial<Record<L, string>>;
type Emit<L extends string> = (value: number, labels?: Labels<L>) => void;

// ---- what the collect() callbacks read ----

/** A worker's pools (set by bindWorker); empty in the primary. */
let pools: readonly Pool[] = [];
/** A worker's slot number as a label value ("0", "1", ...): stable across restarts, so bounded. */
let workerSlot: string | undefined;
let loopDelay: IntervalHistogram | undefined;
let loopWindowStart = 0;
/** monitorEventLoopDelay samples with a timer of this period and reports it as part of each delay. */
const LOOP_RESOLUTION_MS = 10;

/** A worker slot as the primary sees it. */
export interface WorkerView {
  slot: number;
  pid: number | undefined;
  /** Forked and listening on the public port. */
  listening: boolean;
  restarts: number;
  startedAt: number;
  /** An old generation's worker after a reload: no longer accepting, finishing its tunnels. */
  retiring: boolean;
}
let primaryWorkers: (() => readonly WorkerView[]) | undefined;

/** Redis state as reported by this process; undefined = this process says nothing about Redis. */
let redis: { configured: boolean; connected: boolean } | undefined;

function eachBackend(fn: (pool: Pool, backend: Backend) => void): void {
  for (const pool of pools) for (const backend of pool.backends) fn(pool, backend);
}

/** A counter whose value is read from plain counts at scrape time. */
function countedAtScrape<L extends string>(name: string, help: string, labelNames: readonly L[], read: (emit: Emit<L>) => void, aggregator: Aggregator = 'sum'): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    aggregator,
    registers: [registry],
    collect(this: Counter<L>) {
      this.reset();
      try {
        read((value, labels) => (labels ? this.inc(labels, value) : this.inc(value)));
      } catch {
        // left out of this scrape (see the top of this file)
      }
    },
  });
}

/** A gauge read at scrape time; a process that emits nothing contributes nothing to the aggregate. */
function readAtScrape<L extends string>(name: string, help: string, labelNames: readonly L[], aggregator: Aggregator, read: (emit: Emit<L>) => void): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames,
    aggregator,
    registers: [registry],
    collect(this: Gauge<L>) {
      this.reset();
      try {
        read((value, labels) => (labels ? this.set(labels, value) : this.set(value)));
      } catch {
        // left out of this scrape (see the top of this file)
      }
    },
  });
}

const POOL_BACKEND = ['pool', 'backend'] as const;
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// ---- tunnels ----

readAtScrape('switchyard_tunnels_active', 'Tunnels open or being opened, per backend, summed over workers.', POOL_BACKEND, 'sum', (emit) =>
  eachBackend((pool, b) => emit(b.active, { pool: pool.name, backend: b.name })),
);

readAtScrape(
  'switchyard_backend_connects_in_flight',
  "Connects under way to each backend (TCP connect plus the upgrade's answer, or a plain-HTTP connect), summed over workers; a worker skips a backend at its pool's maxConnectsInFlight.",
  POOL_BACKEND,
  'sum',
  (emit) => eachBackend((pool, b) => emit(b.connecting, { pool: pool.name, backend: b.name })),
);

/** A worker's count of client IPs with per-client state (client-limits.ts); unset in the primary. */
let clientIps: (() => number) | undefined;

readAtScrape('switchyard_client_ips_tracked', 'Client IPs with per-client limit state (tunnels open, or upgrades not yet paid back), summed over workers.', [], 'sum', (emit) => {
  if (clientIps !== undefined) emit(clientIps());
});

countedAtScrape('switchyard_tunnels_opened_total', 'Tunnels opened (client got its 101), per backend.', POOL_BACKEND, (emit) =>
  eachBackend((pool, b) => emit(b.tunnelsOpened, { pool: pool.name, backend: b.name })),
);

countedAtScrape(
  'switchyard_tunnels_closed_total',
  'Tunnels closed, by the side that closed first (client, backend, balancer) and its close code (1000-1015 as themselves, 3xxx, 4xxx; 1006 = connection lost).',
  ['side', 'code'],
  // Every side x code from the start (57 series), zeros included: a fresh dashboard has data.
  (emit) => CLOSE_SIDES.forEach((side, s) => CLOSE_CODE_LABELS.forEach((code, c) => emit(counters.closes[s * CLOSE_CODE_LABELS.length + c], { side, code }))),
);

countedAtScrape('switchyard_upgrades_total', 'WebSocket upgrade attempts by outcome: ok, or the errors.ts label of why it was refused.', ['outcome'], (emit) => {
  for (const [outcome, value] of Object.entries(counters.upgrades)) emit(value, { outcome });
});

/**
 * One histogram series kept as plain counts: observing is a short loop and three increments, with
 * no labels to hash (prom-client's Histogram#observe validates and hashes its labels on every call:
 * 2-3k of a worker's ~130k user-space instructions per upgrade cycle in churn, bench/README.md).
 */
export class LatencyCounts {
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly buckets: number[] = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    this.buckets[i]++;
    this.sum += seconds;
    this.count++;
  }
}

/**
 * A histogram of LatencyCounts per pool, published at scrape time in the shape prom-client's own
 * Histogram#get() gives, so its text format and the cluster's summing treat it as theirs.
 */
class PoolLatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator: Aggregator = 'sum';
  readonly series = new Map<string, LatencyCounts>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {
    // The registry only calls get() and reset(); its type names prom-client's own classes.
    registry.registerMetric(this as unknown as Histogram);
  }

  /** The pool's series; made at bind time so that every pool shows from the first scrape. */
  of(pool: string): LatencyCounts {
    let counts = this.series.get(pool);
    if (counts === undefined) this.series.set(pool, (counts = new LatencyCounts()));
    return counts;
  }

  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const [pool, counts] of this.series) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += counts.buckets[i];
        values.push({ labels: { le, pool }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', pool }, value: counts.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { pool }, value: counts.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { pool }, value: counts.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

const upgradeDuration = new PoolLatencyHistogram(
  'switchyard_upgrade_duration_seconds',
  'From the client upgrade request to the client 101 (backend connect and handshake included), per pool.',
);

/** One successful upgrade (once per tunnel, not per message). */
export function observeUpgrade(pool: string, seconds: number): void {
  upgradeDuration.of(pool).observe(seconds);
}

// ---- plain HTTP ----

countedAtScrape(
  'switchyard_http_requests_total',
  "Plain HTTP requests by outcome: ok (a backend's response relayed), client_gone (left before any answer), or the errors.ts label of the balancer's own answer.",
  ['outcome'],
  (emit) => {
    for (const [outcome, value] of Object.entries(counters.httpRequests)) emit(value, { outcome });
  },
);

countedAtScrape('switchyard_http_responses_total', 'Responses to plain HTTP requests by status class, relayed from a backend or made by the balancer.', ['code'], (emit) => {
  const r = counters.httpResponses; // by status / 100
  for (let c = 1; c <= 5; c++) emit(r[c], { code: STATUS_CLASS_LABELS[c - 1] });
  emit(r[0] + r[6] + r[7] + r[8] + r[9], { code: STATUS_CLASS_LABELS[5] });
});

// ---- messages ----

countedAtScrape('switchyard_messages_total', 'WebSocket messages relayed, by direction (to_backend, to_client).', ['direction'], (emit) => {
  emit(counters.messagesToBackend, { direction: 'to_backend' });
  emit(counters.messagesToClient, { direction: 'to_client' });
});

countedAtScrape('switchyard_bytes_total', 'WebSocket payload bytes relayed, by direction (to_backend, to_client).', ['direction'], (emit) => {
  emit(counters.bytesToBackend, { direction: 'to_backend' });
  emit(counters.bytesToClient, { direction: 'to_client' });
});

countedAtScrape('switchyard_backpressure_events_total', 'Times a client fell clientBufferLimit behind and the balancer paused reading its backend.', [], (emit) =>
  emit(counters.backendReadsPaused),
);

countedAtScrape('switchyard_slow_peer_closes_total', 'Tunnels closed because a peer could not keep up: backend (1013, backendBufferLimit) or client.', ['peer'], (emit) => {
  emit(counters.slowBackendCloses, { peer: 'backend' });
  emit(counters.slowClientCloses, { peer: 'client' });
});

countedAtScrape(
  'switchyard_proxy_protocol_refused_total',
  'Client connections the listener closed for a PROXY protocol reason (listen.proxyProtocol): not_configured (a header on a listener without proxyProtocol), untrusted_peer (a header from a peer not in trustedProxies), missing_header (a peer in trustedProxies sent none, or nothing within 10 s), bad_header (a header that breaks the format), not_from_front (a connection to the internal port behind the front that did not come through it).',
  ['reason'],
  (emit) => {
    for (const [reason, value] of Object.entries(counters.proxyProtocolRefused)) emit(value, { reason });
  },
);

countedAtScrape(
  'switchyard_local_resource_failures_total',
  'Failures for want of local resources (cause: EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL) by what the balancer was doing (op: backend_connect, http_connect, health_check, accept, fork); never counted against a backend.',
  ['cause', 'op'],
  // Every cause x op from the start (25 series), zeros included: a fresh dashboard has data.
  (emit) => {
    for (const cause of LOCAL_RESOURCE_ERRORS) {
      for (const op of LOCAL_FAILURE_OPS) emit(counters.localFailures[`${cause} ${op}`] ?? 0, { cause, op });
    }
  },
);

countedAtScrape(
  'switchyard_messages_too_big_total',
  'Tunnels closed with 1009, by where the message came from (client, backend) and the limit it met: max_payload (the route\'s maxPayload) or assembly (messageAssemblyLimit: the worker holds too many large backend messages being assembled).',
  ['from', 'limit'],
  (emit) => {
    emit(counters.tooBigFromClient, { from: 'client', limit: 'max_payload' });
    emit(counters.tooBigFromBackend, { from: 'backend', limit: 'max_payload' });
    emit(assemblyBudget.refused, { from: 'backend', limit: 'assembly' });
  },
);

countedAtScrape('switchyard_idle_closes_total', 'Tunnels closed by an idle timeout: a client that stopped answering pings, or a backend (1011).', ['side'], (emit) => {
  emit(counters.idleClientCloses, { side: 'client' });
  emit(counters.idleBackendCloses, { side: 'backend' });
});

// ---- balancing ----

countedAtScrape(
  'switchyard_balancer_decisions_total',
  'Picks of a backend that were more than plain balancing, per pool: hashed (hash: the key\'s own backend), spilled (hash: its own backend was over balanceFactor, the next in the key\'s order took it), fallback (hash: the request had no key, least-connections picked), slow_start (a ramping backend made the pick differ from what full weights would give); counted when two or more backends could take the tunnel or request. paced: an upgrade waited for its backend\'s turn under maxUpgradesPerSecond (those refused when the queue was full are switchyard_upgrades_total{outcome="paced"}). rebalanced: a tunnel a rebalance closed (1012) so that its client reconnects to an emptier backend.',
  ['pool', 'decision'],
  (emit) => {
    for (const pool of pools) {
      const hashing = pool.config.algorithm === 'hash' || pool.config.algorithm === 'ip-hash';
      const paced = pool.config.maxUpgradesPerSecond > 0;
      DECISION_LABELS.forEach((decision, i) => {
        if (decision === 'rebalanced' || (decision === 'paced' ? paced : hashing || decision === 'slow_start')) emit(pool.decisions[i], { pool: pool.name, decision });
      });
    }
  },
);

// ---- backends ----

// A backend counts as up only when every worker sees it up.
readAtScrape('switchyard_backend_up', 'Backend health state: 1 up, 0 down (the minimum over workers).', POOL_BACKEND, 'min', (emit) =>
  eachBackend((pool, b) => emit(b.health === 'up' ? 1 : 0, { pool: pool.name, backend: b.name })),
);

readAtScrape('switchyard_backend_admin_state', 'Backend admin state: 1 for the current state (ready, drain, maintenance), 0 for the others.', ['pool', 'backend', 'state'], 'max', (emit) =>
  eachBackend((pool, b) => {
    for (const state of ADMIN_STATES) emit(b.admin === state ? 1 : 0, { pool: pool.name, backend: b.name, state });
  }),
);

readAtScrape(
  'switchyard_backend_max_connections',
  'The most tunnels a backend may hold fleet-wide (its maxConnections); 0 = no limit.',
  POOL_BACKEND,
  'max',
  (emit) => eachBackend((pool, b) => emit(b.maxConnections, { pool: pool.name, backend: b.name })),
);

// Ejections are decided by the primary and mirrored into every worker: the same count everywhere, so max.
countedAtScrape(
  'switchyard_backend_ejections_total',
  'Times outlier detection ejected a backend (on this machine).',
  POOL_BACKEND,
  (emit) => eachBackend((pool, b) => emit(b.ejections, { pool: pool.name, backend: b.name })),
  'max',
);

const healthCheckDuration = new Histogram({
  name: 'switchyard_health_check_duration_seconds',
  help: 'Duration of active health checks, per backend.',
  labelNames: POOL_BACKEND,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

/** One active health check finished (called by the health checker). */
export function observeHealthCheck(pool: string, backend: string, seconds: number): void {
  healthCheckDuration.observe({ pool, backend }, seconds);
}

/** A backend that left the pool (discovery removed it): its series go, so the label values stay those of the backends there are. */
export function forgetBackend(pool: string, backend: string): void {
  healthCheckDuration.remove({ pool, backend });
}

// ---- discovery ----

export const DISCOVERY_RESULTS = ['ok', 'failed'] as const;

const discoveryLookups = new Counter({
  name: 'switchyard_discovery_lookups_total',
  help: "DNS lookups of a pool's discovery name by this machine's primary: ok, or failed (timeout, SERVFAIL, no such name: the last good set is kept).",
  labelNames: ['pool', 'result'],
  registers: [registry],
});

/** One lookup of a pool's discovery name ended. */
export function countDiscoveryLookup(pool: string, result: (typeof DISCOVERY_RESULTS)[number]): void {
  discoveryLookups.inc({ pool, result });
}

/** The discovered backends of each pool with discovery, in the answer (live) and draining (left it); set in the primary. */
let discovered: (() => Iterable<{ pool: string; live: number; draining: number }>) | undefined;

readAtScrape('switchyard_discovery_backends', 'Backends found by DNS, per pool: state="live" in the latest good answer, state="draining" left it and still draining.', ['pool', 'state'], 'sum', (emit) => {
  for (const d of discovered?.() ?? []) {
    emit(d.live, { pool: d.pool, state: 'live' });
    emit(d.draining, { pool: d.pool, state: 'draining' });
  }
});

/** In the primary: the pools with discovery, their lookup results counted from zero, and where their backend counts are read. */
export function bindDiscovery(pools: readonly string[], read: () => Iterable<{ pool: string; live: number; draining: number }>): void {
  discovered = read;
  for (const pool of pools) for (const result of DISCOVERY_RESULTS) discoveryLookups.inc({ pool, result }, 0);
}

// ---- shared state ----

// Connected is the minimum over the processes that use Redis: one disconnected process shows.
readAtScrape('switchyard_redis_connected', 'Redis connection of the shared state: 1 connected, 0 not (or not configured).', [], 'min', (emit) => {
  if (redis) emit(redis.connected ? 1 : 0);
});
readAtScrape('switchyard_redis_configured', 'Whether shared state uses Redis: 1 yes, 0 no (in-memory state).', [], 'max', (emit) => {
  if (redis) emit(redis.configured ? 1 : 0);
});

const totalsRepaired = new Counter({
  name: 'switchyard_redis_totals_repaired_total',
  help: "Fleet tunnel totals a reconciliation found off and repaired, per pool (fields of the pool's totals; above 0 means something outside the balancers changed or lost Redis keys).",
  labelNames: ['pool'],
  registers: [registry],
});

/** A reconciliation run by this machine repaired `fields` totals of `pool`. */
export function countTotalsRepaired(pool: string, fields: number): void {
  totalsRepaired.inc({ pool }, fields);
}

const stateSyncDuration = new Histogram({
  name: 'switchyard_redis_sync_duration_seconds',
  help: "Duration of this machine's count syncs with Redis (every syncInterval: write what changed, read the fleet totals).",
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  registers: [registry],
});

/** One count sync finished. */
export function observeStateSync(seconds: number): void {
  stateSyncDuration.observe(seconds);
}

/** Called by the Redis client of the shared state on connect/disconnect. */
export function setRedisConnected(connected: boolean): void {
  redis = { configured: true, connected };
}

/** No Redis in the config: the shared state is in memory. */
export function setRedisNotConfigured(): void {
  redis = { configured: false, connected: false };
}

// ---- processes ----

const WORKER = ['worker'] as const;

readAtScrape('switchyard_worker_event_loop_lag_seconds', 'Event-loop delay of each worker: p99 over the last 10 s or so.', WORKER, 'sum', (emit) => {
  if (workerSlot === undefined || !loopDelay) return;
  const p99Ms = loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS : 0;
  emit(Math.max(0, p99Ms) / 1000, { worker: workerSlot });
  // A rolling window, so a stall shows for a while and then ages out.
  if (Date.now() - loopWindowStart > 10_000) {
    loopDelay.reset();
    loopWindowStart = Date.now();
  }
});

// rss() reads /proc/self/stat: with no descriptor left it throws EMFILE, and the worker leaves this
// scrape out (its collect() catches).
readAtScrape('switchyard_worker_resident_memory_bytes', 'Resident memory of each worker.', WORKER, 'sum', (emit) => {
  if (workerSlot !== undefined) emit(process.memoryUsage.rss(), { worker: workerSlot });
});

// From V8 directly: process.memoryUsage() would read /proc for the RSS too.
readAtScrape('switchyard_worker_heap_used_bytes', 'V8 heap in use in each worker.', WORKER, 'sum', (emit) => {
  if (workerSlot !== undefined) emit(getHeapStatistics().used_heap_size, { worker: workerSlot });
});

/** What a worker's listener counts against workerConnections (bindConnections). */
export interface ConnectionsView {
  open: number;
  limit: number;
  /** False while the accept guard has stopped listening at the descriptor limit. */
  accepting: boolean;
}
let connectionsView: (() => ConnectionsView) | undefined;

/** In a worker: publish its client connections, its workerConnections and whether it accepts. */
export function bindConnections(read: () => ConnectionsView): void {
  connectionsView = read;
}

readAtScrape('switchyard_worker_connections', 'Client connections of each worker counted against workerConnections: tunnels, upgrades being opened, plain requests in flight.', WORKER, 'sum', (emit) => {
  if (workerSlot !== undefined && connectionsView) emit(connectionsView().open, { worker: workerSlot });
});

readAtScrape('switchyard_worker_connections_limit', 'workerConnections of each worker: beyond it, new clients get 503.', WORKER, 'sum', (emit) => {
  if (workerSlot !== undefined && connectionsView) emit(connectionsView().limit, { worker: workerSlot });
});

readAtScrape('switchyard_worker_accepting', 'Whether each worker listens: 0 while it has stopped accepting at its descriptor limit.', WORKER, 'sum', (emit) => {
  if (workerSlot !== undefined && connectionsView) emit(connectionsView().accepting ? 1 : 0, { worker: workerSlot });
});

readAtScrape('switchyard_message_assembly_bytes', 'Bytes each worker holds for backend messages split across reads, counted against messageAssemblyLimit.', WORKER, 'sum', (emit) => {
  if (workerSlot !== undefined) emit(assemblyBudget.held, { worker: workerSlot });
});

readAtScrape('switchyard_workers', 'Worker processes listening on the public port.', [], 'sum', (emit) => {
  if (primaryWorkers) emit(primaryWorkers().filter((w) => w.listening).length);
});

readAtScrape('switchyard_workers_retiring', 'Workers of an older config generation, finishing their tunnels after a reload.', [], 'sum', (emit) => {
  if (primaryWorkers) emit(primaryWorkers().filter((w) => w.retiring).length);
});

let servedCertificates: (() => readonly CertificateInfo[] | undefined) | undefined;
readAtScrape(
  'switchyard_tls_certificate_expiry_timestamp_seconds',
  'When each certificate the public listener serves (the default and those chosen by SNI) expires (Unix seconds), by file; absent without TLS.',
  ['file'],
  'max',
  (emit) => {
    for (const cert of servedCertificates?.() ?? []) emit(cert.notAfter, { file: cert.file });
  },
);

/** The primary: the certificates of the config in force (they change on reload). */
export function bindCertificates(current: () => readonly CertificateInfo[] | undefined): void {
  servedCertificates = current;
}

const RELOAD_RESULTS = ['ok', 'refused'] as const;
const configReloads = new Counter({
  name: 'switchyard_config_reloads_total',
  help: 'Config reloads asked of the primary (SIGHUP, POST /reload): ok, or refused (the config did not validate, changed a key that needs a restart, or its workers did not start).',
  labelNames: ['result'],
  registers: [registry],
});

/** The primary finished a reload (or refused one). */
export function countReload(ok: boolean): void {
  configReloads.inc({ result: ok ? 'ok' : 'refused' });
}

const adminRefused = new Counter({
  name: 'switchyard_admin_requests_refused_total',
  help: 'Requests the admin listener refused, by reason: misdirected (a Host it does not answer to, 421), writes_off (a write with no token configured, 403), missing_token / wrong_token (401).',
  labelNames: ['reason'],
  registers: [registry],
});

/** The admin listener refused a request (src/errors.ts AdminRefusals). */
export function countAdminRefusal(reason: string): void {
  adminRefused.inc({ reason });
}

const workerRestarts = new Counter({
  name: 'switchyard_worker_restarts_total',
  help: 'Workers the primary restarted after they died, per worker slot.',
  labelNames: WORKER,
  registers: [registry],
});

/** The primary forked a replacement for the worker of `slot`. */
export function countWorkerRestart(slot: number): void {
  workerRestarts.inc({ worker: String(slot) });
}

// ---- binding to a process ----

/** In a worker: publish these pools' backends and this slot's process metrics. */
export function bindWorker(workerPools: Iterable<Pool>, slot: string, trackedClientIps?: () => number): void {
  pools = [...workerPools];
  clientIps = trackedClientIps;
  workerSlot = slot;
  for (const pool of pools) upgradeDuration.of(pool.name);
  loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loopDelay.enable();
  loopWindowStart = Date.now();
}

/**
 * In a worker retired by a reload: its slot's per-worker gauges now belong to the new worker of
 * that slot (summing both would mislead); its tunnels and counters are still published.
 */
export function unbindWorkerSlot(): void {
  workerSlot = undefined;
}

/**
 * In the primary: publish the worker slots, and start at zero every series the primary counts
 * (restarts per slot, reload results, admin refusals, health-check latency of each checked backend),
 * so that they exist before their first event. Called again after a reload, for its new slots and backends.
 */
export function bindPrimary(workers: () => readonly WorkerView[], poolConfigs: Readonly<Record<string, PoolConfig>>): void {
  primaryWorkers = workers;
  for (const [pool, pc] of Object.entries(poolConfigs)) {
    if (pc.healthCheck === undefined) continue;
    for (const b of fixedBackends(pc)) healthCheckDuration.zero({ pool, backend: new Backend(b, pool).name });
  }
  for (const w of workers()) workerRestarts.inc({ worker: String(w.slot) }, 0);
  for (const result of RELOAD_RESULTS) configReloads.inc({ result }, 0);
  for (const refusal of Object.values(AdminRefusals)) adminRefused.inc({ reason: refusal.label }, 0);
}
