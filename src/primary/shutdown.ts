// The shutdown on SIGTERM or SIGINT: every worker drains (stops accepting, closes its tunnels with
// 1001 spread over closeSpread, within drainTimeout: src/listener.ts) and exits; what is still
// there 3 s past drainTimeout is killed. A second signal exits at once, for an impatient operator.
import type { Logger } from '../log';
import type { Supervisor } from './supervisor';
import { KILL_AFTER_MS, realTimers, type Timers } from './timers';

export class Shutdown {
  /** Resolves when no worker is left, or at the backstop. */
  readonly done: Promise<void>;
  private finish!: () => void;
  private begun = false;

  constructor(
    private readonly supervisor: Supervisor,
    private readonly log: Logger,
    private readonly timers: Timers = realTimers,
    private readonly exit: (code: number) => void = (code) => process.exit(code),
  ) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    supervisor.on('idle', () => this.finish());
  }

  begin(signal: string): void {
    if (this.begun) {
      this.log.warn({ signal }, 'second signal: exiting now');
      return this.exit(1);
    }
    this.begun = true;
    const { drainTimeout } = this.supervisor.config;
    this.log.info({ signal, drainTimeoutMs: drainTimeout }, 'draining');
    this.supervisor.drain(drainTimeout);
    if (this.supervisor.idle) this.finish();
    // Workers exit by themselves after the drain; this is the backstop.
    this.timers.setTimeout(() => {
      this.supervisor.kill();
      this.finish();
    }, drainTimeout + KILL_AFTER_MS, true);
  }
}
