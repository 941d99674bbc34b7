// Reads a running balancer's admin endpoint (GET /status), as `switchyard status --json` does.
import { request } from 'undici';
import type { BackendStatus, StatusReport } from '../../src/primary/coordination';

export async function adminStatus(port: number): Promise<StatusReport> {
  const res = await request(`http://127.0.0.1:${port}/status`);
  if (res.statusCode !== 200) throw new Error(`GET /status answered ${res.statusCode}`);
  return (await res.body.json()) as StatusReport;
}

/** The status of one backend (host:port) of `pool`. */
export async function backendStatus(port: number, pool: string, backend: string): Promise<BackendStatus> {
  const report = await adminStatus(port);
  const found = report.pools[pool]?.find((b) => b.backend === backend);
  if (!found) throw new Error(`no backend ${backend} in pool ${pool}: ${JSON.stringify(report)}`);
  return found;
}
