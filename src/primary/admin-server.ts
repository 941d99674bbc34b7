// The primary's admin endpoint (off unless `admin.port` is set; keep it on loopback):
//   GET  /status                                      this machine's view of every pool's backends (JSON)
//   POST /admin?pool=P&backend=HOST:PORT&state=S      sets S (ready | drain | maintenance) fleet-wide
// `switchyard status` and `switchyard admin` are its clients.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ADMIN_STATES, type AdminState } from '../config/schema';
import type { Logger } from '../log';
import type { Coordination } from './coordination';

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

async function handle(coordination: Coordination, log: Logger, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  if (req.method === 'GET' && url.pathname === '/status') return reply(res, 200, coordination.status());
  if (req.method === 'POST' && url.pathname === '/admin') {
    const pool = url.searchParams.get('pool') ?? '';
    const backend = url.searchParams.get('backend') ?? '';
    const state = url.searchParams.get('state') ?? '';
    if (!(ADMIN_STATES as readonly string[]).includes(state)) return reply(res, 400, { error: `state must be one of ${ADMIN_STATES.join(', ')}` });
    try {
      await coordination.setAdmin(pool, backend, state as AdminState);
    } catch (err) {
      const message = (err as Error).message;
      return reply(res, message.startsWith('no backend') ? 404 : 503, { error: message });
    }
    log.info({ pool, backend, admin: state }, 'admin state set by operator');
    return reply(res, 200, { pool, backend, admin: state });
  }
  reply(res, 404, { error: 'GET /status or POST /admin?pool=&backend=&state=' });
}

export function startAdminServer(coordination: Coordination, host: string, port: number, log: Logger): Promise<Server> {
  const server = createServer((req, res) => void handle(coordination, log, req, res));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.unref();
      resolve(server);
    });
  });
}
