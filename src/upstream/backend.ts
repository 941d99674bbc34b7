// A backend server of a pool. Whether it may get new tunnels is decided here and only here:
// admin state (set by the operator) x health state (set by health checks, in a later issue).
import type { AdminState, BackendConfig } from '../config/schema';

export type HealthState = 'up' | 'down';

export class Backend {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  /** Stable name for logs and (later) metric labels: host:port. */
  readonly name: string;
  admin: AdminState;
  health: HealthState = 'up';
  /** Tunnels open or being opened through this worker. */
  active = 0;
  /** Tunnels this worker opened to this backend (a plain count; published as a metric at scrape time). */
  tunnelsOpened = 0;
  /** Times outlier detection ejected this backend (published as switchyard_backend_ejections_total). */
  ejections = 0;

  constructor(config: BackendConfig) {
    const u = new URL(config.url);
    this.url = config.url;
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(u.port) || 80;
    this.weight = config.weight;
    this.admin = config.admin;
    this.name = `${u.hostname}:${this.port}`;
  }

  /** May this backend get a new tunnel or request? Drain and maintenance both say no; drain keeps what it has. */
  get eligible(): boolean {
    return this.admin === 'ready' && this.health === 'up';
  }
}
