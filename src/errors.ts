// Every way an upgrade or a tunnel can end badly, in one table: the stable code, what the client gets
// (an HTTP status before the upgrade, a close code after it), and the label later used by metrics.

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
  backendTimeout: outcome('ERR_BACKEND_TIMEOUT', 504, 'backend_timeout', 'the backend did not answer in time'),
  clientTimeout: outcome('ERR_CLIENT_TIMEOUT', 408, 'client_timeout', 'the request body stopped arriving'),
  noBackend: outcome('ERR_NO_BACKEND', 503, 'no_backend', 'no backend is available'),
  clientTunnelLimit: outcome('ERR_CLIENT_TUNNELS', 429, 'client_tunnel_limit', 'this client IP holds as many tunnels as clientLimits.maxTunnels allows'),
  clientRateLimit: outcome('ERR_CLIENT_RATE', 429, 'client_rate_limit', 'this client IP started upgrades faster than clientLimits.upgradesPerSecond allows'),
  draining: outcome('ERR_DRAINING', 503, 'draining', 'the balancer is shutting down'),
  /** The worker holds workerConnections client connections (NGINX's worker_connections, HAProxy's maxconn). */
  workerFull: outcome('ERR_WORKER_FULL', 503, 'worker_full', 'this balancer process is at its connection limit', true),
  /** The balancer ran out of descriptors, ports or buffers (localResourceErrors below): its fault, never the backend's. */
  localResources: outcome('ERR_LOCAL_RESOURCES', 503, 'local_resources', 'the balancer is out of local resources (descriptors, ports or buffers)', true),
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
