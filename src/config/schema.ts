// The one schema of Switchyard's configuration: every key, its type, its default and its description.
// docs/configuration.md is generated from it (src/config/reference.ts, `npm run docs:config`); a test
// fails when the two differ or a key has no description.
import { isIP } from 'node:net';
import { z } from 'zod';
import { HASH_KEY_FORMS, parseHashKey } from '../load-balancer/hash-key';
import { parseDuration, parseSize } from './units';

// `typeName` tells the reference generator what an operator writes here (the zod type is a number).
const duration = (what: string) =>
  z.preprocess((v) => parseDuration(v) ?? v, z.number({ error: `must be a duration such as 500ms, 30s or 2m (${what})` }).int().nonnegative()).meta({ typeName: 'duration' });

const size = (what: string) =>
  z.preprocess((v) => parseSize(v) ?? v, z.number({ error: `must be a size such as 64KiB or 16MiB (${what})` }).int().positive()).meta({ typeName: 'size' });

const backendUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return BACKEND_SCHEMES.includes(u.protocol) && u.hostname !== '' && (u.port !== '' || TLS_SCHEMES.includes(u.protocol)) && u.username === '' && u.password === '';
    } catch {
      return false;
    }
  },
  { message: 'must be ws://host:port, http://host:port, wss://host[:port] or https://host[:port]' },
);

const BACKEND_SCHEMES = ['ws:', 'http:', 'wss:', 'https:'];
/** Backend URL schemes whose hop is TLS (port 443 when the URL gives none). */
export const TLS_SCHEMES = ['wss:', 'https:'];


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

/**
 * TLS to a wss:// or https:// backend (NGINX's proxy_ssl_*, HAProxy's `server ... ssl`), set on the
 * pool, on a backend, or both (a backend's keys override the pool's one by one). No default here,
 * so that the two levels merge; the defaults are in the descriptions and src/upstream/backend-tls.ts.
 */
const backendTlsSchema = z.strictObject({
  verify: z
    .boolean()
    .optional()
    .describe(
      'Check the backend\'s certificate: signed by `ca` (absent: the system\'s trusted CAs), valid now, and for `serverName`. A failure is a failed connect: 502 (backend_tls), counted against the backend, logged with its cause. false: encrypt without checking (NGINX\'s default proxy_ssl_verify off, HAProxy\'s verify none). Default: true.',
    ),
  ca: z
    .string()
    .min(1)
    .optional()
    .describe('PEM file of the CA certificates that sign the backends\' certificates (relative to the config file); absent: the system\'s trusted CAs (Node\'s bundled list).'),
  serverName: hostName
    .optional()
    .describe('The name sent as SNI and required in the backend\'s certificate; absent: the host of the backend\'s URL (for an IP address no SNI is sent and the certificate must list that IP).'),
  cert: z.string().min(1).optional().describe('PEM file of the client certificate shown to backends that ask for one (mutual TLS); with `key`.'),
  key: z.string().min(1).optional().describe('PEM file of the private key of `cert` (unencrypted).'),
});
export type BackendTlsConfig = z.infer<typeof backendTlsSchema>;

export const ALGORITHMS = ['least-connections', 'round-robin', 'hash', 'ip-hash'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** HAProxy's admin states: ready takes traffic, drain keeps existing tunnels but gets no new ones, maintenance gets nothing. */
export const ADMIN_STATES = ['ready', 'drain', 'maintenance'] as const;
export type AdminState = (typeof ADMIN_STATES)[number];

/** "200-399" or 200: the statuses an http health check accepts. */
const statusRange = z
  .preprocess((v) => (typeof v === 'number' ? `${v}` : v), z.string().regex(/^[1-5]\d\d(-[1-5]\d\d)?$/, 'must be a status such as 200 or a range such as 200-399'))
  .meta({ typeName: 'status or range' });

/** host:port of a DNS server, as node:dns's setServers takes it: 10.0.0.2, 10.0.0.2:53, [fd00::2]:53. */
const dnsServer = z
  .string()
  .refine((s) => {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(s) ?? /^([0-9a-fA-F:]+)$/.exec(s);
    if (m === null) return false;
    const host = m[1] ?? m[2];
    const port = m[3] === undefined ? 53 : Number(m[3]);
    return isIP(host) !== 0 && port >= 1 && port <= 65535;
  }, 'must be an IP address with an optional port: 10.0.0.2, 10.0.0.2:53 or [fd00::2]:53');

/** A DNS name to look up: A/AAAA (chat.internal), or SRV when it starts with `_` (_chat._tcp.chat.internal). */
const dnsName = z
  .string()
  .max(253)
  .regex(/^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/, 'must be a DNS name such as chat.internal or _chat._tcp.chat.internal');

/** SRV names start with a service label (RFC 2782: _service._proto.name). */
export function isSrvName(name: string): boolean {
  return name.startsWith('_');
}

/** The name a DNS source's services answer to: an SRV name without its _service._proto. labels. */
export function serviceName(dns: string): string {
  return dns.replace(/^_[^.]+\._[^.]+\./, '');
}

/** How a DNS name is looked up and its answers followed: pool `discovery`'s keys, and a backend's `resolve`. */
const lookupSettings = {
    resolver: z
      .preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(dnsServer).min(1))
      .optional()
      .describe('The DNS server(s) asked, as NGINX\'s resolver: 10.0.0.2:53, or a list. Absent: the system\'s (/etc/resolv.conf).'),
    minTtl: duration('minTtl')
      .pipe(z.number().min(1000, 'must be at least 1s'))
      .default(1000)
      .describe('The name is looked up again when its records\' TTL runs out, but never sooner than this (a TTL of 0 would ask without pause). Also the wait before retrying a failed lookup.'),
    maxTtl: duration('maxTtl')
      .pipe(z.number().min(1000, 'must be at least 1s'))
      .default(300_000)
      .describe('Never later than this, whatever the TTL says (SRV: the TTL is that of the targets\' addresses; node\'s resolver does not give the SRV record\'s own).'),
    timeout: duration('timeout')
      .pipe(z.number().min(100, 'must be at least 100ms'))
      .default(2000)
      .describe('How long one query waits for an answer before it is sent again (twice in all), then the lookup fails.'),
    drainTimeout: duration('drainTimeout')
      .default(300_000)
      .describe(
        'An address that leaves the answer drains: no new tunnels or requests, its tunnels stay until they end or this passes; then they are closed with 1001 (going away), so clients reconnect to the others. 0: closed at once.',
      ),
    maxBackends: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .default(256)
      .describe('Most addresses taken from one answer (the lowest, in order); more are left out and logged. Bounds the backend label values of the metrics.'),
};

const discoverySchema = z
  .strictObject({
    dns: dnsName.describe(
      'The name whose addresses are the pool\'s backends: A and AAAA records (chat.internal, a Kubernetes headless Service, a Consul name), each address with `port`; or an SRV name (_chat._tcp.chat.internal), whose targets carry their ports.',
    ),
    port: z.number().int().min(1).max(65535).optional().describe('The backends\' port, with an A/AAAA name (required there); not with an SRV name, whose records carry the ports.'),
    ...lookupSettings,
    weight: z.number().int().min(1).max(256).default(1).describe('Each discovered backend\'s weight with an A/AAAA name; with an SRV name each target\'s weight is its record\'s (0 counts as 1; when one is above 256 all are scaled to 1..256).'),
    maxConnections: z.number().int().min(0).default(0).describe('Each discovered backend\'s maxConnections; 0: no limit.'),
    tls: z
      .boolean()
      .default(false)
      .describe(
        'true: each discovered backend is wss:// (TLS to every address, with the pool\'s `tls` settings), and its certificate is asked for under the DNS name (an SRV name without its _service._proto labels) unless the pool\'s `tls.serverName` says otherwise.',
      ),
  })
  .superRefine((d, ctx) => {
    if (isSrvName(d.dns) && d.port !== undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'not with an SRV name: its records carry the ports' });
    if (!isSrvName(d.dns) && d.port === undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: `is required with an A/AAAA name (${d.dns}): the backends' port` });
    if (d.maxTtl < d.minTtl) ctx.addIssue({ code: 'custom', path: ['maxTtl'], message: 'must be at least minTtl' });
  });

const backendSchema = z
  .strictObject({
  url: backendUrl.describe(
    'ws://host:port, or http://host:port (the same); wss://host[:port] or https://host[:port] (the same, default port 443) for TLS to the backend, set by `tls` (the backend\'s, else the pool\'s). The client\'s path and query are forwarded as they are.',
  ),
  tls: backendTlsSchema
    .optional()
    .describe('TLS settings of this backend (a wss:// or https:// URL only); each key given overrides the pool\'s `tls`.'),
  weight: z.number().int().min(1).max(256).default(1).describe('Its share of new tunnels and requests, relative to the pool\'s other backends.'),
  admin: z
    .enum(ADMIN_STATES)
    .default('ready')
    .describe('ready takes traffic; drain keeps its tunnels and gets no new ones; maintenance gets nothing. `switchyard admin` overrides it fleet-wide at run time.'),
  maxConnections: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe(
      'Most tunnels the backend holds, counted over every worker and machine (NGINX\'s max_conns, HAProxy\'s maxconn); 0: no limit. A backend at its limit gets no new tunnels or plain requests; when every backend is full the client gets 503. Other workers\' counts are as of the last sync (redis.syncInterval), so a burst spread over workers can pass the limit by what they open within one sync.',
    ),
  backup: z
    .boolean()
    .default(false)
    .describe(
      'Gets tunnels and plain requests only while no other backend of the pool can take them (down, drained, in maintenance, at maxConnections, or already failed for this request), as NGINX\'s and HAProxy\'s backup; its tunnels stay when the others return. `switchyard status` marks it (backup).',
    ),
    resolve: z
      .union([z.boolean(), z.strictObject(lookupSettings)])
      .default(false)
      .describe(
        'true: the URL\'s host name is looked up by the primary (A and AAAA, again at the TTL) and every address is a backend of the pool (pool/address:port, the URL\'s port, this entry\'s other keys), joining and draining as with pool `discovery`; or the lookup keys of `discovery` (resolver, minTtl, maxTtl, timeout, drainTimeout, maxBackends). false: a host name is looked up by each worker at each connect (the system\'s resolver, addresses tried in turn) and is one backend.',
      ),
  })
  .superRefine((b, ctx) => {
    if (b.resolve === false || !URL.canParse(b.url)) return;
    const host = hostOf(b.url);
    if (isIP(host) !== 0) ctx.addIssue({ code: 'custom', path: ['resolve'], message: `${host} is an IP address: nothing to resolve (write resolve only with a host name)` });
    else if (!dnsName.safeParse(host).success || isSrvName(host)) ctx.addIssue({ code: 'custom', path: ['resolve'], message: `${host} is no A/AAAA name to resolve (SRV names go in the pool's discovery)` });
  });

/** The host of a backend URL, without an IPv6 address's brackets. */
export function hostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[|\]$/g, '');
}

export const HEALTH_CHECK_TYPES = ['http', 'tcp', 'websocket'] as const;

const healthCheckSchema = z.strictObject({
  type: z.enum(HEALTH_CHECK_TYPES).default('tcp').describe('tcp: a connect; http: GET `path` (undici); websocket: a full upgrade on `path`, then close 1000.'),
  path: z.string().startsWith('/', 'must start with /').default('/').describe('http and websocket: the path requested.'),
  expectStatus: statusRange.default('200-399').describe('http: the status (200) or range (200-299) that passes.'),
  bodyContains: z.string().min(1).optional().describe('http: text the response body must contain (within its first 64 KiB).'),
  interval: duration('interval').pipe(z.number().min(50, 'must be at least 50ms')).default(5000).describe('Time between two checks of a backend.'),
  timeout: duration('timeout').pipe(z.number().min(1, 'must be more than 0')).default(2000).describe('Limit on one check.'),
  rise: z.number().int().min(1).max(100).default(2).describe('Consecutive passes that bring a down backend up.'),
  fall: z.number().int().min(1).max(100).default(3).describe('Consecutive failures that take an up backend down.'),
  jitter: duration('jitter')
    .optional()
    .describe('Up to this much random delay added to each interval, so checks from many machines do not align; absent: interval/10.'),
});

const outlierDetectionSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Eject backends that fail live traffic.'),
  consecutiveFailures: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(5)
    .describe(
      'Failures in a row that eject a backend: failed connects, 5xx answers to the upgrade, abnormal backend closes (TCP lost without a close frame, no pong, broken framing); for plain HTTP, failed connects, malformed or cut-off responses and responseTimeouts (not 5xx statuses, as NGINX\'s max_fails).',
    ),
  window: duration('window').default(30_000).describe('The streak must fall within this window.'),
  baseEjectionTime: duration('baseEjectionTime')
    .pipe(z.number().min(1, 'must be more than 0'))
    .default(30_000)
    .describe('The first ejection lasts this long; the n-th lasts n times as long.'),
  maxEjectionTime: duration('maxEjectionTime')
    .default(300_000)
    .describe('Cap on one ejection; the multiplier also drops one step per this long without an ejection.'),
  maxEjectionPercent: z
    .number()
    .int()
    .min(0)
    .max(100)
    .default(50)
    .describe('Never eject more than this percentage of the pool\'s backends (so a pool of one is never ejected).'),
});

const hashKey = z.string().superRefine((text, ctx) => {
  const parsed = parseHashKey(text);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

/** Live rebalancing of a pool (src/load-balancer/rebalance.ts); the defaults also serve `switchyard rebalance POOL` on a pool without it. */
export const rebalanceSchema = z.strictObject({
  maxSkew: z
    .number()
    .min(1.01, 'must be more than 1 (e.g. 1.2)')
    .max(100)
    .default(1.2)
    .describe('A backend holding more than maxSkew x its weight\'s share of the pool\'s tunnels (counted fleet-wide over its eligible backends) sheds the excess; the rebalance runs until no backend does.'),
  closesPerSecond: z
    .number()
    .min(0.1)
    .max(100_000)
    .default(50)
    .describe('Tunnels the whole fleet closes per second while rebalancing (with Redis the machines share it: N machines close this many in all, not N x); each closed client gets 1012 (Service Restart) and reconnects to the emptier backends.'),
  minTunnelAge: duration('minTunnelAge')
    .default(60_000)
    .describe('Tunnels younger than this are never closed by a rebalance (nor any opened after it began, so a client it closed is not closed again).'),
  auto: z
    .boolean()
    .default(true)
    .describe('true: the primary starts a rebalance by itself whenever the pool is above maxSkew (checked every second). false: these settings serve `switchyard rebalance POOL` only.'),
});

const poolSchema = z.strictObject({
  algorithm: z
    .enum(ALGORITHMS)
    .default('least-connections')
    .describe(
      'How a new tunnel or request picks a backend. least-connections: the fewest tunnels for its weight, counted fleet-wide. round-robin: in turn, by weight (smooth, as NGINX). hash: by hashKey (a room, a user, a client network), with weighted rendezvous hashing, so removing one of N backends moves only its own ~1/N of the keys. ip-hash: hash with hashKey ip.',
    ),
  hashKey: hashKey
    .optional()
    .describe(
      `With algorithm hash, required: what is hashed. ${HASH_KEY_FORMS}. ip is the client IP (trustedProxies decide which); ip/24 its IPv4 /24 (any prefix 1-32; IPv6 clients by whole address), ip/24,64 also the IPv6 /64; header:NAME, cookie:NAME and query:NAME a value of the request (query values as sent, not percent-decoded); path:N the N-th path segment (path:2 keys on 42 in /rooms/42/ws). A request without the key is balanced by least-connections and counted as decision="fallback" in switchyard_balancer_decisions_total.`,
    ),
  balanceFactor: z
    .number()
    .refine((v) => v === 0 || (v > 1 && v <= 100), 'must be more than 1 (e.g. 1.25; at most 100), or 0 for no bound')
    .default(0)
    .describe(
      'hash and ip-hash: bounded loads (as HAProxy\'s hash-balance-factor). No backend takes a new tunnel while it holds its weight\'s share of balanceFactor x the tunnels of the pool\'s eligible backends (counted fleet-wide, as of the last sync); the key goes to the next backend in its own order, so a hot room spills over to one same backend and comes back when the load falls (counted as decision="spilled"). 1.25: no backend above 125% of the mean. 0: unbounded.',
    ),
  slowStart: duration('slowStart')
    .default(0)
    .describe(
      'A backend that joins the pool (a reload adds it) or comes back (health up, admin ready, ejection over) gets a share of its weight that grows linearly from 1% to whole over this time (HAProxy\'s slowstart), with every algorithm: round-robin and hash give it that share of new tunnels (under hash, keys move to it as its weight grows), least-connections lets it hold that share of what it would hold at full weight. Not when the balancer starts. 0: off.',
    ),
  maxUpgradesPerSecond: z
    .number()
    .min(0)
    .max(1_000_000)
    .default(0)
    .describe(
      'Most new tunnels one backend gets per second from this balancer machine (its workers share it, each at its part); upgrades beyond it wait their turn up to upgradeQueueTimeout, then get 503 with Retry-After. So the clients of a backend that died, reconnecting at once, reach the others at this rate, not in one instant. Size it to what one backend can set up per second (authentication, session restore); with N balancer machines a backend gets up to N x it. Plain HTTP requests are not paced. 0: off (the default: only the operator knows what a backend takes, and a wrong guess would refuse a flash crowd).',
    ),
  upgradeQueueTimeout: duration('upgradeQueueTimeout')
    .default(2000)
    .describe(
      'With maxUpgradesPerSecond: the longest an upgrade waits for its backend\'s turn (so at most maxUpgradesPerSecond x this many wait at once); one that would wait longer gets 503 with Retry-After at once, counted as outcome="paced". 0: no waiting.',
    ),
  backends: z.array(backendSchema).default([]).describe('The pool\'s backends: at least one, unless `discovery` finds them (the two add up). A backend with `resolve` stands for the addresses of its host name.'),
  discovery: discoverySchema
    .optional()
    .describe(
      'Backends found by DNS, looked up by the primary of each balancer machine for itself, again when the TTL runs out: every address is a backend (pool/address:port), joining with slowStart; one that leaves the answer drains (drainTimeout). A failed lookup keeps the last good set. Absent: only `backends`.',
    ),
  connectTimeout: duration('connectTimeout')
    .default(5000)
    .describe(
      'TCP connect plus the backend\'s answer to the upgrade (plain HTTP: the TCP connect). A connect still hanging then is a failed connect: another backend is tried (for plain HTTP only for an idempotent request without a body). When no attempt is left the last one decides the answer: 504 (backend_timeout) when that backend took the connection and did not answer the upgrade in time, as responseTimeout gives a plain request; 502 (backend_unreachable) when it could not be reached.',
    ),
  responseTimeout: duration('responseTimeout')
    .pipe(z.number().min(1, 'must be more than 0'))
    .default(60_000)
    .describe(
      'Plain HTTP: how long a backend may take to send its whole response head (part of one, or interim 1xx answers, do not stop the clock), counted from the request\'s last byte so far; then 504 (NGINX\'s proxy_read_timeout, for the head only: a streamed body may pause as long as it likes). A request body that stops arriving this long while the backend reads gets 408 and the connection closed (NGINX\'s client_body_timeout), not counted against the backend; but uWS itself closes, unanswered, an upload slower than 16 KiB/s after ~10 s (old build) or ~30 s (current), so the 408 comes only when this is shorter.',
    ),
  retries: z
    .number()
    .int()
    .min(0)
    .max(16)
    .default(2)
    .describe('Further backends tried after a failed connect (refused, timed out, broken handshake); NGINX\'s proxy_next_upstream_tries - 1.'),
  maxConnectsInFlight: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(128)
    .describe(
      'Most connects in flight from one worker to one backend (TCP connect plus the upgrade\'s answer, or a plain-HTTP connect). A backend at it is skipped for new tunnels and requests, so a blackholed one holds at most this many descriptors per worker for connectTimeout.',
    ),
  herdingGuard: z
    .enum(['p2c', 'off'])
    .default('p2c')
    .describe(
      'least-connections (and hash\'s fallback): p2c compares two random backends (power of two choices), so balancers deciding on fleet counts up to one sync old do not all pick the same emptiest backend; off compares all (exact on one process, herds across many).',
    ),
  rebalance: rebalanceSchema
    .optional()
    .describe(
      'Live rebalancing, opt-in: present, the primary checks the skew every second and, above maxSkew, closes tunnels on the fullest backends at closesPerSecond until the pool is within it (after a scale-out, old tunnels otherwise stay on the old backends until they end). Under hash only keys whose home changed are moved. Absent: only `switchyard rebalance POOL` (POST /rebalance) runs one, with these defaults.',
    ),
  healthCheck: healthCheckSchema
    .optional()
    .describe('Active health checks of every backend of the pool (HAProxy\'s check, Envoy\'s health_checks), run by the primary. Absent: off; present: on.'),
  outlierDetection: outlierDetectionSchema.prefault({}).describe('Passive health from live traffic (Envoy\'s outlier detection): on by default.'),
  sendProxyProtocol: z
    .union([z.literal(false), z.literal('v2')])
    .default(false)
    .describe(
      "v2: each tunnel's connection to a backend opens with a PROXY protocol v2 header carrying the client's address (HAProxy's send-proxy-v2), before any TLS, for backends that want it without X-Forwarded-For: the client address as the balancer decided it (from an incoming PROXY header or trustedProxies too), source port 0 (uWebSockets.js does not report the client's port), destination listen.host:listen.port. Health checks open with a v2 LOCAL header (no address), as HAProxy's checks do with send-proxy-v2. Plain HTTP requests send none (their keep-alive connections carry many clients; they have X-Forwarded-For). false: none.",
    ),
  tls: backendTlsSchema
    .optional()
    .describe('TLS settings of the pool\'s wss:// and https:// backends (ws:// and http:// ones stay plain); absent: verify against the system\'s CAs, SNI from the URL, no client certificate.'),
}).superRefine((pool, ctx) => {
  const issue = (key: string, message: string): void => void ctx.addIssue({ code: 'custom', path: [key], message });
  if (pool.backends.length === 0 && pool.discovery === undefined) issue('backends', 'needs at least one backend (or discovery)');
  pool.backends.forEach((b, i) => {
    if (b.tls !== undefined && !TLS_SCHEMES.includes(new URL(b.url).protocol)) {
      ctx.addIssue({ code: 'custom', path: ['backends', i, 'tls'], message: `only for a wss:// or https:// backend (this one is ${b.url})` });
    }
    const tls = { ...pool.tls, ...b.tls };
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      const at = b.tls?.cert !== undefined || b.tls?.key !== undefined ? ['backends', i, 'tls'] : ['tls'];
      ctx.addIssue({ code: 'custom', path: [...at, tls.cert === undefined ? 'cert' : 'key'], message: `is required with ${tls.cert === undefined ? 'key' : 'cert'} (mutual TLS needs both)` });
    }
  });
  if (pool.algorithm === 'hash' && pool.hashKey === undefined) issue('hashKey', `is required with algorithm: hash (${HASH_KEY_FORMS})`);
  if (pool.algorithm === 'ip-hash' && pool.hashKey !== undefined) issue('hashKey', 'ip-hash always hashes on the client IP; write algorithm: hash to choose a hashKey');
  else if (pool.algorithm !== 'hash' && pool.hashKey !== undefined) issue('hashKey', `only with algorithm: hash (this pool's algorithm is ${pool.algorithm})`);
  if (pool.balanceFactor !== 0 && pool.algorithm !== 'hash' && pool.algorithm !== 'ip-hash') {
    issue('balanceFactor', `only with algorithm: hash or ip-hash (${pool.algorithm} spreads by itself)`);
  }
});

/** A DNS name as SNI carries it, or a wildcard for one label (`*.example.com`); kept lower-case, as matching ignores case. */
export const SERVER_NAME = /^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;
const serverName = z
  .string()
  .transform((v) => v.toLowerCase())
  .pipe(z.string().max(253).regex(SERVER_NAME, 'must be a DNS name such as chat.example.com, or *.example.com for one label'));

const certificatePair = {
  cert: z.string().min(1).describe('PEM file: the certificate, followed by its intermediates (a full chain, as NGINX\'s ssl_certificate).'),
  key: z.string().min(1).describe('PEM file: its private key.'),
  passphrase: z.string().min(1).optional().describe('For an encrypted key.'),
};

const sniCertificateSchema = z.strictObject({
  ...certificatePair,
  names: z
    .array(serverName)
    .min(1)
    .optional()
    .describe(
      'The server names (SNI) it is served for: exact names, or *.example.com for any one label under example.com (not example.com itself). Matched ignoring case. Absent: the DNS names of its subjectAltName.',
    ),
});

const tlsSchema = z.strictObject({
  ...certificatePair,
  certificates: z
    .array(sniCertificateSchema)
    .default([])
    .describe(
      'More certificates, each served to clients whose SNI is one of its names (NGINX\'s ssl_certificate per server_name, HAProxy\'s crt-list). listen.tls.cert and listen.tls.key stay the default: served to clients that send no name or one that matches none. A name may belong to one certificate only.',
    ),
  ciphers: z.string().min(1).optional().describe('OpenSSL cipher list for TLS 1.2 (TLS 1.3\'s suites are fixed); absent: the library\'s defaults.'),
  redirectHttpPort: z
    .number()
    .int()
    .min(1)
    .max(65535)
    .optional()
    .describe(
      'Also listen for plain HTTP on this port and answer every request with a 301 to https:// (NGINX\'s `return 301 https://$host$request_uri`). Must differ from listen.port and admin.port.',
    ),
});

export const ROUTE_MODES = ['websocket', 'http', 'both'] as const;

/** The largest maxPayload accepted. */
export const MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024;

/** Settings of a client tunnel; uWS applies the client-side ones per URL pattern, see listener.ts. */
const tunnelSettings = {
  idleTimeout: duration('idleTimeout')
    .default(120_000)
    .describe('Client side: uWS pings a client idle this long and closes it when nothing comes back (in whole seconds, at least 8 s). 0 disables.'),
  backendIdleTimeout: duration('backendIdleTimeout')
    .default(120_000)
    .describe('Backend side: ping the backend after half of this without traffic; nothing back by the end closes the client with 1011. 0 disables.'),
  maxPayload: size('maxPayload')
    .pipe(z.number().max(MAX_PAYLOAD_LIMIT, 'must be at most 64MiB (messages are held whole in memory)'))
    .default(1024 * 1024)
    .describe(
      'Largest message either way; a larger one closes the tunnel with 1009. 1 MiB: chat messages are far smaller, and uWS holds a client\'s message whole until it is complete (up to twice this), so this is what one connection can make a worker hold (NGINX\'s client_max_body_size is 1m too). At most 64 MiB.',
    ),
  clientBufferLimit: size('clientBufferLimit')
    .default(1024 * 1024)
    .describe('Backend to client: stop reading the backend while the client has more than this queued.'),
  backendBufferLimit: size('backendBufferLimit')
    .default(4 * 1024 * 1024)
    .describe('Client to backend: close the tunnel with 1013 when more than this waits for a slow backend.'),
  compression: z.boolean().default(false).describe('Accept permessage-deflate offers from clients (costs CPU; the backend hop is never compressed).'),
};

const routeSchema = z.strictObject({
  host: z.string().min(1).optional().describe('Host header to match (port ignored, case-insensitive); absent or "*" matches any.'),
  path: z
    .string()
    .startsWith('/', 'must start with /')
    .default('/')
    .describe('Path prefix, matched on segment boundaries: /chat matches /chat, /chat/x and /chat?x, not /chatroom. A trailing slash is ignored (/chat/ is /chat), so two routes for one host whose paths differ only by it are refused.'),
  pool: z.string().min(1).describe('The pool it sends to: a name under pools.'),
  mode: z
    .enum(ROUTE_MODES)
    .default('both')
    .describe('websocket: upgrades only (plain requests get 426); http: plain requests only (upgrades get 400); both: either.'),
  ...tunnelSettings,
});

export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        host: z.string().min(1).default('0.0.0.0').describe('Address the public listener binds.'),
        port: z.number().int().min(0).max(65535).default(8080).describe('Port of the public listener.'),
        tls: tlsSchema
          .optional()
          .describe(
            'TLS termination (wss:// and https:// for clients); the backend hop stays plain. Each worker reads the files when it starts, so a reload serves a renewed certificate at the same path. Absent: plain.',
          ),
        proxyProtocol: z
          .union([z.boolean(), z.literal('v2')])
          .default(false)
          .describe(
            "Behind a TCP load balancer (AWS NLB, HAProxy's send-proxy / send-proxy-v2, GCP's TCP proxy): peers in trustedProxies must open each connection with a PROXY protocol header, before any TLS, and the client address it carries is the client's for routing, hash keys, clientLimits, X-Forwarded-For / X-Real-IP and the access log (NGINX's `listen ... proxy_protocol`). Other peers are served as clients; a PROXY header from one of them closes its connection, as does a trusted peer that sends none. true: v1 and v2, read by a small TCP front in each worker that relays the connection to uWS (a v2 LOCAL or v1 UNKNOWN header, a proxy's health check, passes as the proxy itself). v2: v2 only; on a plain listener with the current uWebSockets.js build uWS reads it itself, at no cost (a LOCAL header then counts as none); with TLS or the old build, through the front. docs/operations.md gives the front's cost. false: a connection that opens with a PROXY header is refused.",
          ),
      })
      .prefault({})
      .describe('The public listener: WebSocket upgrades and plain HTTP requests from clients, on one port.'),
    admin: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Run the admin listener.'),
        host: z.string().min(1).default('127.0.0.1').describe('Address it binds. Its reads are open: keep it on loopback or a private interface.'),
        port: z
          .number()
          .int()
          .min(0)
          .max(65535)
          .default(DEFAULT_ADMIN_PORT)
          .describe('Its port; must differ from listen.port. 0 picks a free one (logged as adminPort). 8405 is off Prometheus\'s 9090-9094 and its exporters\' 9100-9999.'),
        token: adminToken
          .optional()
          .describe(
            'The bearer token every write needs (Authorization: Bearer <token>): 16 or more printable ASCII characters, no spaces. Prefer tokenFile, which keeps it out of the config. A reload may change it.',
          ),
        tokenFile: z
          .string()
          .min(1)
          .optional()
          .describe(
            'A file holding the token (one line); read at start and at each reload, so a reload rotates it. Not with admin.token. Without either, SWITCHYARD_ADMIN_TOKEN gives it; without any, writes are refused (403) except on admin.socket.',
          ),
        allowedHosts: z
          .array(hostName)
          .default([])
          .describe(
            'Host names or addresses (no port) the listener answers to besides localhost, loopback addresses, admin.host and the address a request came in on; any other Host gets 421. A reload may change it.',
          ),
        socket: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Also listen on this Unix socket (created mode 0600, replaced when a dead process left it, removed at exit), with the same paths: its writes need no token, its file mode is the credential (HAProxy\'s stats socket … mode 600 level admin).',
          ),
      })
      .prefault({})
      .describe(
        'The admin listener, in the primary: /metrics, /healthz, /readyz, /status and the status page (reads, open), POST /admin and POST /reload (writes, with the admin token). Never on the public port.',
      ),
    workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto').describe('Worker processes; auto is one per core.'),
    workerConnections: z
      .union([z.literal('auto'), z.number().int().min(1).max(10_000_000)])
      .default('auto')
      .describe(
        'Most client connections one worker serves at once: tunnels, upgrades being opened and plain requests in flight (NGINX\'s worker_connections, HAProxy\'s maxconn). Beyond it, 503 with Connection: close; open tunnels are not touched. auto: from the descriptor limit, two per connection, after what the worker holds at start and a slack of an eighth.',
      ),
    messageAssemblyLimit: size('messageAssemblyLimit')
      .default(64 * 1024 * 1024)
      .describe(
        'Bytes one worker may hold for backend messages that arrive split across reads (frames being filled, fragments kept). A message over 64 KiB that would pass it closes its tunnel with 1009; smaller ones always pass. Must be at least every route\'s maxPayload.',
      ),
    drainTimeout: duration('drainTimeout')
      .default(10_000)
      .describe('On SIGTERM/SIGINT: how long tunnels may take to close after 1001 before the workers exit anyway.'),
    closeSpread: duration('closeSpread')
      .default(10_000)
      .describe(
        'When the balancer itself closes its tunnels (the drain on SIGTERM/SIGINT, old workers at the end of retireTimeout after a reload or told to close theirs by maxRetiringGenerations), each worker sends the 1001s over this time, one at a random moment of its own equal slot, so their clients do not all reconnect in one instant (HAProxy\'s close-spread-time). Bounded by drainTimeout less 2 s for the last close handshakes; a worker with so few tunnels that they would close slower than 50 a second closes them sooner. 0: all at once.',
      ),
    retireTimeout: duration('retireTimeout')
      .default(600_000)
      .describe(
        'After a reload (SIGHUP, `switchyard reload`): how long the old workers keep their tunnels before closing them with 1001 (NGINX\'s worker_shutdown_timeout, HAProxy\'s hard-stop-after).',
      ),
    maxRetiringGenerations: z
      .number()
      .int()
      .min(0)
      .max(16)
      .default(2)
      .describe(
        'Older generations of workers that may finish their tunnels at once after reloads; a reload beyond it tells the oldest to close its tunnels now (1001, then drainTimeout), as HAProxy\'s mworker-max-reloads, so reloads in a row cannot pile up workers. 0: each reload closes the previous generation\'s tunnels.',
      ),
    trustedProxies: z
      .array(
        z.string().refine((s) => {
          const [addr, bits, extra] = s.split('/');
          const family = isIP(addr ?? '');
          return family !== 0 && extra === undefined && (bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)));
        }, 'must be an IP address or CIDR range such as 10.0.0.0/8'),
      )
      .default([])
      .describe(
        'Peers (addresses or CIDR ranges) whose X-Forwarded-For, -Proto and -Host are believed: X-Forwarded-For is appended to, and its client address used for ip-hash and the access log.',
      ),
    clientLimits: z
      .strictObject({
        maxTunnels: z
          .number()
          .int()
          .min(0)
          .default(1024)
          .describe('Most tunnels one client IP holds at once (open or being opened); 0: no limit. 1024 leaves an office of 200 behind one NAT address, 3 tabs each, room, and keeps one address from holding a worker\'s descriptors.'),
        upgradesPerSecond: z
          .number()
          .min(0)
          .max(100_000)
          .default(20)
          .describe('Upgrades one client IP may start per second, on average (a token bucket); 0: no limit. A chat client reconnects a few times an hour; 20/s stops a reconnect loop or a flood from one address.'),
        upgradeBurst: z
          .number()
          .int()
          .min(1)
          .max(1_000_000)
          .default(100)
          .describe('Upgrades one client IP may start at once before upgradesPerSecond applies: 100 lets that office\'s 600 tunnels come back within ~25 s of an outage, told when by Retry-After.'),
        scope: z
          .enum(['machine', 'fleet'])
          .default('machine')
          .describe('machine: each balancer machine counts its own clients (its workers together); fleet: the counts add up over every machine through Redis (needs redis), ~3 sync intervals late.'),
      })
      .prefault({})
      .describe(
        'Limits per client IP (the peer, or the X-Forwarded-For address behind trustedProxies), as NGINX\'s limit_conn and limit_req and HAProxy\'s sc_conn_cur and sc_http_req_rate: over a limit an upgrade gets 429 with Retry-After, and the tunnels the client holds stay open. Sized for chat: a client holds 1-3 tunnels.',
      ),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('Level of the JSON log lines (pino) every process writes to stdout.'),
    accessLog: z
      .boolean()
      .default(false)
      .describe('One JSON line per tunnel when it ends, per upgrade refused and per plain request answered, whatever logLevel says.'),
    pools: z
      .record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'pool names use letters, digits, _ . -'), poolSchema)
      .describe('Pools of backends, by name (letters, digits, _ . -).'),
    routes: z
      .array(routeSchema)
      .min(1, 'needs at least one route')
      .describe(
        'Host + path prefix -> pool, at least one; the most specific matches first: a route naming a host, then the longest path. uWS fixes idleTimeout, maxPayload and compression per path, so routes sharing a path must share them (the config error names the one that differs).',
      ),
    redis: z
      .strictObject({
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
          .describe('redis://[user:pass@]host:port[/db], or rediss:// for TLS. REDIS_URL is used when the file names none (the file wins).'),
        clusterName: z
          .string()
          .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . -')
          .default('default')
          .describe('Namespace of every key (letters, digits, _ . -), so two fleets can share one Redis.'),
        cluster: z
          .boolean()
          .default(false)
          .describe("url names one node of a Redis Cluster; ioredis finds the others (each pool's keys share one slot, so pools spread over the shards)."),
        leaseTtl: duration('leaseTtl')
          .pipe(z.number().min(300, 'must be at least 300ms'))
          .default(5000)
          .describe('Health-check lease: its holder renews it every third of this; another machine takes over the checks after it lapses.'),
        syncInterval: duration('syncInterval')
          .pipe(z.number().min(10, 'must be at least 10ms'))
          .default(100)
          .describe("How often this machine writes what changed in its tunnel counts and reads each pool's fleet totals."),
        countTtl: duration('countTtl')
          .pipe(z.number().min(100, 'must be at least 100ms'))
          .default(3000)
          .describe('A machine that stops writing has its tunnels taken out of the fleet totals this long after its last write (a dead balancer leaves no phantom counts).'),
        reconcileInterval: duration('reconcileInterval')
          .pipe(z.number().min(1000, 'must be at least 1s'))
          .default(60_000)
          .describe("How often each pool's fleet totals are proven equal to the sum of the live machines' counts (and repaired if not); each machine also rewrites all its counts this often."),
        options: z
          .record(z.string(), z.unknown())
          .default({})
          .describe('Passed to ioredis as they are: sentinels + name for Sentinel, tls, password; for a cluster, the per-node options.'),
      })
      .optional()
      .describe(
        'Shared state across balancer machines (health verdicts, drains, tunnel counts) in Redis. Absent (and no REDIS_URL): the workers of one machine share it through the primary.',
      ),
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
    if (cfg.listen.proxyProtocol && cfg.trustedProxies.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['listen', 'proxyProtocol'], message: 'needs trustedProxies: the addresses of the load balancers that send the PROXY header' });
    }
    if (cfg.clientLimits.scope === 'fleet' && cfg.redis === undefined) {
      ctx.addIssue({ code: 'custom', path: ['clientLimits', 'scope'], message: 'fleet needs redis (set redis.url or REDIS_URL), or use machine' });
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
    // Prefixes match on segment boundaries and a trailing slash is dropped (src/route.ts), so two routes
    // for the same host whose paths differ only by trailing slashes match the same requests: the
    // later one would never be used. Said rather than shadowed silently.
    const matching = new Map<string, number>();
    cfg.routes.forEach((route, i) => {
      const host = route.host === undefined || route.host === '*' ? '*' : route.host.toLowerCase().replace(/\.$/, '');
      const key = `${host} ${route.path.length > 1 ? route.path.replace(/\/+$/, '') : route.path}`;
      const first = matching.get(key);
      if (first === undefined) return void matching.set(key, i);
      const other = cfg.routes[first].path;
      const why = other === route.path ? `the same host and path as routes[${first}]` : `differs from routes[${first}]'s "${other}" only by a trailing slash, for the same host`;
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'path'], message: `"${route.path}" ${why}: both match the same requests, so this route would never be used` });
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
export type DiscoveryConfig = NonNullable<PoolConfig['discovery']>;
const lookupSettingsSchema = z.strictObject(lookupSettings);
/** How a name is looked up and followed (pool `discovery`'s keys without the name, port and backend options). */
export type LookupSettings = z.output<typeof lookupSettingsSchema>;
/** The lookup settings of `resolve: true`. */
export const lookupDefaults = (): LookupSettings => lookupSettingsSchema.parse({});
/** A backend with its defaults, for one found by discovery. */
export const parseBackend = (b: z.input<typeof backendSchema>): BackendConfig => backendSchema.parse(b);
/** The pool's backends written with a fixed address or a name looked up at connect (not `resolve`: those the primary resolves). */
export const fixedBackends = (pool: Pick<PoolConfig, 'backends'>): BackendConfig[] => pool.backends.filter((b) => b.resolve === false);
/** Does the pool take backends from DNS (its `discovery`, or a backend with `resolve`)? */
export const usesDns = (pool: Pick<PoolConfig, 'backends' | 'discovery'>): boolean => pool.discovery !== undefined || pool.backends.some((b) => b.resolve !== false);
export type RouteConfig = Config['routes'][number];
export type RebalanceConfig = z.infer<typeof rebalanceSchema>;
export type HealthCheckConfig = NonNullable<PoolConfig['healthCheck']>;
export type OutlierDetectionConfig = PoolConfig['outlierDetection'];
export type RedisConfig = NonNullable<Config['redis']>;
export type TlsConfig = NonNullable<Config['listen']['tls']>;
export type SniCertificateConfig = TlsConfig['certificates'][number];
export type ClientLimitsConfig = Config['clientLimits'];
