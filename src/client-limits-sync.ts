// The worker's side of per-client counting (client-limits.ts): every sync interval it reports this
// worker's client IPs near a limit to the primary (which also forgets IPs that hold nothing), and
// applies what the primary says the other workers and machines hold. Nothing here is awaited by an
// upgrade.
import type { ClientLimits } from './client-limits';
import type { PrimaryMessage, WorkerMessage } from './ipc';

export class ClientLimitsSync {
  private timer: NodeJS.Timeout | undefined;
  private lastReport = '[]';

  constructor(
    private readonly limits: ClientLimits,
    private readonly intervalMs: number,
    private readonly send: (m: WorkerMessage) => void,
  ) {}

  start(): void {
    if (!this.limits.enabled) return;
    this.timer = setInterval(() => this.report(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Handles the primary's per-client message; false for others. */
  onMessage(m: PrimaryMessage): boolean {
    if (m.type !== 'clients-elsewhere') return false;
    this.limits.setElsewhere(m.clients);
    return true;
  }

  private report(): void {
    const hot = this.limits.report(performance.now());
    const text = JSON.stringify(hot);
    if (text === this.lastReport) return;
    this.lastReport = text;
    this.send({ type: 'client-report', clients: hot });
  }
}
