// Connections to a backend for plain HTTP, kept alive between requests like NGINX's upstream
// `keepalive`: one request at a time per connection (no pipelining), idle connections reused
// last-in first-out, closed after the backend's advertised keep-alive timeout (less a second, so we
// never reuse one the backend is closing) or 4 s when it advertises none, as undici does.
import { isLocalResourceError } from '../errors';
import type { Backend } from '../upstream/backend';
import { deadlineList, type Deadline, type DeadlineList, type Expiring } from './deadlines';
import { Framing, ResponseParser, type ResponseHandler } from './http-response-parser';
import { isTlsFailure, newBackendConnection, type BackendConnection, type ConnectionTarget } from './backend-connection';

/**
 * Why a request failed before its response ended. `connect`: never connected (refused, timed out,
 * unresolvable), nothing was sent; `stale`: a reused connection closed before any response byte,
 * the backend had likely timed it out; `timeout`: no response head within the pool's responseTimeout
 * of the request's last byte, or the backend stopped reading the request body that long;
 * `client-stalled`: the client stopped sending its request body that long (the backend was reading);
 * `tls`: a wss:// or https:// backend's TLS handshake failed or it sent a TLS alert (a certificate
 * refused, either way; the error says why); `broken`: anything else (reset mid-response, a malformed response); `local`: the connect failed for
 * want of local descriptors, ports or buffers (errors.ts), the balancer's failure, not the backend's.
 */
export type UpstreamFailure = 'connect' | 'tls' | 'stale' | 'timeout' | 'client-stalled' | 'broken' | 'local';

/** The request in flight on a connection: hears its response, or its failure, once. */
export interface UpstreamExchange extends ResponseHandler {
  onUpstreamFailed(failure: UpstreamFailure, error: string): void;
  /** Everything written to the backend has left (request-body backpressure). */
  onUpstreamDrain(): void;
}

const DEFAULT_KEEPALIVE_MS = 4_000;
const MAX_KEEPALIVE_MS = 600_000;
/** Idle connections kept per backend and worker (NGINX's bench config keeps 128). */
const MAX_IDLE = 256;
/** Request-body bytes libuv may hold for a backend before the client is paused. */
const WRITE_HIGH_WATER = 256 * 1024;

/** A coarse clock, advanced by the sweep: no clock read per request. */
let now = Date.now();

export class UpstreamConnection implements ConnectionTarget, ResponseHandler, Expiring {
  private readonly conn: BackendConnection;
  private readonly parser: ResponseParser;
  /** The request in flight, until its response ended or failed. */
  private exchange: UpstreamExchange | null = null;
  private connected = false;
  private timedOut = false;
  /** The connect timeout, on the list the WebSocket hop's connects share (one timer per delay). */
  private readonly connectDeadlines: DeadlineList;
  private connectDeadline: Deadline | null;
  /** This connection carried an earlier request. */
  reused = false;
  /** Some byte of the current response arrived (a reused connection closed before that is stale). */
  private answered = false;
  /** The current response's final head arrived: responseTimeout no longer applies. */
  private headReceived = false;
  /** The whole request, body included, was written. */
  private requestSent = true;
  private ended = false;
  private paused = false;
  /** The backend holds back the request body (the client is paused until it drains). */
  private bodyBlocked = false;
  /** When the request's last byte so far was handed over: responseTimeout counts from here. */
  private sentAt = 0;
  private responseTimeout = 0;
  idleSince = 0;
  private keepAliveMs = DEFAULT_KEEPALIVE_MS;

  constructor(
    private readonly pool: KeepAlivePool,
    connectTimeout: number,
  ) {
    this.parser = new ResponseParser(this);
    this.conn = newBackendConnection(this, pool.backend);
    this.connectDeadlines = deadlineList(connectTimeout);
    this.connectDeadline = this.connectDeadlines.add(this);
    pool.backend.connecting++; // until stopConnectDeadline()
    this.conn.connect(pool.backend.host, pool.backend.port);
  }

  /**
   * Sends a request head (and, unless `bodyFollows`, that is the whole request); the response goes to
   * `exchange`. `noBody`: a HEAD request, whose response has headers only.
   */
  send(exchange: UpstreamExchange, head: string | Buffer, noBody: boolean, bodyFollows: boolean, responseTimeout: number): void {
    this.exchange = exchange;
    this.responseTimeout = responseTimeout;
    this.answered = false;
    this.headReceived = false;
    this.ended = false;
    this.requestSent = !bodyFollows;
    this.bodyBlocked = false;
    this.sentAt = now;
    this.parser.expect(noBody);
    // A Buffer: a head with bytes that are not UTF-8 text (see recoverBytes in forwarded-headers.ts).
    if (typeof head === 'string') this.conn.writeNow(head);
    else this.conn.write(head);
  }

  /**
   * A piece of the request body. Returns false when the client should pause until onUpstreamDrain:
   * libuv holds too much, or the connect is still under way (writes wait in memory until then).
   */
  writeBody(data: Buffer, last: boolean): boolean {
    this.conn.write(data);
    this.sentAt = now; // a slow upload is not a slow backend
    if (last) this.requestSent = true;
    this.bodyBlocked = !(this.connected && this.conn.writeQueueSize < WRITE_HIGH_WATER);
    return !this.bodyBlocked;
  }

  /** The current response's Content-Length (for a HEAD answer too), or -1 when it has none or is chunked. */
  get declaredLength(): number {
    return this.parser.contentLength;
  }

  /** The current response's head holds bytes 0x80-0xFF: it goes to uWS as bytes (asSent in http-head.ts). */
  get obsText(): boolean {
    return this.parser.obsText;
  }

  /** The current response has no body (HEAD, 204, 304). */
  get bodyless(): boolean {
    return this.parser.framing === Framing.None;
  }

  /** Stops reading the response (the client is slow). */
  pause(): void {
    this.paused = true;
    this.conn.pause();
  }

  resume(): void {
    this.paused = false;
    this.conn.resume();
  }

  /** The exchange gives up (its client went away): the connection cannot be reused mid-exchange. */
  abort(): void {
    this.exchange = null;
    this.parser.abort();
    this.conn.destroy();
  }

  /** @internal Closes an idle connection. */
  destroy(): void {
    this.conn.destroy();
  }

  /**
   * @internal Called by the sweep (once a second, so up to a second late): true if this busy
   * connection waited too long for a response head. Part of a head, or interim (1xx) responses, do
   * not count as one: a backend that sends half a head and stalls is as late as a silent one.
   */
  headersOverdue(at: number): boolean {
    return this.exchange !== null && !this.headReceived && at - this.sentAt >= this.responseTimeout + 1000; // the clock is coarse: late, never early
  }

  /** @internal */
  expireWaiting(): void {
    const exchange = this.exchange;
    this.exchange = null;
    this.conn.destroy();
    // Mid-body with the backend reading: it is the client that went quiet (NGINX: client_body_timeout).
    if (!this.requestSent && !this.bodyBlocked) exchange?.onUpstreamFailed('client-stalled', 'the client stopped sending its request body');
    else exchange?.onUpstreamFailed('timeout', 'no response head in time');
  }

  /** @internal Called by the sweep for idle connections. */
  idleExpired(at: number): boolean {
    return at - this.idleSince > this.keepAliveMs;
  }

  /** @internal The connect took longer than the pool's connectTimeout. */
  onDeadline(): void {
    this.connectDeadline = null;
    this.pool.backend.connecting--;
    this.timedOut = true;
    this.conn.destroy();
  }

  /** The connect is over, one way or the other (once). */
  private stopConnectDeadline(): void {
    if (this.connectDeadline === null) return;
    this.connectDeadlines.cancel(this.connectDeadline);
    this.connectDeadline = null;
    this.pool.backend.connecting--;
  }

  onBackendConnected(): void {
    this.connected = true;
    this.bodyBlocked = false;
    this.stopConnectDeadline();
    this.exchange?.onUpstreamDrain();
  }

  onBackendData(buf: Buffer, length: number): void {
    this.answered = true;
    const ok = this.parser.execute(buf, 0, length);
    if (!ok) {
      const exchange = this.exchange;
      this.exchange = null;
      this.conn.destroy();
      exchange?.onUpstreamFailed('broken', this.parser.error ?? 'malformed response');
      return;
    }
    if (this.ended) {
      this.ended = false;
      // Reusable only if the response said so and nothing of the request is still unsent.
      if (this.parser.keepAlive && this.requestSent && this.exchange === null) {
        if (this.paused) this.resume(); // the next request must hear its answer
        this.pool.release(this);
      } else this.conn.destroy();
    }
  }

  onBackendDrain(): void {
    this.bodyBlocked = false;
    this.sentAt = now;
    this.exchange?.onUpstreamDrain();
  }

  onBackendClosed(error: string | undefined): void {
    this.stopConnectDeadline();
    this.pool.forget(this);
    const exchange = this.exchange;
    if (exchange === null) return;
    // A body delimited by the close ends cleanly at EOF (onResponseEnd clears `exchange`).
    if (error === undefined && this.parser.finish()) return;
    this.exchange = null;
    this.parser.abort();
    if (isTlsFailure(error)) exchange.onUpstreamFailed('tls', error!);
    else if (!this.connected) exchange.onUpstreamFailed(isLocalResourceError(error) ? 'local' : 'connect', this.timedOut ? 'ETIMEDOUT' : (error ?? 'ECONNREFUSED'));
    else if (this.reused && !this.answered) exchange.onUpstreamFailed('stale', error ?? 'closed before answering');
    else exchange.onUpstreamFailed('broken', error ?? 'closed mid-response');
  }

  onResponseHead(status: number, reason: string, fields: string): void {
    this.headReceived = true;
    const advertised = this.parser.keepAliveTimeout;
    if (advertised >= 0) this.keepAliveMs = Math.min(MAX_KEEPALIVE_MS, Math.max(0, advertised * 1000 - 1000));
    this.exchange?.onResponseHead(status, reason, fields);
  }

  onResponseBody(buf: Buffer, start: number, end: number): void {
    this.exchange?.onResponseBody(buf, start, end);
  }

  onResponseEnd(): void {
    const exchange = this.exchange;
    this.exchange = null;
    this.ended = true;
    exchange?.onResponseEnd();
  }
}

/** One backend's connections in one worker. */
export class KeepAlivePool {
  private readonly idle: UpstreamConnection[] = [];
  private readonly all = new Set<UpstreamConnection>();

  constructor(readonly backend: Backend) {}

  /** An idle connection, or a new one (connecting; writes wait for the connect). */
  acquire(connectTimeout: number): UpstreamConnection {
    const reused = this.idle.pop();
    if (reused !== undefined) {
      reused.reused = true;
      return reused;
    }
    const conn = new UpstreamConnection(this, connectTimeout);
    this.all.add(conn);
    return conn;
  }

  /** A fresh connection, never an idle one (the retry after a stale one). */
  fresh(connectTimeout: number): UpstreamConnection {
    const conn = new UpstreamConnection(this, connectTimeout);
    this.all.add(conn);
    return conn;
  }

  /** @internal The connection finished a response and may carry another. */
  release(conn: UpstreamConnection): void {
    if (this.idle.length >= MAX_IDLE) return conn.destroy();
    conn.idleSince = now;
    this.idle.push(conn);
  }

  /** @internal The connection closed. */
  forget(conn: UpstreamConnection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes idle connections past their keep-alive, fails requests whose backend never answered. */
  sweep(at: number): void {
    for (const conn of this.idle) if (conn.idleExpired(at)) conn.destroy();
    for (const conn of this.all) if (conn.headersOverdue(at)) conn.expireWaiting();
  }

  close(): void {
    for (const conn of this.all) conn.destroy();
  }
}

/** Advances the coarse clock and sweeps every pool; the HTTP proxy runs it once a second. */
export function sweepPools(pools: ReadonlyMap<unknown, KeepAlivePool>): void {
  now = Date.now();
  for (const pool of pools.values()) pool.sweep(now);
}
