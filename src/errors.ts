// Every way an upgrade, a plain request or a tunnel can end, in one file: the stable code (undici
// style, ERR_...), what the client gets (an HTTP status before the upgrade, a close code after it),
// what the backend gets, the log message, and the label or counter the metrics and access log use.

export interface Outcome {
  readonly code: string;
  /** HTTP status answered to the client when the failure happens before the 101. */
  readonly status: number;
  readonly label: string;
  readonly message: string;
  /** The answer carries `Connection: close`: keeping the connection would hold what ran short. */
  readonly close?: boolean;
}

const outcome = (code: string, status: number, label: string, message: string, close?: true): Outcome => ({ code, status, label, message, close });

/** Upgrade / request outcomes (before any 101). */
export const Outcomes = {
  badRequest: outcome('ERR_BAD_REQUEST', 400, 'bad_request', 'malformed WebSocket upgrade request'),
  duplicateHost: outcome('ERR_DUPLICATE_HOST', 400, 'bad_request', 'more than one Host header'),
  alteredBytes: outcome('ERR_ALTERED_BYTES', 400, 'bad_request', 'bytes that are not UTF-8 in the path, the query or a repeated header: they cannot be forwarded unchanged'),
  noRoute: outcome('ERR_NO_ROUTE', 404, 'no_route', 'no route for this host and path'),
  upgradeRequired: outcome('ERR_UPGRADE_REQUIRED', 426, 'upgrade_required', 'this route only accepts WebSocket upgrades'),
  notWebSocket: outcome('ERR_NOT_WEBSOCKET', 400, 'bad_request', 'this route does not accept WebSocket upgrades'),
  backendRefused: outcome('ERR_BACKEND_REFUSED', 0 /* the backend's own status */, 'backend_refused', 'the backend refused the upgrade'),
  backendUnreachable: outcome('ERR_BACKEND_UNREACHABLE', 502, 'backend_unreachable', 'no backend could be reached'),
  /** A wss:// or https:// backend's TLS handshake failed (certificate expired, unknown CA, wrong name; client certificate refused): counted against it, cause logged. */
  backendTls: outcome('ERR_BACKEND_TLS', 502, 'backend_tls', 'the backend\'s TLS handshake failed (its certificate was refused, or it refused ours)'),
  backendTimeout: outcome('ERR_BACKEND_TIMEOUT', 504, 'backend_timeout', 'the backend did not answer in time'),
  clientTimeout: outcome('ERR_CLIENT_TIMEOUT', 408, 'client_timeout', 'the request body stopped arriving'),
  noBackend: outcome('ERR_NO_BACKEND', 503, 'no_backend', 'no backend is available'),
  clientTunnelLimit: outcome('ERR_CLIENT_TUNNELS', 429, 'client_tunnel_limit', 'this client IP holds as many tunnels as clientLimits.maxTunnels allows'),
  clientRateLimit: outcome('ERR_CLIENT_RATE', 429, 'client_rate_limit', 'this client IP started upgrades faster than clientLimits.upgradesPerSecond allows'),
  /** The backend's queue of upgrades waiting for their turn (maxUpgradesPerSecond) is full: 503 with Retry-After. */
  paced: outcome('ERR_PACED', 503, 'paced', 'the backend is taking new tunnels at its pool\'s maxUpgradesPerSecond and its queue is full: retry after Retry-After'),
  draining: outcome('ERR_DRAINING', 503, 'draining', 'the balancer is shutting down'),
  /** The worker holds workerConnections client connections (NGINX's worker_connections, HAProxy's maxconn). */
  workerFull: outcome('ERR_WORKER_FULL', 503, 'worker_full', 'this balancer process is at its connection limit', true),
  /** The balancer ran out of descriptors, ports or buffers (localResourceErrors below): its fault, never the backend's. */
  localResources: outcome('ERR_LOCAL_RESOURCES', 503, 'local_resources', 'the balancer is out of local resources (descriptors, ports or buffers)', true),
} as const;

/**
 * Labels of requests and upgrades the balancer did not answer itself (beside Outcomes' labels, in
 * switchyard_upgrades_total, switchyard_http_requests_total and the access log's `outcome`).
 */
export const OutcomeLabels = {
  /** The backend's answer was relayed (a 101, or any status for a plain request). */
  ok: 'ok',
  /** The client left before any answer. */
  clientGone: 'client_gone',
  /** A plain request whose backend died after its status line went out: the client's connection is cut (access log only). */
  backendCutOff: 'backend_cut_off',
} as const;

/**
 * Errno names that say this machine ran out of something, not that the backend failed: descriptors
 * (per process, system-wide), socket buffers or kernel memory, ephemeral ports. They never count
 * against a backend and are never retried on another one, which would fail the same way.
 */
export const LOCAL_RESOURCE_ERRORS = ['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL'] as const;
export type LocalResourceError = (typeof LOCAL_RESOURCE_ERRORS)[number];

export function isLocalResourceError(code: string | undefined): code is LocalResourceError {
  return code !== undefined && (LOCAL_RESOURCE_ERRORS as readonly string[]).includes(code);
}

/**
 * What the admin listener refuses before any of its handlers runs (src/admin/admin-server.ts); the
 * label is `switchyard_admin_requests_refused_total`'s reason.
 */
export const AdminRefusals = {
  misdirected: outcome('ERR_ADMIN_MISDIRECTED', 421, 'misdirected', 'the Host is not one the admin listener answers to'),
  writesOff: outcome('ERR_ADMIN_WRITES_OFF', 403, 'writes_off', 'a write, and no admin token is configured'),
  missingToken: outcome('ERR_ADMIN_TOKEN_MISSING', 401, 'missing_token', 'a write without the admin token'),
  wrongToken: outcome('ERR_ADMIN_TOKEN_WRONG', 401, 'wrong_token', 'a write with a wrong admin token'),
} as const;

export const HTTP_REASONS: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 409: 'Conflict', 421: 'Misdirected Request', 426: 'Upgrade Required', 429: 'Too Many Requests', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/**
 * Close codes the balancer itself sends once a tunnel is up (RFC 6455 section 7.4 and the IANA registry).
 * Codes chosen by the client or the backend are relayed unchanged; these are for what the balancer decides.
 */
export const CloseCodes = {
  /** Normal end, sent when the peer's close frame carried no code. */
  normal: 1000,
  /** Balancer shutting down (drain), or the client vanished (sent to the backend). */
  goingAway: 1001,
  /** The backend spoke broken WebSocket framing. Sent to the backend. */
  protocolError: 1002,
  /** A message larger than the route's maxPayload. Sent to both sides. */
  messageTooBig: 1009,
  /** The backend misbehaved or stopped answering pings: the client should retry. */
  backendError: 1011,
  /** The backend's TCP connection dropped without a close frame (typically a restart): reconnect. */
  backendLost: 1012,
  /** The backend could not keep up: more than backendBufferLimit was waiting for it. */
  backendSlow: 1013,
} as const;

/** The per-worker hot-path counts (src/stats/counters.ts; tunnel.ts's `counters[counter]++` checks the names) a tunnel ending bumps. */
export type TunnelCounter = 'tooBigFromClient' | 'tooBigFromBackend' | 'slowBackendCloses' | 'slowClientCloses' | 'idleBackendCloses' | 'idleClientCloses';

/**
 * How the balancer ends a tunnel it decides to end: the close code and reason to each side
 * (undefined: that side is not sent a close frame, because it is already gone, or, for the backend,
 * its connection is cut instead), and the count it adds to. Closes started by the client or the
 * backend are relayed with their own code and reason, and counted by side and code
 * (switchyard_tunnels_closed_total) like these.
 */
export interface TunnelEnding {
  readonly code: string;
  readonly toClient?: number;
  readonly clientReason?: string;
  readonly toBackend?: number;
  readonly backendReason?: string;
  readonly counter?: TunnelCounter;
}

/** Every tunnel ending the balancer decides; tunnel.ts ends tunnels only through these. */
export const TunnelEndings = {
  /** A client message larger than the route's maxPayload (caught by the balancer). */
  clientTooBig: { code: 'ERR_CLIENT_MESSAGE_TOO_BIG', toClient: CloseCodes.messageTooBig, clientReason: 'message too big', toBackend: CloseCodes.messageTooBig, backendReason: 'client message too big', counter: 'tooBigFromClient' },
  /** Far past maxPayload: uWS cut the client without a close frame; the backend hears why. */
  clientTooBigCut: { code: 'ERR_CLIENT_MESSAGE_TOO_BIG', toBackend: CloseCodes.messageTooBig, backendReason: 'client message too big', counter: 'tooBigFromClient' },
  /** uWS closed a client that stopped answering its pings (the route's idleTimeout). */
  clientIdle: { code: 'ERR_CLIENT_IDLE', toBackend: CloseCodes.goingAway, backendReason: 'client connection lost', counter: 'idleClientCloses' },
  /** The client's connection dropped without a close frame (or with a code that cannot be relayed). */
  clientLost: { code: 'ERR_CLIENT_LOST', toBackend: CloseCodes.goingAway, backendReason: 'client connection lost' },
  /** More than backendBufferLimit waits for the backend. */
  backendSlow: { code: 'ERR_BACKEND_SLOW', toClient: CloseCodes.backendSlow, clientReason: 'backend too slow', toBackend: CloseCodes.goingAway, backendReason: 'balancer closed a tunnel the backend could not keep up with', counter: 'slowBackendCloses' },
  /** uWS dropped a message to the client past maxBackpressure. */
  clientSlow: { code: 'ERR_CLIENT_SLOW', toClient: CloseCodes.backendSlow, clientReason: 'client too slow', toBackend: CloseCodes.goingAway, backendReason: 'client too slow', counter: 'slowClientCloses' },
  /** The backend did not answer a ping within backendIdleTimeout: its connection is cut. */
  backendIdle: { code: 'ERR_BACKEND_IDLE', toClient: CloseCodes.backendError, clientReason: 'backend not responding', counter: 'idleBackendCloses' },
  /** The backend's TCP connection dropped without a close frame (typically a restart). */
  backendLost: { code: 'ERR_BACKEND_LOST', toClient: CloseCodes.backendLost, clientReason: 'backend connection lost' },
  /** The backend left the pool (DNS no longer gives it) and its drainTimeout passed: the client reconnects to another. */
  backendRemoved: { code: 'ERR_BACKEND_REMOVED', toClient: CloseCodes.goingAway, clientReason: 'backend left the pool', toBackend: CloseCodes.goingAway, backendReason: 'backend left the pool' },
  /** Drain: the balancer is shutting down. */
  shutdown: { code: 'ERR_DRAINING', toClient: CloseCodes.goingAway, clientReason: 'balancer shutting down', toBackend: CloseCodes.goingAway, backendReason: 'balancer shutting down' },
} as const satisfies Record<string, TunnelEnding>;

/**
 * The backend broke the framing (the frame reader's close code and reason): 1011 to the client with
 * the reader's reason, the reader's code to the backend; a message past maxPayload (1009) is a limit
 * of ours, told as 1009 to both and counted as too big, not against the backend.
 */
export function backendFramingEnding(closeCode: number, reason: string): TunnelEnding {
  const tooBig = closeCode === CloseCodes.messageTooBig;
  return { code: tooBig ? 'ERR_BACKEND_MESSAGE_TOO_BIG' : 'ERR_BACKEND_PROTOCOL', toClient: tooBig ? CloseCodes.messageTooBig : CloseCodes.backendError, clientReason: reason, toBackend: closeCode, backendReason: reason, counter: tooBig ? 'tooBigFromBackend' : undefined };
}

/** True for codes that may appear in a close frame (RFC 6455 7.4.1/7.4.2: not 1004-1006, 1015, nor <1000). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/**
 * Connections the public listener closes, without an answer, for their PROXY protocol header
 * (src/proxy-protocol.ts, config listen.proxyProtocol); the label is
 * `switchyard_proxy_protocol_refused_total`'s reason.
 */
export const ProxyProtocolRefusals = {
  notConfigured: outcome('ERR_PROXY_NOT_CONFIGURED', 0, 'not_configured', 'a PROXY protocol header on a listener without listen.proxyProtocol'),
  untrustedPeer: outcome('ERR_PROXY_UNTRUSTED', 0, 'untrusted_peer', 'a PROXY protocol header from a peer not in trustedProxies'),
  missingHeader: outcome('ERR_PROXY_MISSING', 0, 'missing_header', 'a peer in trustedProxies sent no PROXY protocol header'),
  badHeader: outcome('ERR_PROXY_BAD_HEADER', 0, 'bad_header', 'a PROXY protocol header that breaks its format'),
  /** The listener's internal port (behind the front) got a connection that did not come through the front. */
  notFromFront: outcome('ERR_PROXY_NOT_FROM_FRONT', 0, 'not_from_front', 'a connection to the internal port that did not come through the PROXY protocol front'),
} as const;
