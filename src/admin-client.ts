// `switchyard status`, `switchyard admin` and `switchyard reload`: clients of the primary's admin listener
// (src/admin/admin-server.ts). The status table is what an operator reads; --json gives the report.
import { request } from 'undici';
import type { StatusReport } from './primary/coordination';
import type { ReloadResult } from './primary/supervisor';

async function call(address: string, method: 'GET' | 'POST', path: string, timeoutMs = 5000): Promise<unknown> {
  let res;
  try {
    res = await request(`http://${address}${path}`, { method, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  } catch (err) {
    throw new Error(`cannot reach the admin endpoint at ${address}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const body = (await res.body.json()) as { error?: string };
  if (res.statusCode !== 200) throw new Error(body.error ?? `admin endpoint answered ${res.statusCode}`);
  return body;
}

export async function fetchStatus(address: string): Promise<StatusReport> {
  return ((await call(address, 'GET', '/status')) as { fleet: StatusReport }).fleet;
}

export async function setAdminState(address: string, pool: string, backend: string, state: string): Promise<void> {
  const q = new URLSearchParams({ pool, backend, state });
  await call(address, 'POST', `/admin?${q.toString()}`);
}

/** Asks the running balancer to reload its config; rejects with its one-line reason when refused. */
export async function reload(address: string): Promise<ReloadResult & { ok: true }> {
  // A reload waits for the new workers to listen (up to 15 s in the primary).
  return (await call(address, 'POST', '/reload', 20_000)) as ReloadResult & { ok: true };
}

/** One table per pool: backend, health, active check (* = checked from this machine), ejection, admin, tunnels. */
export function formatStatus(report: StatusReport): string {
  const lines = [`machine ${report.machine}  shared state: ${report.state.kind} ${report.state.status}`];
  const header = ['BACKEND', 'HEALTH', 'CHECK', 'EJECTED', 'EJECTIONS', 'ADMIN', 'TUNNELS(MACHINE)', 'TUNNELS(FLEET)'];
  for (const [pool, backends] of Object.entries(report.pools)) {
    const rows = backends.map((b) => [
      b.backup ? `${b.backend} (backup)` : b.backend,
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
    lines.push('', `pool ${pool}`, fmt(header), ...rows.map(fmt));
  }
  return lines.join('\n') + '\n';
}
