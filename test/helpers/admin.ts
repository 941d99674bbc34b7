// Reads a running balancer's fleet view from its admin listener (GET /status), as `switchyard status --json` does.
import { fetchStatus } from '../../src/admin-client';
import type { BackendStatus, StatusReport } from '../../src/admin/admin-api';

export function adminStatus(port: number): Promise<StatusReport> {
  return fetchStatus(`127.0.0.1:${port}`);
}

/** The status of one backend (host:port) of `pool`. */
export async function backendStatus(port: number, pool: string, backend: string): Promise<BackendStatus> {
  const report = await adminStatus(port);
  const found = report.pools[pool]?.find((b) => b.backend === backend);
  if (!found) throw new Error(`no backend ${backend} in pool ${pool}: ${JSON.stringify(report)}`);
  return found;
}
