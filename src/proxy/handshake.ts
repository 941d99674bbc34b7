// The backend hop's opening handshake (RFC 6455 section 4), client role. Pure: text in, text out.
import { hash, randomFillSync } from 'node:crypto';
import { checkFieldSection, fieldValue, FieldSection, HEAD_END, nameIs, statusOf } from './http-head';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Largest response head we accept from a backend before calling it broken. */
export const MAX_RESPONSE_HEAD = 16 * 1024;

// Keys come from a pooled random buffer, refilled 256 keys at a time: one randomFillSync per
// upgrade showed up in the connection-churn profile (bench/README.md).
const KEY_POOL = Buffer.allocUnsafe(16 * 256);
let keyOffset = KEY_POOL.length;

export function newKey(): string {
  if (keyOffset === KEY_POOL.length) {
    randomFillSync(KEY_POOL);
    keyOffset = 0;
  }
  keyOffset += 16;
  return KEY_POOL.toString('base64', keyOffset - 16, keyOffset);
}

// One-shot hash(): no Hash object per upgrade, as createHash().update().digest() had (churn profile).
export function acceptFor(key: string): string {
  return hash('sha1', key + GUID, 'base64');
}

/** A client's Sec-WebSocket-Key must be base64 of 16 bytes (section 4.1, item 7). */
export function isValidClientKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{22}==$/.test(key);
}

/** The GET that opens the backend side; `headers` already filtered (see forwarded-headers.ts). */
export function buildUpgradeRequest(pathAndQuery: string, key: string, headers: readonly (readonly [string, string])[]): string {
  let head = `GET ${pathAndQuery} HTTP/1.1\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return head + `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`;
}

export interface ResponseHead {
  status: number;
  reason: string;
  /**
   * Lower-cased names; repeated headers joined with ", " except set-cookie, kept apart. For a 101,
   * only the fields it is checked by (checkSwitchingProtocols).
   */
  headers: Map<string, string>;
  setCookie: string[];
  /** Bytes of the head including the blank line. */
  size: number;
}

/** A field a 101 is checked by, as its lower-case name; told by length and compared in place. */
function switchingField(text: string, start: number, colon: number): string | undefined {
  switch (colon - start) {
    case 7:
      return nameIs(text, start, 'upgrade') ? 'upgrade' : undefined;
    case 10:
      return nameIs(text, start, 'connection') ? 'connection' : undefined;
    case 20:
      return nameIs(text, start, 'sec-websocket-accept') ? 'sec-websocket-accept' : undefined;
    case 22:
      return nameIs(text, start, 'sec-websocket-protocol') ? 'sec-websocket-protocol' : undefined;
    case 24:
      return nameIs(text, start, 'sec-websocket-extensions') ? 'sec-websocket-extensions' : undefined;
    default:
      return undefined;
  }
}

/**
 * Parses an HTTP/1.1 response head from `buf`; null while incomplete; throws on garbage. Scanned
 * with indexOf rather than split() and a RegExp, and a 101's other fields are skipped unread: it
 * runs once per upgrade (churn profile).
 */
export function parseResponseHead(buf: Buffer): ResponseHead | null {
  const end = buf.indexOf(HEAD_END);
  if (end === -1) {
    if (buf.length > MAX_RESPONSE_HEAD) throw new Error('backend response head too large');
    return null;
  }
  const text = buf.toString('latin1', 0, end);
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = text.length;
  const statusEnd = lineEnd;
  const status = statusOf(text, statusEnd);
  if (status < 100) throw new Error(`backend answered with a malformed status line: ${JSON.stringify(text.slice(0, Math.min(lineEnd, 80)))}`);
  // A refusal's headers are passed on to the client (listener.ts): held to the plain-HTTP parser's
  // rules, so that no bare LF inside a value becomes a header of its own. A 101's values are only
  // compared, never passed on, so the upgrade path skips the check.
  if (status !== 101 && checkFieldSection(text, statusEnd + 2) === FieldSection.Invalid) throw new Error('backend answered with a malformed header line');
  const headers = new Map<string, string>();
  const setCookie: string[] = [];
  while (lineEnd < text.length) {
    const start = lineEnd + 2;
    lineEnd = text.indexOf('\r\n', start);
    if (lineEnd === -1) lineEnd = text.length;
    const colon = text.indexOf(':', start);
    if (colon <= start || colon >= lineEnd) throw new Error('backend answered with a malformed header line');
    // A refusal's names are tokens (checked above); a 101's are compared with the few that matter.
    const name = status === 101 ? switchingField(text, start, colon) : text.slice(start, colon).toLowerCase();
    if (name === undefined) continue;
    const value = fieldValue(text, colon + 1, lineEnd);
    if (name === 'set-cookie') setCookie.push(value);
    const prev = headers.get(name);
    headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  return { status, reason: statusEnd > 13 ? text.slice(13, statusEnd) : '', headers, setCookie, size: end + 4 };
}

/**
 * Checks a 101 against what we asked for; returns the chosen subprotocol ('' for none),
 * or throws with the reason the answer is unacceptable.
 */
export function checkSwitchingProtocols(head: ResponseHead, key: string, offeredProtocols: string): string {
  const h = head.headers;
  if ((h.get('upgrade') ?? '').toLowerCase() !== 'websocket') throw new Error('101 without Upgrade: websocket');
  const connection = (h.get('connection') ?? '').toLowerCase();
  if (connection !== 'upgrade' && !connection.split(/\s*,\s*/).includes('upgrade')) throw new Error('101 without Connection: upgrade');
  if (h.get('sec-websocket-accept') !== acceptFor(key)) throw new Error('101 with a wrong Sec-WebSocket-Accept');
  if (h.has('sec-websocket-extensions')) throw new Error('101 with an extension that was not offered');
  const protocol = h.get('sec-websocket-protocol') ?? '';
  if (protocol !== '') {
    const offered = offeredProtocols.split(',').map((p) => p.trim());
    if (!offered.includes(protocol)) throw new Error(`101 with subprotocol "${protocol}" that the client did not offer`);
  }
  return protocol;
}
