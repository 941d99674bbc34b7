// Plain HTTP on the same port (the chat page, its assets, REST calls): proxied to the route's pool
// with undici, a keep-alive pool per backend, bodies streamed both ways with backpressure.
// Failed connects are retried on another backend only for idempotent methods without a body.
import { Readable } from 'node:stream';
import { Pool as UndiciPool, errors as undiciErrors } from 'undici';
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

/** One request's life: finished once the response has ended or the client has gone; uWS's response may not be touched after. */
interface Exchange {
  finished: boolean;
}

export class HttpProxy {
  private readonly clients = new Map<Backend, UndiciPool>();

  constructor(
    private readonly trusted: TrustedProxies,
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
    const abort = new AbortController();
    const exchange: Exchange = { finished: false };
    res.onAborted(() => {
      exchange.finished = true;
      abort.abort();
    });
    const length = header(request, 'content-length');
    const hasBody = (length !== '' && length !== '0') || header(request, 'transfer-encoding') !== '';
    const body = hasBody ? requestBody(res) : undefined;
    const headers = forwardedHeaders(request, this.trusted).filter(([k]) => k !== 'content-length' || hasBody);
    if (header(request, 'transfer-encoding') !== '') {
      // uWS has de-chunked the body; undici re-frames it.
      const i = headers.findIndex(([k]) => k === 'content-length');
      if (i !== -1) headers.splice(i, 1);
    }
    const canRetry = IDEMPOTENT.has(request.method) && !hasBody;
    void this.forward(res, request, pool, headers, body, canRetry, abort.signal, exchange);
  }

  private async forward(
    res: HttpResponse,
    request: ClientRequest,
    pool: Pool,
    headers: [string, string][],
    body: Readable | undefined,
    canRetry: boolean,
    signal: AbortSignal,
    exchange: Exchange,
  ): Promise<void> {
    const tried = new Set<Backend>();
    const ip = clientIp(request, this.trusted); // the same key as its WebSocket, for ip-hash
    for (let attempt = 0; attempt <= (canRetry ? pool.retries : 0); attempt++) {
      const backend = pool.pick(ip, tried);
      if (backend === undefined) break;
      tried.add(backend);
      try {
        const response = await this.client(backend, pool.connectTimeout).request({
          path: request.url,
          method: request.method,
          headers: headers.flat(),
          body,
          signal,
        });
        if (exchange.finished) {
          response.body.destroy();
          return;
        }
        return streamResponse(res, request, response, exchange);
      } catch (err) {
        if (exchange.finished) return;
        this.log.warn({ pool: pool.name, backend: backend.name, err: (err as Error).message }, 'http backend request failed');
        if (!isConnectError(err)) break;
      }
    }
    if (exchange.finished) return;
    exchange.finished = true;
    const outcome = tried.size === 0 ? Outcomes.noBackend : Outcomes.backendUnreachable;
    respondOutcome(res, outcome);
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

interface UndiciResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

function streamResponse(res: HttpResponse, request: ClientRequest, response: UndiciResponse, exchange: Exchange): Promise<void> {
  const { statusCode, headers, body } = response;
  const lengthHeader = headers['content-length'];
  const total = typeof lengthHeader === 'string' ? Number(lengthHeader) : NaN;
  const noBody = request.method === 'HEAD' || statusCode === 204 || statusCode === 304 || (statusCode >= 100 && statusCode < 200);

  res.cork(() => {
    res.writeStatus(`${statusCode} ${HTTP_REASONS[statusCode] ?? ''}`.trimEnd());
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || SKIP_RESPONSE.has(name)) continue;
      if (Array.isArray(value)) for (const v of value) res.writeHeader(name, v);
      else res.writeHeader(name, value);
    }
    if (noBody) {
      exchange.finished = true;
      if (Number.isFinite(total)) res.endWithoutBody(total);
      else res.endWithoutBody();
    }
  });
  if (noBody) {
    body.resume();
    return Promise.resolve();
  }

  return new Promise<void>((resolve) => {
    const done = (): void => {
      exchange.finished = true;
      resolve();
    };
    body.on('error', () => {
      // Backend died mid-body: the status is already sent, so cut the connection to signal it.
      if (!exchange.finished) res.cork(() => res.close());
      done();
    });
    if (Number.isFinite(total)) {
      // Known length: tryEnd keeps Content-Length and lets uWS tell us how much it took.
      body.on('data', (chunk: Buffer) => {
        if (exchange.finished) return void body.destroy();
        const startOffset = res.getWriteOffset();
        let ok = false;
        let sent = false;
        res.cork(() => ([ok, sent] = res.tryEnd(chunk, total)));
        if (sent) return done();
        if (!ok) {
          body.pause();
          res.onWritable((offset: number) => {
            const [ok2, sent2] = res.tryEnd(chunk.subarray(offset - startOffset), total);
            if (sent2) done();
            else if (ok2) body.resume();
            return ok2;
          });
        }
      });
      body.on('end', () => {
        if (!exchange.finished) {
          res.cork(() => res.end());
          done();
        }
      });
    } else {
      body.on('data', (chunk: Buffer) => {
        if (exchange.finished) return void body.destroy();
        let ok = true;
        res.cork(() => (ok = res.write(chunk)));
        if (!ok) {
          body.pause();
          res.onWritable(() => {
            body.resume();
            return true;
          });
        }
      });
      body.on('end', () => {
        if (!exchange.finished) res.cork(() => res.end());
        done();
      });
    }
  });
}
