// Plain HTTP on the same port (the chat page, its assets, REST calls): proxied to the route's pool
// with undici, a keep-alive pool per backend, bodies streamed both ways with backpressure.
// Failed connects are retried on another backend only for idempotent methods without a body.
import { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool as UndiciPool, errors as undiciErrors, type Dispatcher } from 'undici';
import { HTTP_REASONS, Outcomes } from '../errors';
import type { Logger } from '../log';
import { respondOutcome } from '../respond';
import type { Backend } from '../upstream/backend';
import type { Pool } from '../upstream/pool';
import type { HttpResponse } from '../uws';
import { clientIp, forwardedHeaders, header, type ClientRequest, type TrustedProxies } from './forwarded-headers';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
// Response headers uWS writes itself, or that are hop-by-hop.
const SKIP_RESPONSE = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-connection', 'te', 'trailer', 'date']);

function isConnectError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return err instanceof undiciErrors.ConnectTimeoutError || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'UND_ERR_SOCKET';
}

export class HttpProxy {
  private readonly clients = new Map<Backend, UndiciPool>();

  constructor(
    readonly trusted: TrustedProxies,
    private readonly log: Logger,
  ) {}

  private client(backend: Backend, connectTimeout: number): UndiciPool {
    let c = this.clients.get(backend);
    if (!c) {
      c = new UndiciPool(`http://${backend.name}`, { connections: 256, connectTimeout, keepAliveTimeout: 30_000, pipelining: 1 });
      this.clients.set(backend, c);
    }
    return c;
  }

  close(): Promise<void> {
    return Promise.all([...this.clients.values()].map((c) => c.close())).then(() => undefined);
  }

  handle(res: HttpResponse, request: ClientRequest, pool: Pool): void {
    const length = header(request, 'content-length');
    const chunked = header(request, 'transfer-encoding') !== '';
    const hasBody = (length !== '' && length !== '0') || chunked;
    // uWS has de-chunked a chunked body; undici re-frames it.
    const headers = forwardedHeaders(request, this.trusted).filter(([k]) => k !== 'content-length' || (hasBody && !chunked));
    const exchange = new Exchange(this, res, request, pool, headers.flat(), hasBody ? requestBody(res) : undefined);
    res.onAborted(() => exchange.clientGone());
    exchange.next();
  }

  /** Sends the exchange's request to `backend`; the exchange hears the outcome. */
  dispatch(exchange: Exchange, backend: Backend, connectTimeout: number): void {
    this.client(backend, connectTimeout).dispatch(
      { origin: `http://${backend.name}`, path: exchange.request.url, method: exchange.request.method, headers: exchange.headers, body: exchange.body },
      exchange,
    );
  }

  logFailure(pool: Pool, backend: Backend, err: Error): void {
    this.log.warn({ pool: pool.name, backend: backend.name, err: err.message }, 'http backend request failed');
  }
}

/**
 * One request's life, as undici's dispatch handler: no promise, stream or AbortController per
 * request (undici's request() API costs about twice as much CPU here; bench/README.md). Once
 * `finished`, uWS's response may not be touched again.
 */
class Exchange implements Dispatcher.DispatchHandler {
  private finished = false;
  private controller: Dispatcher.DispatchController | null = null;
  /** The status line and headers have gone to the client. */
  private responded = false;
  private status = 0;
  /** The backend's response headers, until written to the client. */
  private head: IncomingHttpHeaders | null = null;
  private total = NaN;
  private readonly tried = new Set<Backend>();
  private readonly canRetry: boolean;
  private backend: Backend | undefined;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly res: HttpResponse,
    readonly request: ClientRequest,
    private readonly pool: Pool,
    readonly headers: string[],
    readonly body: Readable | undefined,
  ) {
    this.canRetry = IDEMPOTENT.has(request.method) && body === undefined;
  }

  /** Tries the next backend, or answers 502/503 when none is left. */
  next(): void {
    const attempts = this.tried.size;
    const backend = attempts <= (this.canRetry ? this.pool.retries : 0) ? this.pool.pick(clientIp(this.request, this.proxy.trusted), this.tried) : undefined;
    if (backend === undefined) {
      this.finished = true;
      respondOutcome(this.res, attempts === 0 ? Outcomes.noBackend : Outcomes.backendUnreachable);
      return;
    }
    this.tried.add(backend);
    this.backend = backend;
    this.proxy.dispatch(this, backend, this.pool.connectTimeout);
  }

  clientGone(): void {
    this.finished = true;
    this.controller?.abort(new Error('client went away'));
    this.body?.destroy();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.finished) controller.abort(new Error('client went away'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (this.finished) return controller.abort(new Error('client went away'));
    if (statusCode < 200) return; // 1xx interim answers are the backend's business
    const lengthHeader = headers['content-length'];
    this.total = typeof lengthHeader === 'string' ? Number(lengthHeader) : NaN;
    this.status = statusCode;
    this.head = headers;
    if (this.request.method === 'HEAD' || statusCode === 204 || statusCode === 304) {
      this.finished = true;
      this.res.cork(() => {
        this.writeHead();
        if (Number.isFinite(this.total)) this.res.endWithoutBody(this.total);
        else this.res.endWithoutBody();
      });
    }
    // Otherwise the head waits for the first body bytes (or the end), so that a small response
    // leaves in one write: with the head sent here, every response cost a second syscall.
  }

  /** Status line and headers, once, inside a cork. */
  private writeHead(): void {
    const headers = this.head;
    if (headers === null) return;
    this.head = null;
    this.responded = true;
    const res = this.res;
    res.writeStatus(`${this.status} ${HTTP_REASONS[this.status] ?? ''}`.trimEnd());
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined || SKIP_RESPONSE.has(name)) continue;
      if (Array.isArray(value)) for (const v of value) res.writeHeader(name, v);
      else res.writeHeader(name, value);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.finished) return;
    const res = this.res;
    if (Number.isFinite(this.total)) {
      // Known length: tryEnd keeps Content-Length and tells how much uWS took.
      const startOffset = res.getWriteOffset();
      let ok = false;
      let sent = false;
      res.cork(() => {
        this.writeHead();
        [ok, sent] = res.tryEnd(chunk, this.total);
      });
      if (sent) this.finished = true;
      else if (!ok) {
        controller.pause();
        res.onWritable((offset: number) => {
          const [ok2, sent2] = res.tryEnd(chunk.subarray(offset - startOffset), this.total);
          if (sent2) this.finished = true;
          if (ok2) controller.resume();
          return ok2;
        });
      }
      return;
    }
    let ok = true;
    res.cork(() => {
      this.writeHead();
      ok = res.write(chunk);
    });
    if (!ok) {
      controller.pause();
      res.onWritable(() => {
        controller.resume();
        return true;
      });
    }
  }

  onResponseEnd(): void {
    if (this.finished) return;
    this.finished = true;
    this.res.cork(() => {
      this.writeHead();
      this.res.end();
    });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.finished) return;
    if (this.responded) {
      // Backend died mid-body: the status is already sent, so cutting the connection is the signal.
      this.finished = true;
      this.res.cork(() => this.res.close());
      return;
    }
    this.proxy.logFailure(this.pool, this.backend!, err);
    if (isConnectError(err)) return this.next();
    this.finished = true;
    respondOutcome(this.res, Outcomes.backendUnreachable);
  }
}

/** The client's request body as a Readable; uWS reading pauses while undici is not consuming. */
function requestBody(res: HttpResponse): Readable {
  const stream = new Readable({ read: () => res.resume() });
  res.onData((chunk: ArrayBuffer, isLast: boolean) => {
    // uWS reuses `chunk` after this call: copy.
    if (!stream.push(Buffer.from(chunk.slice(0)))) res.pause();
    if (isLast) stream.push(null);
  });
  return stream;
}
