// The backend hop's connection as the handshake, the tunnel and plain-HTTP keep-alive drive it,
// plain (tcp-connection.ts) or TLS (tls-connection.ts), chosen once per connection from the
// backend's URL. A type only: a worker whose backends are all plain only ever runs TcpConnection,
// so its call sites stay monomorphic and the plain hot path costs what it did.
import type { Backend } from '../upstream/backend';
import { TcpConnection, type ConnectionTarget } from './tcp-connection';
import { TlsConnection } from './tls-connection';

export type { ConnectionTarget };
export { isTlsFailure } from './tls-connection';

export interface BackendConnection {
  /** Whoever consumes it now: the handshake, then the tunnel (which replaces it). */
  target: ConnectionTarget;
  /** No more reads or writes: destroy() was called or an error struck. */
  readonly destroyed: boolean;
  /** The connection is closed and the target told. */
  readonly closed: boolean;
  /** Bytes written before this turn that the kernel has not taken yet. */
  readonly writeQueueSize: number;
  /** Every byte written and not yet taken by the kernel, this turn's included. */
  readonly unsentBytes: number;
  /** Connects; failures arrive as onBackendClosed(error). */
  connect(host: string, port: number): void;
  /** Queues `data` (which must not change afterwards) for one write at the end of this turn. */
  write(data: Uint8Array): void;
  /** Writes `text` (UTF-8) on a connected connection with nothing queued. */
  writeNow(text: string): void;
  /** Ends after what is queued, `data` last, and waits for the peer to close. */
  end(data?: Uint8Array): void;
  pause(): void;
  resume(): void;
  /** Closes at once; the target hears onBackendClosed() later. */
  destroy(): void;
}

/**
 * A new, unconnected connection to `backend`: TLS for a wss:// or https:// backend. `preamble`
 * (a PROXY protocol header) goes first on the TCP connection, before TLS and anything written.
 */
export function newBackendConnection(target: ConnectionTarget, backend: Backend, preamble?: Uint8Array): BackendConnection {
  if (backend.tls !== null) return new TlsConnection(target, backend.tls, preamble);
  const conn = new TcpConnection(target);
  // Queued before the connect, it leaves first, in the same write as what follows it.
  if (preamble !== undefined) conn.write(preamble);
  return conn;
}
