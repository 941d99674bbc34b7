// A backend connection over TLS (wss:// and https:// backends), with the same interface as
// tcp-connection.ts so that the handshake, the tunnel and plain-HTTP keep-alive do not know which
// one they drive.
//
// On node:tls rather than on the TLS handle directly: the encryption dominates the cost of a TLS hop,
// and what tcp-connection.ts saves is per-call stream machinery. The two savings that matter are
// kept: reads land in one buffer shared by the worker's TLS connections (`onread`, no Buffer per
// read, no 'data' event), and writes are corked for the turn and written together when it ends
// (one TLS record and one syscall for what a client sent in one turn). Event handlers are shared
// functions reading `this.owner`, not closures per connection.
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, isIP, type Socket } from 'node:net';
import { connect, createSecureContext, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import type { BackendTls } from '../upstream/backend';
import type { ConnectionTarget } from './tcp-connection';

/** What a TLS failure looks like in a connection's close error: `TLS <code>: <message>`. */
const TLS_FAILURE = 'TLS ';

/** Is this close error a failed TLS handshake or a TLS alert (a certificate refused, either way)? */
export function isTlsFailure(error: string | undefined): boolean {
  return error !== undefined && error.startsWith(TLS_FAILURE);
}

/** The secure context (CA, client certificate) of each backend's settings, built at its first connect. */
const contexts = new WeakMap<BackendTls, SecureContext>();
/** The last TLS session each backend gave, offered again on the next connect (NGINX's proxy_ssl_session_reuse). */
const sessions = new WeakMap<BackendTls, Buffer>();

function contextOf(tls: BackendTls): SecureContext {
  let context = contexts.get(tls);
  if (context === undefined) {
    // The primary checked these files at start and reload (config/tls-files.ts).
    context = createSecureContext({
      ca: tls.ca === undefined ? undefined : readFileSync(tls.ca),
      cert: tls.cert === undefined ? undefined : readFileSync(tls.cert),
      key: tls.key === undefined ? undefined : readFileSync(tls.key),
    });
    contexts.set(tls, context);
  }
  return context;
}

/** node:tls's options for a backend's TLS settings (shared with the health checks). */
export function tlsConnectOptions(tls: BackendTls, host: string): ConnectionOptions {
  return {
    // No SNI for an IP address (RFC 6066 3); the certificate is then checked against the IP.
    servername: tls.serverName ?? (isIP(host) === 0 ? host : undefined),
    rejectUnauthorized: tls.verify,
    secureContext: contextOf(tls),
  };
}

// One read buffer for the worker's TLS connections (as tcp-connection.ts's for plain ones).
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

interface OwnedSocket extends TLSSocket {
  owner: TlsConnection;
}

function onRead(this: OwnedSocket, nread: number, buf: Buffer): void {
  const conn = this.owner;
  if (!conn.destroyed) conn.target.onBackendData(buf, nread);
}
function onTcpConnect(this: OwnedSocket): void {
  this.owner.tcpConnected = true;
}
/** With a preamble, the TCP socket under TLS is ours: its connect and its errors come from it. */
function onRawError(this: Socket & { owner: TlsConnection }, err: NodeJS.ErrnoException): void {
  this.owner.onError(err);
  this.owner.destroy();
}
/** With a preamble node:tls takes no `onread` (it wraps a socket already made): reads arrive as 'data'. */
function onData(this: OwnedSocket, chunk: Buffer): void {
  const conn = this.owner;
  if (!conn.destroyed) conn.target.onBackendData(chunk, chunk.length);
}
function onSecureConnect(this: OwnedSocket): void {
  this.owner.onSecureConnect();
}
function onError(this: OwnedSocket, err: NodeJS.ErrnoException): void {
  this.owner.onError(err);
}
function onClose(this: OwnedSocket): void {
  this.owner.onClose();
}
function onDrain(this: OwnedSocket): void {
  const conn = this.owner;
  if (!conn.destroyed) conn.target.onBackendDrain?.();
}
function onSession(this: OwnedSocket, session: Buffer): void {
  sessions.set(this.owner.tls, session);
}

// Writes are corked for the turn and uncorked in the check phase, as tcp-connection.ts batches them.
const corked: TlsConnection[] = [];
let flushScheduled = false;
function flushCorked(): void {
  flushScheduled = false;
  for (let i = 0; i < corked.length; i++) corked[i].uncork();
  corked.length = 0;
}

export class TlsConnection {
  destroyed = false;
  closed = false;
  /** @internal The TCP connect is done (a failure after it is the TLS handshake's). */
  tcpConnected = false;
  private connected = false;
  private corked = false;
  /** Bytes written this turn (still corked). */
  private pendingBytes = 0;
  private error: string | undefined;
  private socket: OwnedSocket | null = null;

  constructor(
    public target: ConnectionTarget,
    readonly tls: BackendTls,
    /** Bytes written on the TCP connection before TLS starts (a PROXY protocol header). */
    private readonly preamble?: Uint8Array,
  ) {}

  connect(host: string, port: number): void {
    const { tls } = this;
    let socket: OwnedSocket;
    try {
      let raw: (Socket & { owner?: TlsConnection }) | undefined;
      if (this.preamble !== undefined) {
        raw = tcpConnect({ host, port, noDelay: true });
        raw.owner = this;
        raw.on('error', onRawError);
        raw.on('connect', onTcpConnect);
        raw.write(this.preamble);
      }
      socket = connect({
        ...tlsConnectOptions(tls, host),
        ...(raw === undefined ? { host, port } : { socket: raw }),
        session: sessions.get(tls),
        // tls.connect hands its options to the net.Socket beneath, which honours onread (typed for net only).
        onread: { buffer: READ_BUFFER, callback: onRead },
        noDelay: true,
      } as unknown as ConnectionOptions) as OwnedSocket;
    } catch (err) {
      // A CA or client certificate file that became unreadable since the primary checked it.
      this.error = `${TLS_FAILURE}settings: ${(err as Error).message}`;
      this.destroyed = true;
      setImmediate(() => this.onClose());
      return;
    }
    socket.owner = this;
    if (this.preamble === undefined) socket.on('connect', onTcpConnect);
    else socket.on('data', onData);
    socket.on('secureConnect', onSecureConnect);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('drain', onDrain);
    socket.on('session', onSession);
    this.socket = socket;
  }

  /** @internal */
  onSecureConnect(): void {
    if (this.destroyed) return;
    this.connected = true;
    this.target.onBackendConnected?.();
  }

  /** @internal */
  onError(err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'ERR_TLS';
    // Before the TCP connect an errno (ECONNREFUSED); after it and before the handshake's end, or an
    // alert at any time (TLS 1.3 refuses a client certificate after the client's handshake ended), TLS.
    const tlsFailure = (this.tcpConnected && !this.connected) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
    this.error ??= tlsFailure ? `${TLS_FAILURE}${code}: ${err.message}` : code;
  }

  /** @internal */
  onClose(): void {
    this.destroyed = true;
    if (this.closed) return;
    this.closed = true;
    this.target.onBackendClosed(this.error);
  }

  /** Bytes node:tls holds that were written before this turn. */
  get writeQueueSize(): number {
    const socket = this.socket;
    return socket === null ? 0 : socket.writableLength - this.pendingBytes;
  }

  /** Every byte written and not yet handed to the kernel. */
  get unsentBytes(): number {
    return this.socket === null ? 0 : this.socket.writableLength;
  }

  write(data: Uint8Array): void {
    const socket = this.socket;
    if (this.destroyed || socket === null || socket.writableEnded) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      corked.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushCorked);
      }
    }
    this.pendingBytes += data.byteLength;
    socket.write(data);
  }

  writeNow(text: string): void {
    this.write(Buffer.from(text));
  }

  /** @internal */
  uncork(): void {
    this.corked = false;
    this.pendingBytes = 0;
    if (!this.destroyed) this.socket?.uncork();
  }

  /** Ends after what is queued, `data` last (close_notify, then FIN); the peer's close ends it. */
  end(data?: Uint8Array): void {
    const socket = this.socket;
    if (this.destroyed || socket === null || socket.writableEnded) return;
    if (data) this.write(data);
    if (!this.connected) return this.destroy();
    socket.end();
  }

  pause(): void {
    if (!this.destroyed) this.socket?.pause();
  }

  resume(): void {
    if (!this.destroyed) this.socket?.resume();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pendingBytes = 0;
    this.socket?.destroy();
  }
}
