// Opening the backend side of a new tunnel: pick a backend, connect, ask it to upgrade; on a
// connect failure try another (up to the pool's `retries`), as NGINX's proxy_next_upstream does
// for "error timeout". A backend that answers with an HTTP status has spoken: no retry. A connect
// that failed for want of local descriptors, ports or buffers is the balancer's failure: 503, no
// retry (another backend would fail the same way), nothing counted against the backend. A backend
// paced by maxUpgradesPerSecond makes the upgrade wait its turn, or refuses it when its queue is full.
import type { Logger } from '../log';
import { isLocalResourceError, Outcomes, type Outcome } from '../errors';
import { Decision } from '../load-balancer/load-balancer';
import { backendFailed, backendSucceeded } from '../health/passive-signals';
import { reportLocalFailure } from '../local-failures';
import { encodeProxyV2 } from '../proxy-header';
import type { Backend } from '../upstream/backend';
import type { Pool } from '../upstream/pool';
import { startBackendHandshake, type BackendConnectError, type HandshakeOwner, type Refused, type Upgraded } from './backend-socket';

export type BackendOpenResult =
  | { kind: 'upgraded'; backend: Backend; upgraded: Upgraded }
  | { kind: 'refused'; backend: Backend; refused: Refused }
  /** `retryAfter`: seconds, for the Retry-After header (paced). */
  | { kind: 'failed'; outcome: Outcome; retryAfter?: number };

/**
 * On 'upgraded' the backend's `active` count stays raised for the tunnel; whoever ends the tunnel
 * lowers it. Counting from the pick (not from the 101) keeps a burst of concurrent upgrades from
 * all landing on the same least-loaded backend.
 */
export function openBackend(
  pool: Pool,
  key: string | undefined,
  pathAndQuery: string,
  headers: readonly (readonly [string, string])[],
  offeredProtocols: string,
  log: Logger,
  client?: TunnelEnds,
): Promise<BackendOpenResult> {
  return new Promise((resolve, reject) => {
    new BackendOpening(pool, key, pathAndQuery, headers, offeredProtocols, log, resolve, reject, client).next();
  });
}

/** Who the tunnel is for and where it came in, for a pool that sends a PROXY protocol header. */
export interface TunnelEnds {
  /** The client address, as the balancer decided it. */
  client: string;
  listenHost: string;
  listenPort: number;
}

/** A paced upgrade's turn has come (one function for all, not a closure per upgrade). */
function connectInTurn(opening: BackendOpening): void {
  opening.connect();
}

/**
 * The attempts of one upgrade, driven by the handshakes' callbacks: one promise per upgrade
 * rather than an async function awaiting one per attempt (churn profile, bench/README.md).
 */
class BackendOpening implements HandshakeOwner {
  private readonly tried = new Set<Backend>();
  private attempt = 0;
  private backend: Backend | undefined;
  private lastFailure: BackendConnectError['reason'] | undefined;

  constructor(
    private readonly pool: Pool,
    /** The request's hash key (Pool.keyOf), the same for every attempt. */
    private readonly key: string | undefined,
    private readonly pathAndQuery: string,
    private readonly headers: readonly (readonly [string, string])[],
    private readonly offeredProtocols: string,
    private readonly log: Logger,
    private readonly resolve: (result: BackendOpenResult) => void,
    private readonly reject: (err: unknown) => void,
    private readonly ends: TunnelEnds | undefined,
  ) {}

  next(): void {
    const { pool, tried } = this;
    const backend = this.attempt++ <= pool.retries ? pool.pick(this.key, tried) : undefined;
    if (backend === undefined) {
      // Out of attempts: the last one decides, as for a plain request (a backend that took the
      // connection and never answered is a timeout, 504; one that could not be reached, 502).
      const last = this.lastFailure;
      const outcome = tried.size === 0 ? Outcomes.noBackend : last === 'timeout' ? Outcomes.backendTimeout : last === 'tls' ? Outcomes.backendTls : Outcomes.backendUnreachable;
      this.resolve({ kind: 'failed', outcome });
      return;
    }
    tried.add(backend);
    // Counted from the pick, also while it waits its turn, so that least-connections sees it.
    backend.active++;
    this.backend = backend;
    const pacer = backend.pacer;
    if (pacer !== null) {
      const now = performance.now();
      const wait = pacer.schedule(now);
      if (wait < 0) {
        backend.active--;
        this.resolve({ kind: 'failed', outcome: Outcomes.paced, retryAfter: pacer.retryAfter(now, Math.random) });
        return;
      }
      if (wait > 0) {
        pool.decisions[Decision.Paced]++;
        setTimeout(connectInTurn, wait, this);
        return;
      }
    }
    this.connect();
  }

  connect(): void {
    const backend = this.backend!;
    backend.connecting++;
    try {
      // uWS does not report the client's port: 0, as the header's format allows for an unknown one.
      const { ends } = this;
      const proxyHeader = backend.sendProxyProtocol && ends !== undefined ? encodeProxyV2(ends.client, 0, ends.listenHost, ends.listenPort) : undefined;
      startBackendHandshake(this, backend, this.pathAndQuery, this.headers, this.offeredProtocols, this.pool.connectTimeout, proxyHeader);
    } catch (err) {
      backend.active--;
      backend.connecting--;
      this.reject(err);
    }
  }

  handshakeDone(result: Upgraded | Refused): void {
    const backend = this.backend!;
    backend.connecting--;
    if (result.kind === 'upgraded') {
      backendSucceeded(backend);
      this.resolve({ kind: 'upgraded', backend, upgraded: result });
      return;
    }
    backend.active--;
    // A 5xx answer to the upgrade is the backend failing; a 4xx is its verdict on the client.
    if (result.head.status >= 500) backendFailed(backend);
    this.resolve({ kind: 'refused', backend, refused: result });
  }

  handshakeFailed(err: BackendConnectError): void {
    const backend = this.backend!;
    backend.active--;
    backend.connecting--;
    if (isLocalResourceError(err.errno)) {
      reportLocalFailure(err.errno, 'backend_connect', { pool: this.pool.name, backend: backend.name });
      this.resolve({ kind: 'failed', outcome: Outcomes.localResources });
      return;
    }
    backendFailed(backend);
    this.lastFailure = err.reason;
    // A TLS failure's cause (expired, unknown CA, name mismatch, our certificate refused) is in err.
    this.log.warn({ pool: this.pool.name, backend: backend.name, reason: err.reason, err: err.message }, err.reason === 'tls' ? 'backend TLS failed' : 'backend connect failed');
    this.next();
  }
}
