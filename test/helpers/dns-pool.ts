// Helpers of the DNS tests: echo backends on several loopback addresses, a pool as the primary sees
// it, and tunnels opened until they reached the backends a test waits for.
import { adminStatus } from './admin';
import type { Balancer } from './balancer';
import { startEchoBackend, type EchoBackend } from './backends';
import { connect, type TestClient } from './ws-client';
import { waitFor } from './wait';

/** One echo backend per address, all on the same port (an A record carries no port). */
export async function startBackendsOn(ips: readonly string[]): Promise<{ port: number; backends: Map<string, EchoBackend> }> {
  const first = await startEchoBackend({ name: ips[0], host: ips[0] });
  const backends = new Map([[ips[0], first]]);
  for (const ip of ips.slice(1)) backends.set(ip, await startEchoBackend({ name: ip, host: ip, port: first.port }));
  return { port: first.port, backends };
}

/** The backends of `pool` in the primary's view, by name, with their admin state. */
export async function poolView(b: Balancer, pool: string): Promise<Record<string, string>> {
  const report = await adminStatus(b.adminPort!);
  return Object.fromEntries((report.pools[pool] ?? []).map((x) => [x.backend, x.admin]));
}

export async function waitForPool(b: Balancer, pool: string, want: Record<string, string>, what: string): Promise<void> {
  await waitFor(async () => JSON.stringify(await poolView(b, pool)) === JSON.stringify(want), 10_000, what);
}

/** Opens tunnels on `path` until `ok` says the set of backends they reached is complete (at most `max`). */
export async function tunnelsUntil(b: Balancer, path: string, clients: TestClient[], max: number, ok: (reached: Set<string>) => boolean): Promise<Set<string>> {
  const reached = new Set<string>();
  for (let i = 0; i < max && !ok(reached); i++) {
    const c = await connect(b.url(`${path}?i=${clients.length}`));
    clients.push(c);
    reached.add(await c.whoami());
  }
  return reached;
}
