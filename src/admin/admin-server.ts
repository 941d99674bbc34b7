// The admin listener, in the primary: Prometheus metrics aggregated over the workers, liveness and
// readiness probes, a JSON status (with the shared state's fleet view) and its last minutes, a
// status page, the admin-state switch used by `switchyard admin` and the reload of `switchyard reload`. Plain
// node:http: it is not the hot path, and it never shares the public port (binds 127.0.0.1 by default).
// Reads are open; writes need the admin token (or come through admin.socket); on TCP every request's
// Host must be one the listener answers to, so no web page can drive it or read it by DNS rebinding.
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type ListenOptions } from 'node:net';
import { ADMIN_TOKEN_ENV, type LoadedConfig } from '../config/load';
import { ADMIN_STATES, type AdminState } from '../config/schema';
import { AdminRefusals, isLocalResourceError, type Outcome } from '../errors';
import { reportLocalFailure } from '../local-failures';
import type { Logger } from '../log';
import { gatherClusterMetrics } from '../stats/cluster-metrics';
import { countAdminRefusal } from '../stats/metrics';
import { RebalanceConflict, type RebalanceStatus, type ReloadResult, type StatusReport } from './admin-api';
import { parseDuration } from '../config/units';
import type { WorkerView } from '../stats/metrics';
import { checkBearer } from './admin-token';
import { HostAllowList } from './host-allow-list';
import { LogThrottle } from '../log-throttle';
import { STATUS_PAGE } from './status-page';
import { StatusReporter, type Status } from './status';
import { HISTORY_INTERVAL_MS, StatusHistory } from './status-history';

export interface AdminView {
  /** Every worker has listened once. */
  started(): boolean;
  workers(): readonly WorkerView[];
  /** The shared state's view: health, active checks, ejections, admin state, fleet-wide tunnels. */
  fleet(): StatusReport;
  /** Sets a backend's admin state fleet-wide (POST /admin). */
  setAdmin(pool: string, backend: string, state: AdminState): Promise<void>;
  /**
   * Starts a rebalance of a pool on every machine (POST /rebalance, `switchyard rebalance`); rejects
   * for an unknown pool, a RebalanceConflict when one runs, or when the fleet could not be told (then nothing started).
   */
  rebalance(pool: string, timeoutMs?: number): Promise<RebalanceStatus>;
  /** The pool's rebalance, running or last ended (GET /rebalance). */
  rebalanceStatus(pool: string): RebalanceStatus | undefined;
  /** The config the current workers run (a reload replaces it). */
  config(): LoadedConfig;
  /** Reads the config again and starts new workers with it (POST /reload, `switchyard reload`). */
  reload(): Promise<ReloadResult>;
}

export interface AdminListener {
  port: number;
  /** admin.socket's path, when it is set. */
  socket: string | undefined;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;
/** TCP: Host allow-list, and writes need the token. The Unix socket: its file mode is the credential. */
type Via = 'tcp' | 'socket';

/** Repeated refusals of one reason log one line per this long (with the count held back). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...extra });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

const json = (res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void =>
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`, extra);

export async function startAdminListener(config: LoadedConfig, publicPort: number, view: AdminView, log: Logger): Promise<AdminListener> {
  const reporter = new StatusReporter(() => view.config(), publicPort);
  const socketPath = config.admin.socket;

  const status = async (): Promise<Status & { fleet: StatusReport }> => {
    const gathered = await gatherClusterMetrics();
    const fleet = view.fleet();
    const status = reporter.build(await gathered.registry.getMetricsAsJSON(), { started: view.started(), workers: view.workers() }, { asked: gathered.asked, answered: gathered.answered }, fleet);
    return { ...status, fleet };
  };

  // The status page's charts: a sample of /status every few seconds, whether or not a page is open,
  // so that one opened during an incident shows the minutes before it. One sample at a time.
  const history = new StatusHistory();
  let sampling = false;
  const sample = (): void => {
    if (sampling) return;
    sampling = true;
    status()
      .then((s) => history.record(Date.now(), s))
      .catch((err: unknown) => log.warn({ err }, 'status history: sample failed'))
      .finally(() => (sampling = false));
  };
  const sampler = setInterval(sample, HISTORY_INTERVAL_MS).unref();
  sample();

  // POST /admin?pool=P&backend=HOST:PORT&state=ready|drain|maintenance: `switchyard admin`.
  const setAdmin = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const pool = url.searchParams.get('pool') ?? '';
    const backend = url.searchParams.get('backend') ?? '';
    const state = url.searchParams.get('state') ?? '';
    if (!(ADMIN_STATES as readonly string[]).includes(state)) return json(res, 400, { error: `state must be one of ${ADMIN_STATES.join(', ')}` });
    try {
      await view.setAdmin(pool, backend, state as AdminState);
    } catch (err) {
      const message = (err as Error).message;
      return json(res, message.startsWith('no backend') ? 404 : 503, { error: message });
    }
    log.info({ pool, backend, admin: state }, 'admin state set by operator');
    json(res, 200, { pool, backend, admin: state });
  };

  // POST /rebalance?pool=P[&timeout=10m]: `switchyard rebalance`; starts one and answers at once
  // (GET /rebalance?pool=P follows it). 404 unknown pool, 409 one runs already.
  const rebalance = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const pool = url.searchParams.get('pool') ?? '';
    const timeoutText = url.searchParams.get('timeout');
    const timeoutMs = timeoutText === null ? undefined : parseDuration(timeoutText);
    if (timeoutMs === undefined && timeoutText !== null) return json(res, 400, { error: 'timeout must be a duration such as 90s or 10m' });
    if (timeoutMs !== undefined && (timeoutMs < 1000 || timeoutMs > 24 * 3600_000)) return json(res, 400, { error: 'timeout must be between 1s and 24h' });
    if (view.config().pools[pool] === undefined) return json(res, 404, { error: `no pool ${pool}` });
    try {
      const started = await view.rebalance(pool, timeoutMs);
      json(res, 200, { pool, ...started });
    } catch (err) {
      const message = (err as Error).message;
      if (err instanceof RebalanceConflict) return json(res, 409, { pool, error: message, ...view.rebalanceStatus(pool) });
      json(res, 503, { pool, error: message });
    }
  };
  const rebalanceStatus = (req: IncomingMessage, res: ServerResponse): void => {
    const pool = new URL(req.url ?? '/', 'http://admin').searchParams.get('pool') ?? '';
    if (view.config().pools[pool] === undefined) return json(res, 404, { error: `no pool ${pool}` });
    const status = view.rebalanceStatus(pool);
    if (status === undefined) return json(res, 404, { error: `no rebalance of ${pool} has run on this machine` });
    json(res, 200, { pool, ...status });
  };

  /**
   * Every path, by method. GET (and HEAD) are reads, open to any client whose Host passes. Every
   * other method is a write: the dispatcher checks the token before it calls the handler, so a write
   * added here cannot skip the check.
   */
  const routes: Record<string, Partial<Record<'GET' | 'POST', Handler>>> = {
    '/metrics': {
      GET: async (_req, res) => {
        const { registry } = await gatherClusterMetrics();
        send(res, 200, registry.contentType, await registry.metrics());
      },
    },
    // Liveness: the primary answers, so the process is up.
    '/healthz': { GET: (_req, res) => send(res, 200, 'text/plain; charset=utf-8', 'ok\n') },
    // Readiness: listening, and at least one backend that may take new tunnels.
    '/readyz': {
      GET: async (_req, res) => {
        const s = await status();
        if (s.ready) send(res, 200, 'text/plain; charset=utf-8', 'ready\n');
        else send(res, 503, 'text/plain; charset=utf-8', `not ready: ${s.notReady.join(', ')}\n`);
      },
    },
    '/status': { GET: async (_req, res) => json(res, 200, await status()) },
    // The last minutes of /status (tunnels per backend, messages/s, upgrades/s), for the page's charts.
    '/status/history': { GET: (_req, res) => json(res, 200, history.history()) },
    '/': { GET: (_req, res) => send(res, 200, 'text/html; charset=utf-8', STATUS_PAGE) },
    '/admin': { POST: setAdmin },
    '/rebalance': { GET: rebalanceStatus, POST: rebalance },
    // `switchyard reload`, as SIGHUP; 200 when the new workers listen, 409 when the config was
    // refused, they did not start, or another reload is under way (the old workers keep serving).
    '/reload': {
      POST: async (_req, res) => {
        const result = await view.reload();
        json(res, result.ok ? 200 : 409, result);
      },
    },
  };

  // The allow-list follows the config in force (admin.allowedHosts may change on reload).
  let hostsFor: LoadedConfig | undefined;
  let hosts: HostAllowList | undefined;
  const allowedHosts = (): HostAllowList => {
    const current = view.config();
    if (hosts === undefined || hostsFor !== current) [hosts, hostsFor] = [new HostAllowList(config.admin.host, current.admin.allowedHosts), current];
    return hosts;
  };

  /** Why a write over TCP may not go ahead, or undefined when its token is right. */
  const unauthorized = (req: IncomingMessage): { refusal: Outcome; error: string; challenge?: string } | undefined => {
    const token = view.config().adminToken;
    if (token === undefined) {
      const socket = socketPath === undefined ? '' : `, or write through admin.socket (${socketPath})`;
      return { refusal: AdminRefusals.writesOff, error: `admin writes are off: no admin token is configured; set admin.tokenFile, admin.token or ${ADMIN_TOKEN_ENV}${socket}` };
    }
    const check = checkBearer(req.headers.authorization, token.value);
    if (check === 'ok') return undefined;
    if (check === 'missing') {
      return { refusal: AdminRefusals.missingToken, error: `this needs the admin token: send Authorization: Bearer <token> (switchyard admin and reload read it from --config, --token-file or ${ADMIN_TOKEN_ENV})`, challenge: 'Bearer realm="switchyard admin"' };
    }
    return { refusal: AdminRefusals.wrongToken, error: 'the admin token does not match', challenge: 'Bearer realm="switchyard admin", error="invalid_token"' };
  };

  const throttle = new LogThrottle(REFUSAL_LOG_INTERVAL_MS);
  const refuse = (req: IncomingMessage, res: ServerResponse, refusal: Outcome, error: string, challenge?: string): void => {
    countAdminRefusal(refusal.label);
    const held = throttle.pass(refusal.label);
    if (held !== undefined) {
      const { host, origin } = req.headers;
      log.warn({ reason: refusal.label, method: req.method, url: req.url?.slice(0, 200), host: host?.slice(0, 200), origin: origin?.slice(0, 200), remote: req.socket.remoteAddress, heldBack: held }, `admin request refused: ${refusal.message}`);
    }
    json(res, refusal.status, { ok: false, error }, challenge === undefined ? undefined : { 'www-authenticate': challenge });
  };

  const handle = (via: Via) => (req: IncomingMessage, res: ServerResponse): void => {
    if (via === 'tcp' && !allowedHosts().allows(req.headers.host, req.socket.localAddress)) {
      const error = `Host "${(req.headers.host ?? '').slice(0, 200)}" is not one this admin listener answers to: it answers to localhost, loopback addresses, the address it was reached on and admin.allowedHosts (add the name there to use it)`;
      return refuse(req, res, AdminRefusals.misdirected, error);
    }
    const path = (req.url ?? '/').split('?')[0];
    const route = routes[path];
    if (route === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /status, /status/history, /metrics, /healthz, /readyz, POST /admin, POST /reload, POST /rebalance\n');
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = method === 'GET' || method === 'POST' ? route[method] : undefined;
    if (handler === undefined) {
      const allow = Object.keys(route).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: allow.join(', ') });
    }
    if (method !== 'GET' && via === 'tcp') {
      const denied = unauthorized(req);
      if (denied !== undefined) return refuse(req, res, denied.refusal, denied.error, denied.challenge);
    }
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      log.error({ err, path }, 'admin request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  };

  const server: Server = createServer(handle('tcp'));
  server.keepAliveTimeout = 5000;
  const { host, port } = config.admin;
  await listen(server, { host, port, exclusive: true });
  let socketServer: Server | undefined;
  if (socketPath !== undefined) {
    socketServer = createServer(handle('socket'));
    socketServer.keepAliveTimeout = 5000;
    try {
      await listenOnSocket(socketServer, socketPath);
    } catch (err) {
      await closeServer(server);
      throw err;
    }
  }
  // Once listening, the only 'error' is a failed accept (EMFILE at the descriptor limit): Node
  // would throw it, taking the primary down. libuv sheds the connection; the listener goes on.
  const onError = (err: NodeJS.ErrnoException): void => {
    if (isLocalResourceError(err.code)) reportLocalFailure(err.code, 'accept', { listener: 'admin' });
    else log.warn({ err }, 'admin listener error');
  };
  server.on('error', onError);
  socketServer?.on('error', onError);
  return {
    port: (server.address() as { port: number }).port,
    socket: socketPath,
    close: async () => {
      clearInterval(sampler);
      await Promise.all([closeServer(server), socketServer && closeServer(socketServer)]);
    },
  };
}

function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** An error whose message is the whole line for the operator (the caller names no port). */
export class AdminSocketError extends Error {
  readonly code = 'ERR_ADMIN_SOCKET';
}

/**
 * Listens on admin.socket, created mode 0600 (the umask is set around the bind, so the file is never
 * reachable by others, even for an instant). A socket file left by a process that is gone is
 * replaced; one that answers, or a file that is not a socket, is an error.
 */
async function listenOnSocket(server: Server, path: string): Promise<void> {
  let stats;
  try {
    stats = lstatSync(path);
  } catch {
    stats = undefined; // nothing there
  }
  if (stats !== undefined) {
    if (!stats.isSocket()) throw new AdminSocketError(`admin.socket: ${path} exists and is not a socket`);
    if (await answers(path)) throw new AdminSocketError(`admin.socket: ${path} is in use by another process`);
    unlinkSync(path);
  }
  const umask = process.umask(0o177);
  try {
    server.listen({ path });
  } finally {
    process.umask(umask);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new AdminSocketError(`admin.socket: cannot listen on ${path}: ${err.code ?? err.message}`)));
    server.once('listening', resolve);
  });
  chmodSync(path, 0o600);
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
