// Per-client counts of a machine, in the primary (the control path): each worker reports its client
// IPs near a limit (src/client-limits.ts); this sums them, adds the other machines' through the
// shared state when clientLimits.scope is fleet, and tells each worker what is held outside it.
// Workers never wait for it: they limit on the last counts they were sent.
import type { Worker } from 'node:cluster';
import { MAX_REPORTED_CLIENTS, type ClientCount } from '../client-limits';
import { addClientCounts, type SharedState } from '../state/shared-state';
import type { PrimaryMessage } from '../ipc';

export class ClientCounts {
  private readonly workers = new Map<Worker, { clients: readonly ClientCount[]; sent: string }>();

  constructor(
    private readonly state: SharedState,
    /** clientLimits.scope is fleet: this machine's counts go to the shared state and the others' come back. */
    private fleet: boolean,
  ) {
    state.on('clients', () => this.push());
  }

  /** After a reload (the scope may have changed). */
  reconfigure(fleet: boolean): void {
    if (this.fleet && !fleet) this.state.setLocalClients([]);
    this.fleet = fleet;
  }

  addWorker(worker: Worker): void {
    this.workers.set(worker, { clients: [], sent: '[]' });
  }

  /** A dead worker's tunnels are gone with it. */
  removeWorker(worker: Worker): void {
    if (this.workers.delete(worker)) this.push();
  }

  /** A worker's report: the other workers hear of it at once (the machine-wide limit is as fresh as that). */
  onReport(worker: Worker, clients: readonly ClientCount[]): void {
    const w = this.workers.get(worker);
    if (w === undefined) return;
    w.clients = clients;
    this.push();
  }

  /** Every sync interval: this machine's totals for the shared state, the largest first. */
  sync(): void {
    if (!this.fleet) return;
    const machine = [...this.machineTotals().values()];
    if (machine.length > MAX_REPORTED_CLIENTS) machine.sort((a, b) => b[1] - a[1] || b[2] - a[2]).length = MAX_REPORTED_CLIENTS;
    this.state.setLocalClients(machine);
  }

  private machineTotals(): Map<string, ClientCount> {
    const total = new Map<string, ClientCount>();
    for (const w of this.workers.values()) addClientCounts(total, w.clients);
    return total;
  }

  /** Tells each worker what the machine's other workers and the other machines hold, when that changed. */
  private push(): void {
    const outside = new Map<string, ClientCount>();
    if (this.fleet) addClientCounts(outside, this.state.remoteClients());
    for (const w of this.workers.values()) addClientCounts(outside, w.clients);
    for (const [worker, w] of this.workers) {
      const own = new Map(w.clients.map((c) => [c[0], c]));
      const elsewhere: ClientCount[] = [];
      for (const [ip, tunnels, debt] of outside.values()) {
        const mine = own.get(ip);
        const t = tunnels - (mine?.[1] ?? 0);
        const d = debt - (mine?.[2] ?? 0);
        if (t > 0 || d > 0) elsewhere.push([ip, t, d]);
      }
      const text = JSON.stringify(elsewhere);
      if (text === w.sent) continue;
      w.sent = text;
      if (worker.isConnected()) worker.send({ type: 'clients-elsewhere', clients: elsewhere } satisfies PrimaryMessage);
    }
  }
}
