// Plain HTTP on the same port (the chat page, its assets, REST calls): proxied to the route's pool over
// kept-alive backend connections (http-upstream.ts), bodies streamed both ways with backpressure.
// Failed connects are retried on another backend only for idempotent methods without a body; a
// reused connection the backend had just closed is retried once on a fresh one, same rule.
// Failures feed outlier detection as NGINX's max_fails counts them (errors and timeouts, not 5xx).
import { accessEntry, type AccessEntry, type AccessLog } from '../access-log';
import { HTTP_REASONS, OutcomeLabels, Outcomes, type LocalResourceError, type Outcome } from '../errors';
import { backendFailed, backendSucceeded } from '../health/passive-signals';
import { reportLocalFailure } from '../local-failures';
import type { Logger } from '../log';
import { respondOutcome } from '../respond';
import { countHttpAnswer, counters } from '../stats/counters';
import type { Backend } from '../upstream/backend';
import type { Pool } from '../upstream/pool';
import type { HttpResponse } from '../uws';
import { header, type ClientRequest } from '../client-request';
import { clientIp, forwardedHeaders, type TrustedProxies } from './forwarded-headers';
import { KeepAlivePool, sweepPools, type UpstreamConnection, type UpstreamExchange, type UpstreamFailure } from './http-upstream';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

const enum Body {
  None,
  Length,
  Chunked,
}

export class HttpProxy {
  private readonly pools = new Map<Backend, KeepAlivePool>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Requests whose response is not finished yet (drain waits for them). */
  requestsInFlight = 0;
  /** Called when the last request in flight finished. */
  onIdle: (() => void) | null = null;
  /** Retired by a reload: every response tells the client to close (it reconnects to a new worker). */
  closeConnections = false;

  constructor(
    readonly trusted: TrustedProxies,
    private readonly log: Logger,
    /** null when the access log is off. */
    readonly accessLog: AccessLog | null = null,
  ) {}

  /** The backend's keep-alive connections in this worker. */
  upstream(backend: Backend): KeepAlivePool {
    let pool = this.pools.get(backend);
    if (pool === undefined) {
      pool = new KeepAlivePool(backend);
      this.pools.set(backend, pool);
      this.sweeper ??= setInterval(sweepPools, 1000, this.pools).unref();
    }
    return pool;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const pool of this.pools.values()) pool.close();
  }

  handle(res: HttpResponse, request: ClientRequest, pool: Pool): void {
    const length = header(request, 'content-length');
    const chunked = header(request, 'transfer-encoding') !== '';
    // uWS has de-chunked a chunked body: it is re-framed for the backend.
    const body = chunked ? Body.Chunked : length !== '' && length !== '0' ? Body.Length : Body.None;
    let head = `${request.method} ${request.url} HTTP/1.1\r\n`;
    for (const [name, value] of forwardedHeaders(request, this.trusted)) {
      // The body is framed here for the backend; `expect` is answered by uWS on the client side.
      if (name !== 'content-length' && name !== 'expect') head += `${name}: ${value}\r\n`;
    }
    if (chunked) head += 'transfer-encoding: chunked\r\n';
    else if (length !== '') head += `content-length: ${length}\r\n`;
    head += '\r\n';
    // Values that are bytes rather than text (recoverBytes) leave as those bytes.
    const requestHead = request.bytes === true ? Buffer.from(head, 'latin1') : head;
    const ip = clientIp(request, this.trusted);
    const access = this.accessLog && accessEntry(request, ip);
    const exchange = new Exchange(this, res, request, pool, pool.keyOf(request, ip), requestHead, body, access);
    this.requestsInFlight++;
    res.onAborted(() => exchange.clientGone());
    if (body !== Body.None) res.onData((chunk, isLast) => exchange.fromClient(chunk, isLast));
    exchange.next();
  }

  /** @internal An exchange finished. */
  requestDone(access: AccessEntry | null, status: number, outcome: string, pool: Pool, backend: Backend | undefined): void {
    if (access !== null) this.accessLog!.request(access, 'http', status, outcome, pool.name, backend?.name);
    if (--this.requestsInFlight === 0) this.onIdle?.();
  }

  logFailure(pool: Pool, backend: Backend, failure: UpstreamFailure, error: string): void {
    this.log.warn({ pool: pool.name, backend: backend.name, failure, err: error }, failure === 'tls' ? 'backend TLS failed' : 'http backend request failed');
  }

  logClientStalled(pool: Pool, backend: Backend): void {
    this.log.info({ pool: pool.name, backend: backend.name }, 'http client stopped sending its request body: 408');
  }
}

// res.cork() takes a callback: these module-level slots let one shared function do the corked
// write, so a response costs no closure (cork runs it synchronously, nothing can interleave).
let corkExchange: Exchange | null = null;
let corkBody: Uint8Array | null = null;
function writeCorked(): void {
  corkExchange!.writeCorked(corkBody);
}
function corkWrite(exchange: Exchange, res: HttpResponse, body: Uint8Array | null): void {
  corkExchange = exchange;
  corkBody = body;
  res.cork(writeCorked);
  corkExchange = corkBody = null;
}

// A view of buf[start..end) made without Buffer#subarray (three getters through generic ICs per
// call); the ArrayBuffer and offset are looked up once per buffer, and the read buffer is one buffer.
let viewed: Buffer | null = null;
let viewedBuffer: ArrayBufferLike = new ArrayBuffer(0);
let viewedOffset = 0;
function bytesOf(buf: Buffer, start: number, end: number): Uint8Array {
  if (buf !== viewed) {
    viewed = buf;
    viewedBuffer = buf.buffer;
    viewedOffset = buf.byteOffset;
  }
  return new Uint8Array(viewedBuffer, viewedOffset + start, end - start);
}

/** One request's life. Once `finished`, uWS's response may not be touched again. */
class Exchange implements UpstreamExchange {
  private finished = false;
  private upstream: UpstreamConnection | null = null;
  private backend: Backend | undefined;
  private readonly tried = new Set<Backend>();
  private readonly canRetry: boolean;
  private staleRetried = false;
  /** How the last attempt failed (decides the answer when no backend is left). */
  private lastFailure: UpstreamFailure | undefined;
  /**
   * The backend's status and header lines ("200 OK\r\nContent-Type: ..."), until written to the
   * client with the first body bytes.
   */
  private head: string | Buffer | null = null;
  /** The backend's status, counted when its head goes to the client; or the balancer's own. */
  private status = 0;
  /** For the access log: "ok", client_gone, backend_cut_off, or the errors.ts label of the balancer's answer. */
  private outcome: string = OutcomeLabels.ok;
  /** The status line went to the client. */
  private responded = false;
  /** The response's Content-Length, or -1 (then the body is streamed chunked by uWS). */
  private total = -1;
  /** Body bytes uWS did not take (Content-Length responses), from write offset `backlogAt`. */
  private backlog: Buffer | null = null;
  private backlogAt = 0;
  private clientPaused = false;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly res: HttpResponse,
    readonly request: ClientRequest,
    private readonly pool: Pool,
    /** The request's hash key (Pool.keyOf), the same for every attempt. */
    private readonly key: string | undefined,
    private readonly requestHead: string | Buffer,
    private readonly body: Body,
    private readonly access: AccessEntry | null,
  ) {
    this.canRetry = IDEMPOTENT.has(request.method) && body === Body.None;
  }

  /** Tries the next backend, or answers 502/503 when none is left. */
  next(): void {
    const attempts = this.tried.size;
    const backend = attempts <= (this.canRetry ? this.pool.retries : 0) ? this.pool.pick(this.key, this.tried) : undefined;
    if (backend === undefined) return this.fail(attempts === 0 ? Outcomes.noBackend : this.lastFailure === 'tls' ? Outcomes.backendTls : Outcomes.backendUnreachable);
    this.tried.add(backend);
    this.backend = backend;
    this.send(this.proxy.upstream(backend).acquire(this.pool.connectTimeout));
  }

  private send(upstream: UpstreamConnection): void {
    this.upstream = upstream;
    upstream.send(this, this.requestHead, this.request.method === 'HEAD', this.body !== Body.None, this.pool.responseTimeout);
  }

  /** The balancer answers the request itself (counted here, once: retries come back through next()). */
  private fail(outcome: Outcome, close = false): void {
    this.status = outcome.status;
    this.outcome = outcome.label;
    this.finish();
    countHttpAnswer(outcome);
    respondOutcome(this.res, outcome, [], close || this.proxy.closeConnections);
  }

  /** The response is done with, one way or another: uWS's response may not be touched again. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.proxy.requestDone(this.access, this.status, this.outcome, this.pool, this.backend);
  }

  clientGone(): void {
    // Left before any answer; once the status line went out the request already counts as ok.
    if (!this.finished) {
      if (!this.responded) {
        counters.httpRequests[OutcomeLabels.clientGone]++;
        this.status = 0;
      }
      this.outcome = OutcomeLabels.clientGone;
    }
    this.finish();
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.abort();
  }

  /** A piece of the client's request body (uWS reuses `chunk` after this call). */
  fromClient(chunk: ArrayBuffer, isLast: boolean): void {
    const upstream = this.upstream;
    if (this.finished || upstream === null) return;
    let data: Buffer;
    if (this.body === Body.Chunked) {
      const n = chunk.byteLength;
      const size = n === 0 ? '' : `${n.toString(16)}\r\n`;
      data = Buffer.allocUnsafe(size.length + n + (n === 0 ? 0 : 2) + (isLast ? LAST_CHUNK.length : 0));
      let at = data.write(size, 'latin1');
      if (n !== 0) {
        data.set(new Uint8Array(chunk), at);
        at = CRLF.copy(data, at + n);
      }
      if (isLast) LAST_CHUNK.copy(data, at);
    } else data = Buffer.from(new Uint8Array(chunk)); // a copy
    if (!upstream.writeBody(data, isLast) && !isLast) {
      this.clientPaused = true;
      this.res.pause();
    }
  }

  onUpstreamDrain(): void {
    if (!this.clientPaused || this.finished) return;
    this.clientPaused = false;
    this.res.resume();
  }

  onResponseHead(status: number, reason: string, fields: string): void {
    // Any status, 5xx included (NGINX's max_fails does not count them either); a no-op unless the
    // backend is in a failure streak.
    backendSucceeded(this.backend!);
    if (this.finished) return;
    this.status = status;
    const statusLine = reason !== '' ? `${status} ${reason}` : `${status} ${HTTP_REASONS[status] ?? ''}`.trimEnd();
    const upstream = this.upstream!;
    const head = fields === '' ? statusLine : `${statusLine}\r\n${fields}`;
    // uWS writes a string as UTF-8: a head with bytes 0x80-0xFF (latin1 text here) goes as those bytes.
    this.head = upstream.obsText ? Buffer.from(head, 'latin1') : head;
    this.total = upstream.declaredLength;
    if (upstream.bodyless) {
      // HEAD, 204, 304: headers only; a HEAD answer keeps the Content-Length the backend declared.
      this.finish();
      this.cork(null);
    }
    // Otherwise the head waits for the first body bytes (or the end), so that a small response
    // leaves in one write.
  }

  onResponseBody(buf: Buffer, start: number, end: number): void {
    if (this.finished) return;
    if (this.backlog !== null) {
      // uWS is still behind on earlier bytes (reads are paused; this is the rest of the same read).
      this.backlog = Buffer.concat([this.backlog, buf.subarray(start, end)]);
      return;
    }
    this.cork(bytesOf(buf, start, end));
  }

  onResponseEnd(): void {
    this.upstream = null;
    if (this.finished) return;
    // A Content-Length body ends when uWS has sent `total` bytes (tryEnd); the rest end here.
    if (this.total > 0) return;
    this.finish();
    this.cork(null);
  }

  private cork(body: Uint8Array | null): void {
    corkWrite(this, this.res, body);
  }

  /** Inside res.cork(): the head if not yet written, then `body` (or, for null, the end). */
  writeCorked(body: Uint8Array | null): void {
    const res = this.res;
    const head = this.head;
    const first = head !== null;
    if (head !== null) {
      this.head = null;
      this.responded = true;
      // Counted when relayed, not when received: a backend failing before its first body bytes
      // leaves the client a 502 instead (onUpstreamFailed).
      counters.httpRequests.ok++;
      counters.httpResponses[(this.status / 100) | 0]++;
      // uWS writes "HTTP/1.1 " + this + CRLF, then its own Date and Content-Length (or chunked
      // framing): the backend's header lines ride along in one call instead of one writeHeader each
      // (the parser checked every line: no CR, LF or NUL but the CRLFs between them).
      res.writeStatus(head);
      if (this.proxy.closeConnections) res.writeHeader('connection', 'close');
    }
    if (body === null) {
      if (this.upstream?.bodyless) {
        if (this.total >= 0) res.endWithoutBody(this.total);
        else res.endWithoutBody();
      } else res.end();
      return;
    }
    if (first && body.length === this.total) {
      // The whole body in one read (the common small response): end() takes it all (uWS buffers
      // what the socket does not, at most one read) and builds no [ok, done] array as tryEnd does.
      this.finish();
      res.end(body);
      return;
    }
    if (this.total >= 0) {
      // Known length: tryEnd keeps the Content-Length and tells how much uWS took.
      const at = res.getWriteOffset();
      const [ok, done] = res.tryEnd(body, this.total);
      if (done) this.finish();
      else if (!ok) this.holdBack(Buffer.from(body), at);
      return;
    }
    if (!res.write(body)) this.pauseUpstream(); // uWS keeps what it could not send
  }

  /** uWS took only part of a Content-Length body: keep a copy, stop reading until it is writable. */
  private holdBack(copy: Buffer, at: number): void {
    this.backlog = copy;
    this.backlogAt = at;
    this.upstream?.pause();
    this.res.onWritable((offset) => {
      const backlog = this.backlog;
      if (backlog === null || this.finished) return true;
      const [ok, done] = this.res.tryEnd(backlog.subarray(offset - this.backlogAt), this.total);
      if (done) this.finish();
      if (ok || done) {
        this.backlog = null;
        this.upstream?.resume();
      }
      return ok;
    });
  }

  private pauseUpstream(): void {
    this.upstream?.pause();
    this.res.onWritable(() => {
      this.upstream?.resume();
      return true;
    });
  }

  onUpstreamFailed(failure: UpstreamFailure, error: string): void {
    this.upstream = null;
    if (this.finished) return;
    const backend = this.backend!;
    if (failure === 'client-stalled') {
      // The client's fault, not the backend's: 408 and close, as NGINX after client_body_timeout.
      this.proxy.logClientStalled(this.pool, backend);
      return this.fail(Outcomes.clientTimeout, true);
    }
    if (failure === 'local') {
      // Out of descriptors, ports or buffers here: another backend would fail the same way.
      reportLocalFailure(error as LocalResourceError, 'http_connect', { pool: this.pool.name, backend: backend.name });
      return this.fail(Outcomes.localResources);
    }
    // A reused connection closed unanswered is keep-alive racing (the backend timed it out), not
    // the backend failing; a client that left aborts without reaching here.
    if (failure !== 'stale') backendFailed(backend);
    if (this.responded) {
      // The backend died mid-body: the status is already sent, so cutting the connection is the signal.
      this.outcome = OutcomeLabels.backendCutOff;
      this.finish();
      this.res.cork(() => this.res.close());
      return;
    }
    this.proxy.logFailure(this.pool, backend, failure, error);
    this.lastFailure = failure;
    // Nothing reached the backend's application after a failed connect or TLS handshake: another may be tried.
    if ((failure === 'connect' || failure === 'tls') && this.canRetry) return this.next();
    if (failure === 'stale' && this.canRetry && !this.staleRetried) {
      this.staleRetried = true;
      return this.send(this.proxy.upstream(backend).fresh(this.pool.connectTimeout));
    }
    this.fail(failure === 'timeout' ? Outcomes.backendTimeout : failure === 'tls' ? Outcomes.backendTls : Outcomes.backendUnreachable);
  }
}
