// `switchyard status`, `switchyard admin` and `switchyard reload`: clients of the primary's admin listener
// (src/admin/admin-server.ts). The status table is what an operator reads; --json gives the report.
import { Agent, request } from 'undici';
import type { RebalanceStatus, ReloadResult, StatusReport } from './admin/admin-api';

/** Where the admin listener is, and the token writes carry (none: writes work only on admin.socket). */
export interface AdminTarget {
  /** host:port over TCP. */
  address: string;
  /** admin.socket's path: used instead of `address` when set. */
  socket?: string;
  token?: string;
}

async function call(target: AdminTarget, method: 'GET' | 'POST', path: string, timeoutMs = 5000): Promise<unknown> {
  const where = target.socket ?? target.address;
  // Over the socket, Host is localhost (what curl --unix-socket sends); the socket checks no Host.
  const url = target.socket === undefined ? `http://${target.address}${path}` : `http://localhost${path}`;
  const dispatcher = target.socket === undefined ? undefined : new Agent({ connect: { socketPath: target.socket } });
  const headers: Record<string, string> = method === 'POST' && target.token !== undefined ? { authorization: `Bearer ${target.token}` } : {};
  let status: number;
  let text: string;
  try {
    const res = await request(url, { method, headers, dispatcher, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    status = res.statusCode;
    text = await res.body.text();
  } catch (err) {
    throw new Error(`cannot reach the admin ${target.socket === undefined ? 'endpoint' : 'socket'} at ${where}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    await dispatcher?.close();
  }
  let body: { error?: string } = {};
  try {
    body = JSON.parse(text) as { error?: string };
  } catch {
    // not JSON: the status line says enough
  }
  if (status !== 200) throw new Error(body.error ?? `admin endpoint answered ${status}`);
  return body;
}

export async function fetchStatus(target: AdminTarget | string): Promise<StatusReport> {
  return ((await call(typeof target === 'string' ? { address: target } : target, 'GET', '/status')) as { fleet: StatusReport }).fleet;
}

export async function setAdminState(target: AdminTarget, pool: string, backend: string, state: string): Promise<void> {
  const q = new URLSearchParams({ pool, backend, state });
  await call(target, 'POST', `/admin?${q.toString()}`);
}

/** Asks the running balancer to reload its config; rejects with its one-line reason when refused. */
export async function reload(target: AdminTarget): Promise<ReloadResult & { ok: true }> {
  // A reload waits for the new workers to listen (up to 15 s in the primary).
  return (await call(target, 'POST', '/reload', 20_000)) as ReloadResult & { ok: true };
}

/** Starts a rebalance of `pool` on every machine; rejects with the one-line reason (unknown pool, one runs already). */
export async function startRebalance(target: AdminTarget, pool: string, timeout?: string): Promise<RebalanceStatus> {
  const q = new URLSearchParams({ pool });
  if (timeout !== undefined) q.set('timeout', timeout);
  return (await call(target, 'POST', `/rebalance?${q.toString()}`)) as RebalanceStatus;
}

export async function rebalanceStatus(target: AdminTarget, pool: string): Promise<RebalanceStatus> {
  return (await call(target, 'GET', `/rebalance?${new URLSearchParams({ pool }).toString()}`)) as RebalanceStatus;
}

/** One line of a rebalance's progress. */
export function formatRebalance(pool: string, r: RebalanceStatus): string {
  const ended = r.state === 'running' ? 'running' : `${r.state} after ${Math.round((r.endedAt - r.startedAt) / 1000)} s`;
  return `rebalance ${pool}: ${ended}; skew ${r.skew} (was ${r.skewAtStart}, maxSkew ${r.maxSkew}); ${r.closed} tunnels closed by this machine`;
}

/** One table per pool: backend, health, active check (* = checked from this machine), ejection, admin, tunnels. */
export function formatStatus(report: StatusReport): string {
  const lines = [`machine ${report.machine}  shared state: ${report.state.kind} ${report.state.status}`];
  const header = ['BACKEND', 'HEALTH', 'CHECK', 'EJECTED', 'EJECTIONS', 'ADMIN', 'TUNNELS(MACHINE)', 'TUNNELS(FLEET)'];
  for (const [pool, backends] of Object.entries(report.pools)) {
    const now = Date.now();
    const rows = backends.map((b) => [
      b.backend + (b.backup ? ' (backup)' : '') + (b.discovered ? ' (dns)' : '') + (b.slowStartUntil > now ? ` (slow start, ${Math.ceil((b.slowStartUntil - now) / 1000)} s left)` : ''),
      b.health,
      b.activeCheck === 'off' ? 'off' : `${b.activeCheck}${b.checkedHere ? '*' : ''}`,
      b.ejected ? 'yes' : 'no',
      String(b.ejections),
      b.admin,
      String(b.connections.machine),
      b.maxConnections > 0 ? `${b.connections.fleet}/${b.maxConnections}` : String(b.connections.fleet),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const fmt = (r: string[]): string => '  ' + r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
    const d = report.discovery?.[pool];
    const found = d === undefined ? '' : `  (DNS ${d.dns}: ${d.backends} found${d.draining > 0 ? `, ${d.draining} draining` : ''}${d.failing ? `; lookups failing (${d.failing}), last good set kept` : ''})`;
    lines.push('', `pool ${pool}${found}`, fmt(header), ...rows.map(fmt));
  }
  return lines.join('\n') + '\n';
}
