// The admin listener, in the primary: Prometheus metrics aggregated over the workers, liveness and
// readiness probes, a JSON status (with the shared state's fleet view), a status page, the
// admin-state switch used by `switchyard admin` and the reload of `switchyard reload`. Plain
// node:http: it is not the hot path, and it never shares the public port (binds 127.0.0.1 by default).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { LoadedConfig } from '../config/load';
import { ADMIN_STATES, type AdminState } from '../config/schema';
import { isLocalResourceError } from '../errors';
import { reportLocalFailure } from '../local-failures';
import type { Logger } from '../log';
import { gatherClusterMetrics } from '../stats/cluster-metrics';
import type { StatusReport } from '../primary/coordination';
import type { ReloadResult } from '../primary/supervisor';
import type { WorkerView } from '../stats/metrics';
import { STATUS_PAGE } from './status-page';
import { StatusReporter, type Status } from './status';

export interface AdminView {
  /** Every worker has listened once. */
  started(): boolean;
  workers(): readonly WorkerView[];
  /** The shared state's view: health, active checks, ejections, admin state, fleet-wide tunnels. */
  fleet(): StatusReport;
  /** Sets a backend's admin state fleet-wide (POST /admin). */
  setAdmin(pool: string, backend: string, state: AdminState): Promise<void>;
  /** The config the current workers run (a reload replaces it). */
  config(): LoadedConfig;
  /** Reads the config again and starts new workers with it (POST /reload, `switchyard reload`). */
  reload(): Promise<ReloadResult>;
}

export interface AdminListener {
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...extra });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

const json = (res: ServerResponse, status: number, value: unknown): void => send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`);

export async function startAdminListener(config: LoadedConfig, publicPort: number, view: AdminView, log: Logger): Promise<AdminListener> {
  const reporter = new StatusReporter(() => view.config(), publicPort);

  const status = async (): Promise<Status & { fleet: StatusReport }> => {
    const gathered = await gatherClusterMetrics();
    const status = reporter.build(await gathered.registry.getMetricsAsJSON(), { started: view.started(), workers: view.workers() }, { asked: gathered.asked, answered: gathered.answered });
    return { ...status, fleet: view.fleet() };
  };

  const routes: Record<string, (res: ServerResponse) => Promise<void> | void> = {
    '/metrics': async (res) => {
      const { registry } = await gatherClusterMetrics();
      send(res, 200, registry.contentType, await registry.metrics());
    },
    // Liveness: the primary answers, so the process is up.
    '/healthz': (res) => send(res, 200, 'text/plain; charset=utf-8', 'ok\n'),
    // Readiness: listening, and at least one backend that may take new tunnels.
    '/readyz': async (res) => {
      const s = await status();
      if (s.ready) send(res, 200, 'text/plain; charset=utf-8', 'ready\n');
      else send(res, 503, 'text/plain; charset=utf-8', `not ready: ${s.notReady.join(', ')}\n`);
    },
    '/status': async (res) => json(res, 200, await status()),
    '/': (res) => send(res, 200, 'text/html; charset=utf-8', STATUS_PAGE),
  };

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

  // POST /reload: `switchyard reload`, as SIGHUP; 200 when the new workers listen, 409 when the
  // config was refused or they did not start (the old workers keep serving either way).
  const reload = async (res: ServerResponse): Promise<void> => {
    const result = await view.reload();
    json(res, result.ok ? 200 : 409, result);
  };

  const posts: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> = {
    '/admin': setAdmin,
    '/reload': (_req, res) => reload(res),
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    const post = posts[path];
    if (post !== undefined) {
      if (req.method !== 'POST') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'POST' });
      return void post(req, res).catch((err: unknown) => {
        log.error({ err, path }, 'admin request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
      });
    }
    const route = routes[path];
    if (route === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /status, /metrics, /healthz, /readyz, POST /admin, POST /reload\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    Promise.resolve(route(res)).catch((err: unknown) => {
      log.error({ err, path }, 'admin request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  };

  const server: Server = createServer(handle);
  server.keepAliveTimeout = 5000;
  const { host, port } = config.admin;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  // Once listening, the only 'error' is a failed accept (EMFILE at the descriptor limit): Node
  // would throw it, taking the primary down. libuv sheds the connection; the listener goes on.
  server.on('error', (err: NodeJS.ErrnoException) => {
    if (isLocalResourceError(err.code)) reportLocalFailure(err.code, 'accept', { listener: 'admin' });
    else log.warn({ err }, 'admin listener error');
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
