// The one schema of Switchyard's configuration: every key, its type and its default.
// The README's config reference is generated from the same names; keep the two in step.
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration, parseSize } from './units';

const duration = (what: string) =>
  z.preprocess((v) => parseDuration(v) ?? v, z.number({ error: `must be a duration such as 500ms, 30s or 2m (${what})` }).int().nonnegative());

const size = (what: string) =>
  z.preprocess((v) => parseSize(v) ?? v, z.number({ error: `must be a size such as 64KiB or 16MiB (${what})` }).int().positive());

const backendUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'ws:' || u.protocol === 'http:') && u.hostname !== '' && u.port !== '';
    } catch {
      return false;
    }
  },
  { message: 'must be ws://host:port or http://host:port (the backend hop is plain TCP: no wss:// or https:// backends yet)' },
);

export const ALGORITHMS = ['least-connections', 'ip-hash', 'round-robin'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** HAProxy's admin states: ready takes traffic, drain keeps existing tunnels but gets no new ones, maintenance gets nothing. */
export const ADMIN_STATES = ['ready', 'drain', 'maintenance'] as const;
export type AdminState = (typeof ADMIN_STATES)[number];

const backendSchema = z.strictObject({
  url: backendUrl,
  weight: z.number().int().min(1).max(256).default(1),
  admin: z.enum(ADMIN_STATES).default('ready'),
  /** Most tunnels the backend holds fleet-wide (NGINX's max_conns, HAProxy's server maxconn); 0: no limit. */
  maxConnections: z.number().int().min(0).default(0),
  /** Gets tunnels and requests only while no other backend of the pool can take them (NGINX's and HAProxy's `backup`). */
  backup: z.boolean().default(false),
});

/** "200-399" or 200: the statuses an http health check accepts. */
const statusRange = z.preprocess(
  (v) => (typeof v === 'number' ? `${v}` : v),
  z.string().regex(/^[1-5]\d\d(-[1-5]\d\d)?$/, 'must be a status such as 200 or a range such as 200-399'),
);

export const HEALTH_CHECK_TYPES = ['http', 'tcp', 'websocket'] as const;

/** Active health checks (HAProxy's check / Envoy's health_checks): off unless configured. */
const healthCheckSchema = z.strictObject({
  type: z.enum(HEALTH_CHECK_TYPES).default('tcp'),
  /** http and websocket: the path requested. */
  path: z.string().startsWith('/', 'must start with /').default('/'),
  /** http: accepted statuses. */
  expectStatus: statusRange.default('200-399'),
  /** http: the response body must contain this text. */
  bodyContains: z.string().min(1).optional(),
  interval: duration('interval').pipe(z.number().min(50, 'must be at least 50ms')).default(5000),
  timeout: duration('timeout').pipe(z.number().min(1, 'must be more than 0')).default(2000),
  /** Consecutive passes that bring a down backend up. */
  rise: z.number().int().min(1).max(100).default(2),
  /** Consecutive failures that bring an up backend down. */
  fall: z.number().int().min(1).max(100).default(3),
  /** Up to this much random delay before each check, so checks from many machines do not align; default interval/10. */
  jitter: duration('jitter').optional(),
});

/** Passive health (Envoy's outlier detection): on by default. */
const outlierDetectionSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Failed connects, failed upgrades (5xx) and abnormal backend closes in a row that eject a backend. */
  consecutiveFailures: z.number().int().min(1).max(1000).default(5),
  /** The failures must fall within this window. */
  window: duration('window').default(30_000),
  /** First ejection lasts this long; each further ejection adds as much again. */
  baseEjectionTime: duration('baseEjectionTime').pipe(z.number().min(1, 'must be more than 0')).default(30_000),
  maxEjectionTime: duration('maxEjectionTime').default(300_000),
  /** Never eject more than this percentage of a pool's backends. */
  maxEjectionPercent: z.number().int().min(0).max(100).default(50),
});

const poolSchema = z.strictObject({
  algorithm: z.enum(ALGORITHMS).default('least-connections'),
  backends: z.array(backendSchema).min(1, 'needs at least one backend'),
  /** TCP connect plus the backend's answer to the upgrade. */
  connectTimeout: duration('connectTimeout').default(5000),
  /** Plain HTTP: the wait for a backend's response head once the request went out (NGINX's proxy_read_timeout). */
  responseTimeout: duration('responseTimeout').pipe(z.number().min(1, 'must be more than 0')).default(60_000),
  /** Further backends tried after a failed connect; NGINX's proxy_next_upstream_tries - 1. */
  retries: z.number().int().min(0).max(16).default(2),
  /** least-connections: compare two random backends (p2c) instead of all, so balancers with stale fleet counts do not herd. */
  herdingGuard: z.enum(['p2c', 'off']).default('p2c'),
  healthCheck: healthCheckSchema.optional(),
  outlierDetection: outlierDetectionSchema.prefault({}),
});

/**
 * PEM files, read by each worker when it starts (so a reload picks up a renewed certificate at the
 * same path). A relative path is taken from the config file's directory.
 */
const tlsSchema = z.strictObject({
  /** The certificate, followed by its intermediates (NGINX's ssl_certificate, a full chain). */
  cert: z.string().min(1),
  key: z.string().min(1),
  /** For an encrypted key. */
  passphrase: z.string().min(1).optional(),
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are fixed); omitted: the library's defaults. */
  ciphers: z.string().min(1).optional(),
  /** Also listen for plain HTTP on this port and answer every request with a 301 to https:// (NGINX's `return 301 https://$host$request_uri`). */
  redirectHttpPort: z.number().int().min(1).max(65535).optional(),
});

export const ROUTE_MODES = ['websocket', 'http', 'both'] as const;

/** Settings of a client tunnel; uWS applies the client-side ones per URL pattern, see listener.ts. */
const tunnelSettings = {
  /** Client side: close after this long without traffic; uWS pings the client before it expires. 0 disables. */
  idleTimeout: duration('idleTimeout').default(120_000),
  /** Backend side: ping the backend after half of this without traffic, close when nothing came back. 0 disables. */
  backendIdleTimeout: duration('backendIdleTimeout').default(120_000),
  /** Largest message either way; a larger one closes the tunnel with 1009. */
  maxPayload: size('maxPayload').default(16 * 1024 * 1024),
  /** Backend -> client: stop reading the backend while the client has more than this queued. */
  clientBufferLimit: size('clientBufferLimit').default(1024 * 1024),
  /** Client -> backend: close the tunnel with 1013 when more than this waits for a slow backend. */
  backendBufferLimit: size('backendBufferLimit').default(4 * 1024 * 1024),
  /** Accept permessage-deflate offers from clients (costs CPU; the backend hop is never compressed). */
  compression: z.boolean().default(false),
};

const routeSchema = z.strictObject({
  /** Host header to match (port ignored, case-insensitive); omitted or "*" matches any. */
  host: z.string().min(1).optional(),
  /** Path prefix, matched on segment boundaries: /chat matches /chat, /chat/x and /chat?x, not /chatroom. */
  path: z.string().startsWith('/', 'must start with /').default('/'),
  pool: z.string().min(1),
  /** websocket: upgrades only (plain requests get 426); http: plain requests only; both: either. */
  mode: z.enum(ROUTE_MODES).default('both'),
  ...tunnelSettings,
});

export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        host: z.string().min(1).default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(8080),
        /** TLS termination (wss:// and https:// for clients); the backend hop stays plain. */
        tls: tlsSchema.optional(),
      })
      .prefault({}),
    /** The admin listener (in the primary): /metrics, /healthz, /readyz, /status, the status page and POST /admin. Never on the public port; keep it on loopback. */
    admin: z
      .strictObject({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(9090),
      })
      .prefault({}),
    /** Worker processes; "auto" is one per core. */
    workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto'),
    /** On SIGTERM/SIGINT: how long tunnels may take to close after 1001 before the workers exit anyway. */
    drainTimeout: duration('drainTimeout').default(10_000),
    /**
     * After a reload (SIGHUP, `switchyard reload`): how long the old workers keep their tunnels
     * before closing them with 1001 (as NGINX's worker_shutdown_timeout, HAProxy's hard-stop-after).
     */
    retireTimeout: duration('retireTimeout').default(600_000),
    /** Peers whose X-Forwarded-For is trusted (appended to, and used as the client IP for ip-hash). */
    trustedProxies: z
      .array(
        z.string().refine((s) => {
          const [addr, bits, extra] = s.split('/');
          const family = isIP(addr ?? '');
          return family !== 0 && extra === undefined && (bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)));
        }, 'must be an IP address or CIDR range such as 10.0.0.0/8'),
      )
      .default([]),
    /**
     * Limits per client IP (the peer, or the X-Forwarded-For address behind trustedProxies), as
     * NGINX's limit_conn and limit_req, HAProxy's sc_conn_cur and sc_http_req_rate. Over a limit an
     * upgrade gets 429 with Retry-After; tunnels already open stay. Sized for chat: a client holds 1-3
     * tunnels, and an office of 200 behind one NAT address with 3 tabs each holds 600 and, after an
     * outage, asks for them all at once.
     */
    clientLimits: z
      .strictObject({
        /** Most tunnels one IP holds at once (open or being opened); 0: no limit. 1024 leaves that office room, and stops one address from holding a worker's descriptors. */
        maxTunnels: z.number().int().min(0).default(1024),
        /** Upgrades one IP may start per second, on average (token bucket); 0: no limit. A chat client reconnects a few times an hour; 20/s stops a reconnect loop or a flood from one address. */
        upgradesPerSecond: z.number().min(0).max(100_000).default(20),
        /** Upgrades one IP may start at once, before upgradesPerSecond applies: 100 lets the office's reload come back within ~25 s. */
        upgradeBurst: z.number().int().min(1).max(1_000_000).default(100),
        /** machine: each balancer machine counts its own clients; fleet: counts add up over every machine through Redis (needs redis). */
        scope: z.enum(['machine', 'fleet']).default('machine'),
      })
      .prefault({}),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** One JSON line per tunnel when it ends, per upgrade refused and per plain request answered, whatever logLevel says. */
    accessLog: z.boolean().default(false),
    pools: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'pool names use letters, digits, _ . -'), poolSchema),
    routes: z.array(routeSchema).min(1, 'needs at least one route'),
    /** Shared state across balancer machines; without it, workers of one machine share through the primary. */
    redis: z
      .strictObject({
        /** redis://[user:pass@]host:port[/db]; REDIS_URL is used when this is absent. */
        url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
        /** Namespace of every key, so two fleets can share one Redis. */
        clusterName: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . -').default('default'),
        /** `url` names one node of a Redis Cluster; ioredis finds the others (all keys share one slot). */
        cluster: z.boolean().default(false),
        /** Health-check lease: its holder renews it every third of this; another machine takes over after it lapses. */
        leaseTtl: duration('leaseTtl').pipe(z.number().min(300, 'must be at least 300ms')).default(5000),
        /** How often this machine's connection counts are written and the fleet's are read. */
        syncInterval: duration('syncInterval').pipe(z.number().min(10, 'must be at least 10ms')).default(100),
        /** A machine's counts expire this long after its last write (a dead balancer leaves no phantom counts). */
        countTtl: duration('countTtl').pipe(z.number().min(100, 'must be at least 100ms')).default(3000),
        /** Passed to ioredis as they are (e.g. sentinels + name for Sentinel, tls). */
        options: z.record(z.string(), z.unknown()).default({}),
      })
      .optional(),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.admin.enabled && cfg.admin.port !== 0 && cfg.admin.port === cfg.listen.port) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'port'], message: 'must differ from listen.port: the admin listener is never on the public port' });
    }
    const redirect = cfg.listen.tls?.redirectHttpPort;
    if (redirect !== undefined && (redirect === cfg.listen.port || (cfg.admin.enabled && redirect === cfg.admin.port))) {
      ctx.addIssue({ code: 'custom', path: ['listen', 'tls', 'redirectHttpPort'], message: 'must differ from listen.port and admin.port' });
    }
    if (cfg.clientLimits.scope === 'fleet' && cfg.redis === undefined) {
      ctx.addIssue({ code: 'custom', path: ['clientLimits', 'scope'], message: 'fleet needs redis (set redis.url or REDIS_URL), or use machine' });
    }
    cfg.routes.forEach((route, i) => {
      if (!(route.pool in cfg.pools)) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'pool'], message: `names pool "${route.pool}", which is not defined under pools` });
      }
    });
    // uWS fixes client-side tunnel settings per URL pattern, so routes sharing a path must share them.
    const byPath = new Map<string, number>();
    cfg.routes.forEach((route, i) => {
      const first = byPath.get(route.path);
      if (first === undefined) return void byPath.set(route.path, i);
      const a = cfg.routes[first];
      for (const key of ['idleTimeout', 'maxPayload', 'compression'] as const) {
        if (a[key] !== route[key]) {
          ctx.addIssue({ code: 'custom', path: ['routes', i, key], message: `differs from routes[${first}] with the same path; routes sharing a path share client-side settings` });
        }
      }
    });
  });

export type Config = z.infer<typeof configSchema>;
export type PoolConfig = Config['pools'][string];
export type BackendConfig = PoolConfig['backends'][number];
export type RouteConfig = Config['routes'][number];
export type HealthCheckConfig = NonNullable<PoolConfig['healthCheck']>;
export type OutlierDetectionConfig = PoolConfig['outlierDetection'];
export type RedisConfig = NonNullable<Config['redis']>;
export type TlsConfig = NonNullable<Config['listen']['tls']>;
export type ClientLimitsConfig = Config['clientLimits'];
