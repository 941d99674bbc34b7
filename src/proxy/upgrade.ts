// Opening the backend side of a new tunnel: pick a backend, connect, ask it to upgrade; on a
// connect failure try another (up to the pool's `retries`), as NGINX's proxy_next_upstream does
// for "error timeout". A backend that answers with an HTTP status has spoken: no retry.
import type { Logger } from '../log';
import { Outcomes, type Outcome } from '../errors';
import { backendFailed, backendSucceeded } from '../health/passive-signals';
import type { Backend } from '../upstream/backend';
import type { Pool } from '../upstream/pool';
import { BackendConnectError, openBackendSocket, type Refused, type Upgraded } from './backend-socket';

export type BackendOpenResult =
  | { kind: 'upgraded'; backend: Backend; upgraded: Upgraded }
  | { kind: 'refused'; backend: Backend; refused: Refused }
  | { kind: 'failed'; outcome: Outcome };

/**
 * On 'upgraded' the backend's `active` count stays raised for the tunnel; whoever ends the tunnel
 * lowers it. Counting from the pick (not from the 101) keeps a burst of concurrent upgrades from
 * all landing on the same least-loaded backend.
 */
export async function openBackend(
  pool: Pool,
  clientIp: string,
  pathAndQuery: string,
  headers: readonly (readonly [string, string])[],
  offeredProtocols: string,
  log: Logger,
): Promise<BackendOpenResult> {
  const tried = new Set<Backend>();
  for (let attempt = 0; attempt <= pool.retries; attempt++) {
    const backend = pool.pick(clientIp, tried);
    if (backend === undefined) break;
    tried.add(backend);
    backend.active++;
    try {
      const result = await openBackendSocket(backend, pathAndQuery, headers, offeredProtocols, pool.connectTimeout);
      if (result.kind === 'upgraded') {
        backendSucceeded(backend);
        return { kind: 'upgraded', backend, upgraded: result };
      }
      backend.active--;
      // A 5xx answer to the upgrade is the backend failing; a 4xx is its verdict on the client.
      if (result.head.status >= 500) backendFailed(backend);
      return { kind: 'refused', backend, refused: result };
    } catch (err) {
      backend.active--;
      if (!(err instanceof BackendConnectError)) throw err;
      backendFailed(backend);
      log.warn({ pool: pool.name, backend: backend.name, reason: err.reason, err: err.message }, 'backend connect failed');
    }
  }
  return { kind: 'failed', outcome: tried.size === 0 ? Outcomes.noBackend : Outcomes.backendUnreachable };
}
