// The /status document: what an operator wants at a glance, read from the same aggregated metrics
// that /metrics serves (one source of truth), plus the primary's own view of its workers.
import type { LoadedConfig } from '../config/load';
import type { CertificateInfo } from '../config/tls-files';
import { fixedBackends } from '../config/schema';
import type { DiscoveryStatus, RebalanceStatus, StatusReport } from './admin-api';
import { hashKeyOf } from '../load-balancer';
import type { MetricsJson, WorkerView } from '../stats/metrics';
import { Backend } from '../upstream/backend';

export interface BackendStatus {
  name: string;
  url: string;
  weight: number;
  admin: string;
  /** up / down as the workers see it; unknown when no worker answered. */
  health: 'up' | 'down' | 'unknown';
  tunnels: number;
  tunnelsOpened: number;
  ejections: number;
  /** The most tunnels it may hold fleet-wide; 0: no limit. */
  maxConnections: number;
  backup: boolean;
  /** While slow start ramps its weight: when the ramp ends (epoch ms); 0 when it has its full weight. */
  slowStartUntil: number;
  /** Found by DNS discovery rather than written in the config. */
  discovered: boolean;
}

export interface PoolStatus {
  name: string;
  algorithm: string;
  /** hash and ip-hash: what is hashed; null for the other algorithms. */
  hashKey: string | null;
  /** Bounded loads (hash); 0: unbounded. */
  balanceFactor: number;
  /** Slow start, ms; 0: off. */
  slowStart: number;
  /** New upgrades per second per backend from this machine; 0: not paced. */
  maxUpgradesPerSecond: number;
  /** Upgrades that waited for their backend's turn (decision="paced"). */
  paced: number;
  /** The pool's `rebalance` (null: by command only, with the defaults). */
  rebalanceConfig: { maxSkew: number; closesPerSecond: number; minTunnelAge: number; auto: boolean } | null;
  /** Its rebalance as this machine runs it, running or last ended; null when none ran. */
  rebalance: RebalanceStatus | null;
  /** Tunnels closed by rebalances (decision="rebalanced"), this machine. */
  rebalanced: number;
  /** DNS discovery: the name, how many backends it gives and drains, whether lookups fail; null: off. */
  discovery: DiscoveryStatus | null;
  backends: BackendStatus[];
}

type ServedCertificate = CertificateInfo & { daysLeft: number };

function servedCertificates(certificates: readonly CertificateInfo[], now: number): ServedCertificate & { certificates: ServedCertificate[] } {
  const served = certificates.map((c) => ({ ...c, daysLeft: daysUntil(c.notAfter, now) }));
  return { ...served[0], certificates: served };
}

export interface Status {
  ready: boolean;
  /** Why not ready (empty when ready). */
  notReady: string[];
  uptimeSeconds: number;
  /**
   * The public listener. proxyProtocol: listen.proxyProtocol (false, true or "v2"), the peers that
   * must send the header when it is on, and the connections closed for a PROXY reason since start, by reason.
   */
  listen: { host: string; port: number; proxyProtocol: { mode: boolean | 'v2'; trustedProxies: string[]; refused: Record<string, number> } };
  /**
   * The default certificate the listener serves, with whole days left before it expires, and every
   * certificate (the default first, then those chosen by SNI, each with its names); null without TLS.
   */
  tls: (ServedCertificate & { certificates: ServedCertificate[] }) | null;
  tunnels: number;
  messagesPerSecond: { toBackend: number; toClient: number };
  bytesPerSecond: { toBackend: number; toClient: number };
  totals: { messagesToBackend: number; messagesToClient: number; bytesToBackend: number; bytesToClient: number; upgrades: Record<string, number> };
  pools: PoolStatus[];
  workers: (WorkerView & {
    uptimeSeconds: number;
    eventLoopLagSeconds: number | null;
    residentMemoryBytes: number | null;
    /** Client connections against workerConnections; `accepting` false while stopped at the descriptor limit. null when the worker did not answer. */
    connections: { open: number; limit: number; accepting: boolean } | null;
  })[];
  redis: 'not configured' | 'connected' | 'disconnected' | 'unknown';
  /** Workers asked for metrics, and those that answered in time. */
  metricsFrom: { asked: number; answered: number };
}

type Values = { labels: Record<string, string | number | undefined>; value: number }[];

/** Reads aggregated metrics by name and labels. */
class MetricReader {
  private readonly byName = new Map<string, Values>();

  constructor(json: MetricsJson) {
    for (const m of json) this.byName.set(m.name, m.values);
  }

  find(name: string, labels: Record<string, string> = {}): number | undefined {
    const hit = this.byName.get(name)?.find((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want));
    return hit?.value;
  }

  sum(name: string, labels: Record<string, string> = {}): number {
    let total = 0;
    for (const v of this.byName.get(name) ?? []) if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) total += v.value;
    return total;
  }

  all(name: string): Values {
    return this.byName.get(name) ?? [];
  }
}

interface Sample {
  at: number;
  counts: [number, number, number, number];
}

/** How far back messages/s looks: long enough to smooth, short enough to follow a change. */
const RATE_WINDOW_MS = 10_000;

export interface ReadinessInputs {
  /** Every worker has listened once (the "switchyard ready" line). */
  started: boolean;
  workers: readonly WorkerView[];
}

/** Whole days from `now` (ms) to `notAfter` (Unix seconds); negative once it has passed. */
export function daysUntil(notAfter: number, now: number): number {
  return Math.floor((notAfter * 1000 - now) / 86_400_000);
}

export class StatusReporter {
  private readonly samples: Sample[] = [];
  private readonly startedAt = Date.now();

  /** `config`: the running one (a reload replaces it). */
  constructor(private readonly config: () => LoadedConfig, private readonly publicPort: number) {}

  /** `fleet`: the primary's view of the backends (for what only it knows, such as slow start). */
  build(json: MetricsJson, inputs: ReadinessInputs, metricsFrom: { asked: number; answered: number }, fleet?: StatusReport): Status {
    const m = new MetricReader(json);
    const now = Date.now();
    const config = this.config();
    const pools = Object.entries(config.pools).map(([name, pool]): PoolStatus => ({
      name,
      algorithm: pool.algorithm,
      hashKey: hashKeyOf(pool) ?? null,
      balanceFactor: pool.balanceFactor,
      slowStart: pool.slowStart,
      maxUpgradesPerSecond: pool.maxUpgradesPerSecond,
      paced: m.sum('switchyard_balancer_decisions_total', { pool: name, decision: 'paced' }),
      rebalanceConfig: pool.rebalance ?? null,
      rebalance: fleet?.rebalance[name] ?? null,
      rebalanced: m.sum('switchyard_balancer_decisions_total', { pool: name, decision: 'rebalanced' }),
      discovery: fleet?.discovery[name] ?? null,
      // The primary's list has the backends DNS discovery found; the config's when it is not at hand.
      backends: (fleet?.pools[name] ?? fixedBackends(pool).map((b) => ({ ...b, discovered: false }))).map((b): BackendStatus => {
        // As the metrics label it: host:port, the port filled in (443 for wss:// and https://, 80 for ws:// and http://).
        const backend = new Backend(b, name).name;
        const labels = { pool: name, backend };
        const up = m.find('switchyard_backend_up', labels);
        const admin = m.all('switchyard_backend_admin_state').find((v) => v.labels.pool === name && v.labels.backend === backend && v.value === 1);
        return {
          name: backend,
          url: b.url,
          weight: b.weight,
          admin: typeof admin?.labels.state === 'string' ? admin.labels.state : b.admin,
          discovered: b.discovered,
          health: up === undefined ? 'unknown' : up === 1 ? 'up' : 'down',
          tunnels: m.sum('switchyard_tunnels_active', labels),
          tunnelsOpened: m.sum('switchyard_tunnels_opened_total', labels),
          ejections: m.sum('switchyard_backend_ejections_total', labels),
          maxConnections: b.maxConnections,
          backup: b.backup,
          slowStartUntil: fleet?.pools[name]?.find((f) => f.backend === backend)?.slowStartUntil ?? 0,
        };
      }),
    }));

    const counts: Sample['counts'] = [
      m.sum('switchyard_messages_total', { direction: 'to_backend' }),
      m.sum('switchyard_messages_total', { direction: 'to_client' }),
      m.sum('switchyard_bytes_total', { direction: 'to_backend' }),
      m.sum('switchyard_bytes_total', { direction: 'to_client' }),
    ];
    const rates = this.rates(now, counts);

    const upgrades: Record<string, number> = {};
    for (const v of m.all('switchyard_upgrades_total')) upgrades[String(v.labels.outcome)] = v.value;

    const notReady: string[] = [];
    if (!inputs.started) notReady.push('workers are starting');
    else if (!inputs.workers.some((w) => w.listening)) notReady.push('no worker is listening');
    if (!pools.some((p) => p.backends.some((b) => b.health === 'up' && b.admin === 'ready'))) notReady.push('no healthy backend');

    const proxyRefused: Record<string, number> = {};
    for (const v of m.all('switchyard_proxy_protocol_refused_total')) proxyRefused[String(v.labels.reason)] = v.value;
    const configured = m.find('switchyard_redis_configured');
    const connected = m.find('switchyard_redis_connected');
    return {
      ready: notReady.length === 0,
      notReady,
      uptimeSeconds: Math.round((now - this.startedAt) / 1000),
      listen: {
        host: config.listen.host,
        port: this.publicPort,
        proxyProtocol: { mode: config.listen.proxyProtocol, trustedProxies: config.listen.proxyProtocol !== false ? [...config.trustedProxies] : [], refused: proxyRefused },
      },
      tls: config.certificates ? servedCertificates(config.certificates, now) : null,
      tunnels: m.sum('switchyard_tunnels_active'),
      messagesPerSecond: { toBackend: rates[0], toClient: rates[1] },
      bytesPerSecond: { toBackend: rates[2], toClient: rates[3] },
      totals: { messagesToBackend: counts[0], messagesToClient: counts[1], bytesToBackend: counts[2], bytesToClient: counts[3], upgrades },
      pools,
      workers: inputs.workers.map((w) => ({
        ...w,
        uptimeSeconds: w.pid === undefined ? 0 : Math.round((now - w.startedAt) / 1000),
        eventLoopLagSeconds: m.find('switchyard_worker_event_loop_lag_seconds', { worker: String(w.slot) }) ?? null,
        residentMemoryBytes: m.find('switchyard_worker_resident_memory_bytes', { worker: String(w.slot) }) ?? null,
        connections: this.connections(m, String(w.slot)),
      })),
      redis: configured === undefined ? 'unknown' : configured === 0 ? 'not configured' : connected === 1 ? 'connected' : 'disconnected',
      metricsFrom,
    };
  }

  private connections(m: MetricReader, worker: string): Status['workers'][number]['connections'] {
    const open = m.find('switchyard_worker_connections', { worker });
    const limit = m.find('switchyard_worker_connections_limit', { worker });
    if (open === undefined || limit === undefined) return null;
    return { open, limit, accepting: m.find('switchyard_worker_accepting', { worker }) !== 0 };
  }

  /** Per-second rates over the last RATE_WINDOW_MS of /status calls (0 until there are two). */
  private rates(now: number, counts: Sample['counts']): Sample['counts'] {
    while (this.samples.length > 1 && now - this.samples[1].at >= RATE_WINDOW_MS) this.samples.shift();
    const base = this.samples[0];
    this.samples.push({ at: now, counts });
    if (!base || now - base.at < 200) return [0, 0, 0, 0];
    const seconds = (now - base.at) / 1000;
    // A restarted worker's counters start over: never show a negative rate.
    return counts.map((c, i) => Math.max(0, (c - base.counts[i]) / seconds)) as Sample['counts'];
  }
}
