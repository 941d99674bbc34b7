// A backend server of a pool. Whether it may get new tunnels is decided here and only here:
// admin state (set by the operator) x health state (set by the primary from health checks and outlier detection).
import { TLS_SCHEMES, type AdminState, type BackendConfig, type BackendTlsConfig } from '../config/schema';
import type { UpgradePacer } from './upgrade-pacer';

export type HealthState = 'up' | 'down';

/** A TLS backend's settings, the pool's and the backend's merged, defaults applied (file paths absolute). */
export interface BackendTls {
  verify: boolean;
  /** SNI and the name its certificate must hold; undefined: the URL's host (no SNI for an IP address). */
  serverName: string | undefined;
  ca: string | undefined;
  cert: string | undefined;
  key: string | undefined;
}

export class Backend {
  readonly url: string;
  /** TLS settings for a wss:// or https:// backend; null: plain TCP. */
  readonly tls: BackendTls | null;
  /** Tunnels' connections open with a PROXY protocol v2 header (the pool's sendProxyProtocol). */
  readonly sendProxyProtocol: boolean;
  readonly host: string;
  readonly port: number;
  /** The config's, or an SRV record's (which may change: see Pool.setBackends). */
  weight: number;
  /** Most tunnels fleet-wide; 0: no limit. */
  readonly maxConnections: number;
  /** Used only while no primary (non-backup) backend of the pool can take a tunnel. */
  readonly backup: boolean;
  /** Stable name for logs and the `backend` metric label: host:port. */
  readonly name: string;
  /** pool/host:port: the backend's name in shared state (the same server in two pools is two entries). */
  readonly key: string;
  admin: AdminState;
  /** Down when an active check failed it or outlier detection ejected it (decided in the primary). */
  health: HealthState = 'up';
  /** Tunnels open or being opened through this worker. */
  active = 0;
  /** Connects from this worker under way: TCP connect plus, for a tunnel, the upgrade's answer. */
  connecting = 0;
  /** Tunnels on this backend held by the other workers and machines, as last synced. */
  elsewhere = 0;
  /** Tunnels this worker opened to this backend (a plain count; published as a metric at scrape time). */
  tunnelsOpened = 0;
  /** Times outlier detection ejected this backend (published as switchyard_backend_ejections_total). */
  ejections = 0;
  /** When it last became eligible (joined or came back up), epoch ms, decided by the primary; 0: since the start. Slow start ramps from it. */
  eligibleSince = 0;
  /** Paces this worker's new upgrades to it (the pool's maxUpgradesPerSecond); null: not paced. */
  pacer: UpgradePacer | null = null;

  /** `poolConfig`: the pool's settings every backend shares (TLS, PROXY protocol). */
  constructor(config: Omit<BackendConfig, 'resolve'>, pool = '', poolConfig: { tls?: BackendTlsConfig; sendProxyProtocol?: false | 'v2' } = {}) {
    const poolTls = poolConfig.tls;
    this.sendProxyProtocol = poolConfig.sendProxyProtocol === 'v2';
    const u = new URL(config.url);
    this.url = config.url;
    const secure = TLS_SCHEMES.includes(u.protocol);
    if (secure) {
      const tls = { ...poolTls, ...config.tls };
      this.tls = { verify: tls.verify ?? true, serverName: tls.serverName, ca: tls.ca, cert: tls.cert, key: tls.key };
    } else this.tls = null;
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(u.port) || (secure ? 443 : 80);
    this.weight = config.weight;
    this.maxConnections = config.maxConnections;
    this.backup = config.backup;
    this.admin = config.admin;
    this.name = `${u.hostname}:${this.port}`;
    this.key = `${pool}/${this.name}`;
  }

  /** Fleet-wide tunnels: this worker's live count (exact) plus everyone else's (last synced). */
  get connections(): number {
    return this.active + this.elsewhere;
  }

  /** May this backend get a new tunnel or request? Drain and maintenance both say no; drain keeps what it has. */
  get eligible(): boolean {
    return this.admin === 'ready' && this.health === 'up';
  }

  /**
   * Below maxConnections, counting fleet-wide: exact for this worker, as last synced for the others
   * (so a burst spread over workers can pass the limit by what they opened within one syncInterval).
   */
  get hasRoom(): boolean {
    return this.maxConnections === 0 || this.connections < this.maxConnections;
  }
}
