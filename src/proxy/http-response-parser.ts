// Incremental parser of a backend's HTTP/1.1 responses (RFC 9112), for the plain-HTTP hop.
//
// Why hand-written: the hop used undici, and a profile of the HTTP scenario showed its per-request
// machinery (request object and header validation, queue, timers, llhttp's callbacks into
// JavaScript, net.Socket's streams) costing more than the syscalls themselves: proxy CPU per request
// was 1.8x NGINX's (bench/README.md, "HTTP"). This parser only frames: status line and headers as
// strings, then the body as byte ranges of the read buffer, never copied; header lines the client
// should see pass through as the text they came in, never split into names and values. It is strict
// where leniency lets a backend smuggle a second response (whitespace before a colon, obs-fold, bare
// CR or LF, conflicting Content-Length, bad chunk sizes): those end the connection with an error.
// Pure (no I/O), like the frame reader; tests feed it byte vectors split at every point.

import { checkFieldSection, FieldSection, HEAD_END, isInterim, MAX_INTERIM_RESPONSES, nameIs, statusOf } from './http-head';

export interface ResponseHandler {
  /**
   * A final (>= 200) response's head. `fields`: its header lines as received, CRLF-separated (no
   * trailing CRLF; '' when none), without the hop-by-hop and framing ones and Date.
   */
  onResponseHead(status: number, reason: string, fields: string): void;
  /** `buf[start..end)` of the body, de-chunked, valid only during the call. */
  onResponseBody(buf: Buffer, start: number, end: number): void;
  onResponseEnd(): void;
}

/** How the body of the response being parsed is delimited (RFC 9112 6.3). */
export const enum Framing {
  None,
  Length,
  Chunked,
  UntilClose,
}

const enum State {
  /** No request outstanding: any byte is an error. */
  Idle,
  /** The response was abandoned (abort()): the rest of this read is ignored. */
  Discarded,
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  UntilClose,
}

/** Bounds on what a backend may send before its body (NGINX's proxy_buffer_size is 4-8 KiB; undici allows 16 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_LINE = 4096;
const CR = 13;
const LF = 10;
/** CR or LF other than in a CRLF pair, or NUL. */
const BARE_CR_LF_NUL = /\r(?!\n)|(?<!\r)\n|\0/;
/** Keep-Alive's `timeout=N` (seconds): how long the backend keeps an idle connection (RFC 2068 19.7.1.1). */
const KEEP_ALIVE_TIMEOUT = /timeout=(\d+)/i;
const DIGITS = /^\d{1,15}$/;
const HEX = /^[0-9a-fA-F]{1,13}$/;

/** text[from..to) as a plain run of 1-15 decimal digits with optional spaces or tabs around it, or -1. */
function decimal(text: string, from: number, to: number): number {
  while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++;
  while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to--;
  if (to === from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Whether text[from..to) holds a character 0x80-0xFF (a short reason phrase: a loop beats a RegExp). */
function hasHighByte(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (text.charCodeAt(i) > 0x7f) return true;
  return false;
}

/** Which header fields this hop looks at or drops; everything else passes through untouched. */
const enum Field {
  Kept,
  /** Hop-by-hop (RFC 9110 7.6.1), or written by uWS itself (Date). */
  Dropped,
  ContentLength,
  TransferEncoding,
  Connection,
  KeepAlive,
}

/**
 * The field named by text[start..colon), told by its length first and compared in place: most
 * names are never copied or lower-cased (this runs for every header line of every response).
 */
function fieldKind(text: string, start: number, colon: number): Field {
  switch (colon - start) {
    case 2:
      return nameIs(text, start, 'te') ? Field.Dropped : Field.Kept;
    case 4:
      return nameIs(text, start, 'date') ? Field.Dropped : Field.Kept;
    case 7:
      return nameIs(text, start, 'upgrade') || nameIs(text, start, 'trailer') ? Field.Dropped : Field.Kept;
    case 10:
      return nameIs(text, start, 'connection') ? Field.Connection : nameIs(text, start, 'keep-alive') ? Field.KeepAlive : Field.Kept;
    case 14:
      return nameIs(text, start, 'content-length') ? Field.ContentLength : Field.Kept;
    case 16:
      return nameIs(text, start, 'proxy-connection') ? Field.Dropped : Field.Kept;
    case 17:
      return nameIs(text, start, 'transfer-encoding') ? Field.TransferEncoding : Field.Kept;
    default:
      return Field.Kept;
  }
}

/** Rare: the backend's Connection header named more hop-by-hop fields; drop those too. */
function dropListed(fields: string, listed: string[]): string {
  return fields
    .split('\r\n')
    .filter((line) => !listed.includes(line.slice(0, line.indexOf(':')).toLowerCase()))
    .join('\r\n');
}

export class ResponseParser {
  /** The first protocol error, once one happened; the parser then refuses everything. */
  error: string | null = null;
  /** May the connection carry another request after this response (known once the head is parsed)? */
  keepAlive = false;
  framing: Framing = Framing.None;
  /** The declared Content-Length, or -1. */
  contentLength = -1;
  /** Seconds from the response's `Keep-Alive: timeout=N`, or -1. */
  keepAliveTimeout = -1;
  /** The final head's status line or some header value holds bytes 0x80-0xFF (see asSent in http-head.ts). */
  obsText = false;
  private state = State.Idle;
  /** Interim (1xx) responses of the current exchange so far. */
  private interim = 0;
  private noBody = false;
  private remaining = 0;
  /** A head or a chunk-size/trailer line that began in an earlier read. */
  private partial: Buffer | null = null;
  private partialLine = '';

  constructor(private readonly handler: ResponseHandler) {}

  /** A request went out: parse its response. `noBody`: it was a HEAD request. */
  expect(noBody: boolean): void {
    this.state = State.Head;
    this.noBody = noBody;
    this.keepAlive = false;
    this.framing = Framing.None;
    this.contentLength = -1;
    this.interim = 0;
  }

  /** True once the response asked for by expect() has ended. */
  get complete(): boolean {
    return this.state === State.Idle;
  }

  /**
   * Parses `buf[start..end)`. Returns false on a protocol error (see `error`) or when bytes come that
   * no request asked for; the connection must then be closed.
   */
  execute(buf: Buffer, start: number, end: number): boolean {
    let pos = start;
    while (pos < end) {
      switch (this.state) {
        case State.Idle:
          return this.fail('bytes from the backend with no request outstanding');
        case State.Discarded:
          return true;
        case State.Head:
          pos = this.readHead(buf, pos, end);
          break;
        case State.Length:
          pos = this.passBody(buf, pos, end);
          if (this.remaining === 0) this.done();
          break;
        case State.UntilClose:
          this.handler.onResponseBody(buf, pos, end);
          pos = end;
          break;
        case State.ChunkSize:
        case State.Trailers:
          pos = this.readLine(buf, pos, end);
          break;
        case State.ChunkData:
          pos = this.passBody(buf, pos, end);
          if (this.remaining === 0) {
            this.state = State.ChunkDataEnd;
            this.remaining = 2;
          }
          break;
        case State.ChunkDataEnd:
          // The CRLF after a chunk's data.
          if (buf[pos] !== (this.remaining === 2 ? CR : LF)) return this.fail('chunk data not followed by CRLF');
          pos++;
          if (--this.remaining === 0) this.state = State.ChunkSize;
          break;
      }
      if (pos < 0) return false;
    }
    return true;
  }

  /** Stops parsing the current response (the connection is being closed). */
  abort(): void {
    this.state = State.Discarded;
    this.partial = null;
  }

  /** The backend closed its side. Returns true when that ended the response cleanly (a body read until close). */
  finish(): boolean {
    if (this.state !== State.UntilClose) return false;
    this.done();
    return true;
  }

  /** Hands on up to `remaining` body bytes from `pos`; returns the position after them. */
  private passBody(buf: Buffer, pos: number, end: number): number {
    const n = Math.min(this.remaining, end - pos);
    this.remaining -= n;
    this.handler.onResponseBody(buf, pos, pos + n);
    return pos + n;
  }

  private done(): void {
    this.state = State.Idle;
    this.handler.onResponseEnd();
  }

  private fail(message: string): false {
    this.error ??= message;
    this.state = State.Idle;
    this.partial = null;
    return false;
  }

  /** Returns the position after the head, or `end` when it continues in the next read, or -1. */
  private readHead(buf: Buffer, pos: number, end: number): number {
    let bytes = buf;
    let from = pos;
    let to = end;
    if (this.partial !== null) {
      // Rare: the head came in pieces. Join them (bounded) and search again from the start.
      bytes = Buffer.concat([this.partial, buf.subarray(pos, end)]);
      from = 0;
      to = bytes.length;
    }
    // Searched in place: the bytes past `to` are stale, so a match must also end by `to` (the first
    // match past it means none before it).
    const found = bytes.indexOf(HEAD_END, from);
    const at = found >= 0 && found + 4 <= to ? found - from : -1;
    if (at < 0) {
      if (to - from > MAX_HEAD_BYTES) return this.fail('response head larger than 64 KiB') || -1;
      this.partial = Buffer.from(bytes.subarray(from, to)); // copy: the read buffer is reused
      return end;
    }
    const headEnd = from + at + 4;
    if (headEnd - from > MAX_HEAD_BYTES) return this.fail('response head larger than 64 KiB') || -1;
    const fromPartial = this.partial === null ? 0 : this.partial.length;
    this.partial = null;
    if (!this.parseHead(bytes.toString('latin1', from, headEnd - 4))) return -1;
    // The position in `buf` just after the head.
    return bytes === buf ? headEnd : pos + headEnd - fromPartial;
  }

  private parseHead(text: string): boolean {
    let eol = text.indexOf('\r\n');
    if (eol < 0) eol = text.length;
    const status = statusOf(text, eol);
    if (status < 0) return this.fail('malformed status line');
    const minor = text.charCodeAt(7) - 48;
    const section = checkFieldSection(text, eol + 2);
    if (section === FieldSection.Invalid) {
      return this.fail('malformed header field (name not a token, whitespace before a colon, obsolete line folding, or a bare CR, LF or NUL)');
    }
    // Every line is now `token:value`. The fields the client should see are passed on as the text
    // they came in (runs of lines, sliced); only the ones that frame this hop are looked at.
    let fields = '';
    let keptFrom = eol + 2;
    let length = -1;
    let chunked = false;
    let transferEncoding = false;
    let close = minor === 0;
    let listed: string[] | null = null;
    this.keepAliveTimeout = -1;
    for (let pos = eol + 2; pos < text.length; ) {
      let end = text.indexOf('\r\n', pos);
      if (end < 0) end = text.length;
      const colon = text.indexOf(':', pos);
      const kind = fieldKind(text, pos, colon);
      if (kind !== Field.Kept) {
        fields += text.slice(keptFrom, pos);
        keptFrom = end + 2;
        if (kind === Field.ContentLength) {
          // The usual case, read in place: one plain number.
          const n = decimal(text, colon + 1, end);
          if (n >= 0 && (length === -1 || length === n)) {
            length = n;
            pos = end + 2;
            continue;
          }
        }
        if (kind === Field.Dropped) {
          pos = end + 2;
          continue;
        }
        const value = text.slice(colon + 1, end).trim();
        if (kind === Field.ContentLength) {
          // A list of equal values is one value (RFC 9110 8.6); anything else is an attack or a bug.
          for (const v of value.split(',')) {
            const t = v.trim();
            if (!DIGITS.test(t) || (length !== -1 && Number(t) !== length)) return this.fail('invalid or conflicting Content-Length');
            length = Number(t);
          }
        } else if (kind === Field.TransferEncoding) {
          transferEncoding = true;
          const codings = value.toLowerCase().split(',');
          chunked = codings[codings.length - 1].trim() === 'chunked';
        } else if (kind === Field.Connection) {
          for (const token of value.toLowerCase().split(',')) {
            const t = token.trim();
            if (t === 'close') close = true;
            else if (t === 'keep-alive') close = minor === 0 ? false : close;
            else if (t !== '') (listed ??= []).push(t);
          }
        } else if (kind === Field.KeepAlive) {
          const m = KEEP_ALIVE_TIMEOUT.exec(value);
          if (m) this.keepAliveTimeout = Number(m[1]);
        }
      }
      pos = end + 2;
    }
    if (keptFrom < text.length) fields += text.slice(keptFrom);
    if (fields.endsWith('\r\n')) fields = fields.slice(0, -2);
    if (listed !== null) fields = dropListed(fields, listed);
    if (status < 200) {
      // 100 Continue, 103 Early Hints ...: interim, the final answer follows. 101 cannot happen to a
      // request that did not ask to switch protocols.
      if (status === 101) return this.fail('101 Switching Protocols to a plain HTTP request');
      if (!isInterim(status)) return this.fail('malformed status line');
      if (++this.interim > MAX_INTERIM_RESPONSES) return this.fail(`more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`);
      return true;
    }
    this.obsText = section === FieldSection.ObsText || hasHighByte(text, 13, eol);
    this.keepAlive = !close;
    this.contentLength = length;
    if (this.noBody || status === 204 || status === 304) this.framing = Framing.None;
    else if (transferEncoding) {
      this.framing = chunked ? Framing.Chunked : Framing.UntilClose;
      // Transfer-Encoding with Content-Length may be smuggling: RFC 9112 6.1 says close after it.
      if (!chunked || length !== -1) this.keepAlive = false;
      this.contentLength = -1;
    } else if (length !== -1) this.framing = Framing.Length;
    else {
      this.framing = Framing.UntilClose;
      this.keepAlive = false;
    }
    this.handler.onResponseHead(status, eol > 13 ? text.slice(13, eol) : '', fields);
    if (this.state === State.Discarded) return true;
    switch (this.framing) {
      case Framing.None:
        this.done();
        break;
      case Framing.Length:
        if (length === 0) this.done();
        else {
          this.state = State.Length;
          this.remaining = length;
        }
        break;
      case Framing.Chunked:
        this.state = State.ChunkSize;
        this.partialLine = '';
        break;
      case Framing.UntilClose:
        this.state = State.UntilClose;
        break;
    }
    return true;
  }

  /** A chunk-size line or a trailer line; returns the position after it, `end` if it continues, or -1. */
  private readLine(buf: Buffer, pos: number, end: number): number {
    const lf = buf.subarray(pos, end).indexOf(LF);
    if (lf < 0) {
      this.partialLine += buf.toString('latin1', pos, end);
      if (this.partialLine.length > MAX_LINE) return this.fail('chunk-size or trailer line too long') || -1;
      return end;
    }
    let line = this.partialLine + buf.toString('latin1', pos, pos + lf);
    this.partialLine = '';
    if (line.length > MAX_LINE || line.charCodeAt(line.length - 1) !== CR) return this.fail('malformed chunk-size or trailer line') || -1;
    line = line.slice(0, -1);
    const next = pos + lf + 1;
    if (this.state === State.Trailers) {
      // Trailer fields are not passed on (uWS cannot send them); the empty line ends the message.
      if (line === '') this.done();
      else if (BARE_CR_LF_NUL.test(line)) return this.fail('bare CR or NUL in a trailer') || -1;
      return next;
    }
    const semi = line.indexOf(';'); // chunk extensions are ignored
    const hex = (semi < 0 ? line : line.slice(0, semi)).trimEnd();
    if (!HEX.test(hex)) return this.fail('invalid chunk size') || -1;
    const size = parseInt(hex, 16);
    if (size === 0) this.state = State.Trailers;
    else {
      this.state = State.ChunkData;
      this.remaining = size;
    }
    return next;
  }
}
