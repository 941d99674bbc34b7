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

/**
 * 8405: Prometheus's own ports are 9090-9094 and its default-port list gives every port of
 * 9100-9999 (and more above) to exporters, so a machine running Prometheus or node_exporter beside
 * the balancer would clash with any of them; 8405 is outside both, off the common web ports
 * (8080-8090, 8443) and HAProxy's customary stats port (8404).
 */
export const DEFAULT_ADMIN_PORT = 8405;

/** Visible ASCII, no spaces, so it travels as `Authorization: Bearer <token>`; long enough not to be guessed. */
export const adminToken = z
  .string()
  .min(16, 'must be at least 16 characters (e.g. openssl rand -hex 32)')
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

/** A name or address as it appears in a Host header, without the port: lb1.example.com, 10.0.0.5, ::1. */
const hostName = z
  .string()
  .refine((s) => isIP(s) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(s), 'must be a host name or an IP address, without a port');

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
  /**
   * Most connects in flight from one worker to one backend (TCP connect plus the upgrade's answer,
   * or a plain-HTTP connect). A backend at it is skipped for new tunnels and requests, so a
   * blackholed one holds at most this many descriptors per worker for connectTimeout.
   */
  maxConnectsInFlight: z.number().int().min(1).max(1_000_000).default(128),
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

/** The largest maxPayload accepted. */
export const MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024;

/** Settings of a client tunnel; uWS applies the client-side ones per URL pattern, see listener.ts. */
const tunnelSettings = {
  /** Client side: close after this long without traffic; uWS pings the client before it expires. 0 disables. */
  idleTimeout: duration('idleTimeout').default(120_000),
  /** Backend side: ping the backend after half of this without traffic, close when nothing came back. 0 disables. */
  backendIdleTimeout: duration('backendIdleTimeout').default(120_000),
  /**
   * Largest message either way; a larger one closes the tunnel with 1009. 1 MiB: chat messages are
   * far smaller, and uWS holds a client's message whole until it is complete (up to twice this,
   * listener.ts), so this is what one connection can make a worker hold (NGINX's
   * client_max_body_size is 1m too). At most 64 MiB.
   */
  maxPayload: size('maxPayload').pipe(z.number().max(MAX_PAYLOAD_LIMIT, 'must be at most 64MiB (messages are held whole in memory)')).default(1024 * 1024),
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
    /**
     * The admin listener (in the primary): /metrics, /healthz, /readyz, /status and the status page
     * (reads, open), POST /admin and POST /reload (writes, with the admin token). Never on the public
     * port; keep it on loopback.
     */
    admin: z
      .strictObject({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(DEFAULT_ADMIN_PORT),
        /** The bearer token every write needs (Authorization: Bearer …); prefer tokenFile, which keeps it out of the config. */
        token: adminToken.optional(),
        /** A file holding the token (one line); read at start and at each reload, so a reload rotates it. */
        tokenFile: z.string().min(1).optional(),
        /** Host names (port ignored) the listener answers to besides localhost, loopback addresses and its own address; any other Host gets 421. */
        allowedHosts: z.array(hostName).default([]),
        /** A Unix socket (created mode 0600) with the same paths: writes on it need no token, its file permissions are the credential (HAProxy's stats socket). */
        socket: z.string().min(1).optional(),
      })
      .prefault({}),
    /** Worker processes; "auto" is one per core. */
    workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto'),
    /**
     * Most client connections one worker serves at once: tunnels, upgrades being opened and plain
     * requests in flight (NGINX's worker_connections, HAProxy's maxconn). Beyond it, 503 with
     * `Connection: close`; open tunnels are not touched. "auto": from the descriptor limit, two per
     * connection, after what the worker holds at start and a slack of an eighth (src/descriptors.ts).
     */
    workerConnections: z.union([z.literal('auto'), z.number().int().min(1).max(10_000_000)]).default('auto'),
    /**
     * Bytes one worker may hold for backend messages that arrive split across reads (frames being
     * filled, fragments kept). A message over 64 KiB that would pass it closes its tunnel with 1009;
     * smaller ones always pass. Must be at least every route's maxPayload.
     */
    messageAssemblyLimit: size('messageAssemblyLimit').default(64 * 1024 * 1024),
    /** On SIGTERM/SIGINT: how long tunnels may take to close after 1001 before the workers exit anyway. */
    drainTimeout: duration('drainTimeout').default(10_000),
    /**
     * After a reload (SIGHUP, `switchyard reload`): how long the old workers keep their tunnels
     * before closing them with 1001 (as NGINX's worker_shutdown_timeout, HAProxy's hard-stop-after).
     */
    retireTimeout: duration('retireTimeout').default(600_000),
    /**
     * Older generations of workers that may finish their tunnels at once after reloads. A reload
     * beyond it tells the oldest to close its tunnels now (1001, then drainTimeout), as HAProxy's
     * mworker-max-reloads; so reloads in a row cannot pile up workers.
     */
    maxRetiringGenerations: z.number().int().min(0).max(16).default(2),
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
    if (cfg.admin.token !== undefined && cfg.admin.tokenFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'tokenFile'], message: 'give admin.token or admin.tokenFile, not both' });
    }
    if (cfg.admin.enabled && cfg.admin.port !== 0 && cfg.admin.port === cfg.listen.port) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'port'], message: 'must differ from listen.port: the admin listener is never on the public port' });
    }
    const redirect = cfg.listen.tls?.redirectHttpPort;
    if (redirect !== undefined && (redirect === cfg.listen.port || (cfg.admin.enabled && redirect === cfg.admin.port))) {
      ctx.addIssue({ code: 'custom', path: ['listen', 'tls', 'redirectHttpPort'], message: 'must differ from listen.port and admin.port' });
    }
    cfg.routes.forEach((route, i) => {
      if (!(route.pool in cfg.pools)) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'pool'], message: `names pool "${route.pool}", which is not defined under pools` });
      }
    });
    cfg.routes.forEach((route, i) => {
      if (route.maxPayload > cfg.messageAssemblyLimit) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'maxPayload'], message: `exceeds messageAssemblyLimit (${cfg.messageAssemblyLimit} bytes): such messages could never be assembled` });
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
