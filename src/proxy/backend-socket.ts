// The backend side of a tunnel: a TCP connection (tcp-connection.ts) speaking RFC 6455 as a client.
//
// Why not the `ws` package here: measured on this machine (bench/README.md, "Anchor figures"), a `ws` client on the
// backend hop costs ~1.7x NGINX's CPU per relayed message and ~50 KB per tunnel; a minimal client
// costs far less. What makes the difference lives in tcp-connection.ts: reads land in one buffer
// shared by every backend connection of the worker, and writes are batched per event-loop turn.
import { isLocalResourceError } from '../errors';
import type { Backend } from '../upstream/backend';
import type { ForwardedHeaders } from './forwarded-headers';
import { buildUpgradeRequest, checkSwitchingProtocols, newKey, parseResponseHead, type ResponseHead } from './handshake';
import { isInterim, MAX_INTERIM_RESPONSES } from './http-head';
import { deadlineList, type Deadline, type DeadlineList, type Expiring } from './deadlines';
import { isTlsFailure, newBackendConnection, type BackendConnection, type ConnectionTarget } from './backend-connection';

/** The backend accepted the upgrade. Frames that arrive before the tunnel takes the socket over are kept in `leftover`. */
export interface Upgraded {
  kind: 'upgraded';
  socket: BackendConnection;
  protocol: string;
  /** Frames that arrived with the 101 (copied). */
  leftover: Buffer | null;
}

/** The backend answered the upgrade with a final HTTP status instead of 101. */
export interface Refused {
  kind: 'refused';
  head: ResponseHead;
  /** Empty for a 204 or 304, whatever the backend sent after their head (RFC 9112 6.3: they have none). */
  body: Buffer;
}

/**
 * `refused`: no TCP connection (refused, reset, or not made within connectTimeout); `timeout`: the
 * backend accepted the connection but did not answer the upgrade within connectTimeout (504, as a
 * plain request whose response head does not come); `local`: this machine ran out of descriptors,
 * ports or buffers (errors.ts): not the backend's fault.
 */
export type ConnectFailure = 'refused' | 'timeout' | 'handshake' | 'tls' | 'local';

/** The backend could not be used; `reason` says how, for the retry decision and the log. */
export class BackendConnectError extends Error {
  /** Stable, whatever the cause (the cause is `reason`, and `errno` for a failed system call). */
  readonly code = 'ERR_BACKEND_CONNECT';
  constructor(
    readonly reason: ConnectFailure,
    message: string,
    /** The errno name, when a system call failed. */
    readonly errno?: string,
  ) {
    super(message);
  }
}

const MAX_REFUSAL_BODY = 64 * 1024;

/** Who hears how a backend handshake ended (exactly one call). */
export interface HandshakeOwner {
  handshakeDone(result: Upgraded | Refused): void;
  handshakeFailed(err: BackendConnectError): void;
}

/**
 * Connects to `backend` and asks it to upgrade `pathAndQuery`. `timeoutMs` bounds the TCP connect
 * and the wait for the answer together (NGINX's proxy_connect_timeout plus the header read).
 * `proxyHeader`: the PROXY protocol header the connection opens with, when the pool sends one.
 */
export function startBackendHandshake(
  owner: HandshakeOwner,
  backend: Backend,
  pathAndQuery: string,
  headers: readonly (readonly [string, string])[],
  offeredProtocols: string,
  timeoutMs: number,
  proxyHeader?: Uint8Array,
): void {
  new Handshake(owner, backend, pathAndQuery, headers, offeredProtocols, deadlineList(timeoutMs), proxyHeader).start();
}

/** startBackendHandshake() as a promise. */
export function openBackendSocket(
  backend: Backend,
  pathAndQuery: string,
  headers: readonly (readonly [string, string])[],
  offeredProtocols: string,
  timeoutMs: number,
  proxyHeader?: Uint8Array,
): Promise<Upgraded | Refused> {
  return new Promise((resolve, reject) => {
    startBackendHandshake({ handshakeDone: resolve, handshakeFailed: reject }, backend, pathAndQuery, headers, offeredProtocols, timeoutMs, proxyHeader);
  });
}

const EMPTY = Buffer.alloc(0);

/** 204 and 304 have no body, whatever their Content-Length says (RFC 9110 8.6). */
function hasBody(head: ResponseHead): boolean {
  return head.status !== 204 && head.status !== 304;
}

/**
 * One backend handshake, as an object rather than closures (one per upgrade: the churn profile
 * counted each), and its timeout on a shared deadline list rather than a timer of its own.
 */
class Handshake implements ConnectionTarget, Expiring {
  private readonly key = newKey();
  private readonly socket: BackendConnection;
  private deadline: Deadline | null = null;
  private head: ResponseHead | null = null;
  /** The answer so far, when it took more than one read. */
  private received: Buffer = EMPTY;
  /** Interim (1xx) responses skipped so far. */
  private interim = 0;
  private done = false;
  private connected = false;
  private upgraded: Upgraded | null = null;

  constructor(
    private readonly owner: HandshakeOwner,
    private readonly backend: Backend,
    private readonly pathAndQuery: string,
    private readonly headers: readonly (readonly [string, string])[],
    private readonly offeredProtocols: string,
    private readonly deadlines: DeadlineList,
    proxyHeader: Uint8Array | undefined,
  ) {
    this.socket = newBackendConnection(this, backend, proxyHeader);
  }

  start(): void {
    this.deadline = this.deadlines.add(this);
    this.socket.connect(this.backend.host, this.backend.port);
  }

  onDeadline(): void {
    this.deadline = null;
    const { name } = this.backend;
    const ms = this.deadlines.delayMs;
    this.finish(this.connected ? new BackendConnectError('timeout', `${name}: no answer within ${ms} ms`) : new BackendConnectError('refused', `${name}: no connection within ${ms} ms`, 'ETIMEDOUT'));
  }

  private finish(err: BackendConnectError | null, value?: Upgraded | Refused): void {
    if (this.done) return;
    this.done = true;
    if (this.deadline !== null) this.deadlines.cancel(this.deadline);
    this.deadline = null;
    if (err) {
      this.socket.destroy();
      this.owner.handshakeFailed(err);
    } else this.owner.handshakeDone(value!);
  }

  onBackendConnected(): void {
    this.connected = true;
    const head = buildUpgradeRequest(this.pathAndQuery, this.key, this.headers);
    // Values that are bytes rather than text (recoverBytes in forwarded-headers.ts) leave as those bytes.
    if ((this.headers as ForwardedHeaders).bytes === true) this.socket.write(Buffer.from(head, 'latin1'));
    else this.socket.writeNow(head);
  }

  onBackendClosed(error: string | undefined): void {
    const { backend, head } = this;
    if (error !== undefined) {
      const reason = isLocalResourceError(error) ? 'local' : isTlsFailure(error) ? 'tls' : this.connected ? 'handshake' : 'refused';
      return this.finish(new BackendConnectError(reason, `${backend.name}: ${error}`, error));
    }
    if (head && head.status !== 101) return this.finish(null, { kind: 'refused', head, body: hasBody(head) ? this.received.subarray(head.size) : EMPTY });
    this.finish(new BackendConnectError('handshake', `${backend.name}: closed the connection before answering the upgrade`));
  }

  onBackendData(buf: Buffer, length: number): void {
    const upgraded = this.upgraded;
    if (upgraded) {
      // Frames after the 101, before the tunnel has taken the socket over: keep them for it.
      const copy = Buffer.from(buf.subarray(0, length));
      upgraded.leftover = upgraded.leftover ? Buffer.concat([upgraded.leftover, copy]) : copy;
      return;
    }
    if (this.done) return;
    const { backend } = this;
    // The answer usually comes in one read: it is parsed where it lies (the shared read buffer, valid
    // during this call), and only what must outlive the call is copied.
    const inPlace = this.received.length === 0;
    let received = inPlace ? buf.subarray(0, length) : (this.received = Buffer.concat([this.received, buf.subarray(0, length)]));
    let head: ResponseHead | null;
    try {
      head = this.head ??= parseResponseHead(received);
      // Interim answers (100 Continue, 103 Early Hints) before the real one: skipped, a few of them.
      while (head !== null && isInterim(head.status)) {
        if (++this.interim > MAX_INTERIM_RESPONSES) throw new Error(`more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`);
        received = received.subarray(head.size);
        if (!inPlace) this.received = received;
        head = this.head = parseResponseHead(received);
      }
    } catch (err) {
      return this.finish(new BackendConnectError('handshake', `${backend.name}: ${(err as Error).message}`));
    }
    if (head === null) {
      if (inPlace) this.received = Buffer.from(received);
      return;
    }
    if (head.status === 101) {
      let protocol: string;
      try {
        protocol = checkSwitchingProtocols(head, this.key, this.offeredProtocols);
      } catch (err) {
        return this.finish(new BackendConnectError('handshake', `${backend.name}: ${(err as Error).message}`));
      }
      // The socket keeps reading (pausing and resuming it cost two epoll_ctl calls per upgrade).
      const leftover = received.length > head.size ? Buffer.from(received.subarray(head.size)) : null;
      this.upgraded = { kind: 'upgraded', socket: this.socket, protocol, leftover };
      return this.finish(null, this.upgraded);
    }
    // A refusal: take a small body if the backend says how long it is, then hand it on.
    if (inPlace) received = this.received = Buffer.from(received);
    const bodyLength = hasBody(head) ? Number(head.headers.get('content-length') ?? '0') : 0;
    const have = received.length - head.size;
    if (!(bodyLength > 0 && bodyLength <= MAX_REFUSAL_BODY) || have >= bodyLength) {
      this.socket.destroy();
      this.finish(null, { kind: 'refused', head, body: received.subarray(head.size, head.size + Math.min(have, bodyLength)) });
    }
  }
}
