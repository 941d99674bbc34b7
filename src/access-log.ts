// The access log (config `accessLog: true`; off by default, as HAProxy's): one JSON line per tunnel
// when it ends, per upgrade that got no tunnel, and per plain HTTP request once its answer is done,
// on stdout next to the other logs and whatever `logLevel` says. Never per message.
//
// Written by hand rather than through pino: a pino line cost ~37k instructions, as much again as
// relaying the request it describes (callgrind, bench/README.md). Here a line is one template string,
// with JSON.stringify only for what the client sent, copied at once into a batch buffer; batches
// leave as NGINX's `access_log … buffer= flush=1s` does: one write per ~4 KiB, whole lines only and
// within PIPE_BUF, so the workers' lines never interleave on a shared pipe; at least once a second,
// and at exit. The writes go through pino's destination (sonic-boom), which retries a full pipe.
import pino from 'pino';
import type { ClientRequest } from './client-request';

/** The client side of one upgrade or request, as the access log names it. */
export interface AccessEntry {
  /** The client's address (the X-Forwarded-For one when the peer is a trusted proxy). */
  client: string;
  method: string;
  /** Path and query as the client sent them. */
  url: string;
  /** performance.now() when the request arrived. */
  startedAt: number;
}

/** The entry of a request whose client is `client` (clientIp's answer), arrived at `startedAt`. */
export function accessEntry(request: ClientRequest, client: string, startedAt = performance.now()): AccessEntry {
  return { client, method: request.method, url: request.url, startedAt };
}

/** A tunnel's traffic, counted by the tunnel itself. */
export interface TunnelTraffic {
  messagesToBackend: number;
  bytesToBackend: number;
  messagesToClient: number;
  bytesToClient: number;
}

/** Printable ASCII but `"` and `\`: such a string is its own JSON text once quoted, and 1 byte a character. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Linux's PIPE_BUF: a write up to this size to a pipe is never split by another writer's. */
const BATCH_BYTES = 4096;
const FLUSH_EVERY_MS = 1000;

export class AccessLog {
  private batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
  private batchBytes = 0;
  /** Bytes beyond one a character in the strings quoted for the line being made. */
  private extraBytes = 0;
  private readonly out: ReturnType<typeof pino.destination>;
  private readonly head = `{"level":30,"time":"`;
  private readonly pid = `","pid":${process.pid},"log":"access",`;
  /** The ISO time up to the second ("2026-11-30T01:35:14."), made once a second. */
  private second = 0;
  private secondPrefix = '';

  constructor(fd = 1) {
    this.out = pino.destination({ dest: fd, sync: true, contentMode: 'buffer' });
    setInterval(() => this.flush(), FLUSH_EVERY_MS).unref();
    process.on('exit', () => this.flush());
  }

  /** A tunnel ended: who closed it first and with which code (1006: connection lost), and its traffic. */
  tunnel(entry: AccessEntry & { pool: string }, backend: string, closedBy: string, code: number, traffic: TunnelTraffic): void {
    this.line(
      `"client":"${entry.client}","url":${this.quote(entry.url)},"status":101,"pool":"${entry.pool}","backend":"${backend}",` +
        `"durationMs":${elapsed(entry)},"closedBy":"${closedBy}","code":${code},` +
        `"messagesToBackend":${traffic.messagesToBackend},"bytesToBackend":${traffic.bytesToBackend},` +
        `"messagesToClient":${traffic.messagesToClient},"bytesToClient":${traffic.bytesToClient},"msg":"tunnel"}\n`,
    );
  }

  /**
   * An upgrade that got no tunnel, or a plain HTTP request once its answer is done. `status` is what
   * the client got (0: nothing, it left first); `outcome` is "ok" for a relayed response, else
   * client_gone, backend_cut_off (the backend died mid-body) or the errors.ts label of the answer.
   */
  request(entry: AccessEntry, kind: 'upgrade' | 'http', status: number, outcome: string, pool?: string, backend?: string): void {
    this.line(
      `"client":"${entry.client}","method":${this.quote(entry.method)},"url":${this.quote(entry.url)},"status":${status},"outcome":"${outcome}",` +
        (pool !== undefined ? `"pool":"${pool}",` : '') +
        (backend !== undefined ? `"backend":"${backend}",` : '') +
        `"durationMs":${elapsed(entry)},"msg":"${kind}"}\n`,
    );
  }

  private line(rest: string): void {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      this.secondPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    const ms = now - second * 1000;
    const line = `${this.head}${this.secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z${this.pid}${rest}`;
    const bytes = line.length + this.extraBytes;
    const encoding = this.extraBytes === 0 ? 'latin1' : 'utf8'; // latin1: one byte a character, no encoding
    this.extraBytes = 0;
    if (this.batchBytes + bytes > BATCH_BYTES) this.flush();
    if (bytes > BATCH_BYTES) this.emit(Buffer.from(line, 'utf8'));
    else this.batchBytes += this.batch.write(line, this.batchBytes, encoding);
  }

  /** A string the client sent, as a JSON string; the common plain one without JSON.stringify. */
  private quote(text: string): string {
    if (PLAIN.test(text)) return `"${text}"`;
    const json = JSON.stringify(text);
    this.extraBytes += Buffer.byteLength(json) - json.length;
    return json;
  }

  /** Writes what is batched, synchronously as the other logs (pino's default for stdout). */
  flush(): void {
    if (this.batchBytes === 0) return;
    // sonic-boom may keep the buffer to retry a full pipe: the next batch goes to a new one.
    const batch = this.batch.subarray(0, this.batchBytes);
    this.batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.batchBytes = 0;
    this.emit(batch);
  }

  private emit(bytes: Buffer): void {
    // In contentMode 'buffer' sonic-boom writes Buffers; its types only know strings.
    this.out.write(bytes as unknown as string);
  }
}

/** Milliseconds since the request arrived, to a tenth, as JSON number text (integers print cheaply, doubles do not). */
function elapsed(entry: AccessEntry): string {
  const tenths = Math.round((performance.now() - entry.startedAt) * 10);
  return `${Math.floor(tenths / 10)}.${tenths % 10}`;
}
