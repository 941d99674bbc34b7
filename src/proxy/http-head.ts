// The checks on a backend's HTTP/1.x response head that both of its readers make: the upgrade
// handshake (handshake.ts, the answer to our GET with Upgrade) and the plain-HTTP parser
// (http-response-parser.ts). Both read the head as latin1 text up to, not including, its blank line:
// one character a byte, so bytes 0x80-0xFF (RFC 9110's obs-text) survive the reading, and asSent()
// keeps them when the text goes on to the client.

/** The blank line that ends a head. */
export const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Header lines after the status line, all of them in one pass: `token:` then no CR, LF or NUL,
 * CRLF-separated (RFC 9112 5). Refuses whitespace before a colon and obsolete line folding, which
 * let a backend smuggle or split what a proxy passes on. Sticky: set lastIndex to where lines start.
 */
const FIELD_SECTION = /(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\0]*(?:\r\n(?!$)|$))*$/y;

/** The same, with values in ASCII only: tried first, so the usual head is still scanned once (checkFieldSection). */
const ASCII_FIELD_SECTION = /(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\0\x80-\xff]*(?:\r\n(?!$)|$))*$/y;
const NOT_ASCII = /[\x80-\uffff]/;

/**
 * Interim (1xx) responses skipped before the final one; more is a broken backend (502), as Go's
 * net/http allows 5. They are never relayed: uWS cannot send one, and clients rarely want them.
 */
export const MAX_INTERIM_RESPONSES = 5;

/** A 1xx status other than 101: an interim response, the final one still to come (RFC 9110 15.2). */
export function isInterim(status: number): boolean {
  return status >= 100 && status < 200 && status !== 101;
}

/**
 * The status code of the status line `text[0..eol)`: `HTTP/1.0` or `HTTP/1.1`, a space, three
 * digits, then nothing or a space and a reason phrase without CR, LF or NUL. -1 when malformed.
 */
export function statusOf(text: string, eol: number): number {
  if (eol < 12 || !text.startsWith('HTTP/1.') || (text.charCodeAt(7) !== 48 && text.charCodeAt(7) !== 49) || text.charCodeAt(8) !== 32) return -1;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    status = status * 10 + d;
  }
  if (eol > 12 && text.charCodeAt(12) !== 32) return -1;
  for (let i = 13; i < eol; i++) {
    const c = text.charCodeAt(i);
    if (c === 13 || c === 10 || c === 0) return -1;
  }
  return status;
}

export const enum FieldSection {
  Invalid,
  /** Well-formed, every value in ASCII. */
  Ascii,
  /** Well-formed, some value holds a byte 0x80-0xFF (RFC 9110's obs-text). */
  ObsText,
}

/** Whether every line of `text` from `from` (just after the status line's CRLF) is a well-formed `name:value`, and in ASCII. */
export function checkFieldSection(text: string, from: number): FieldSection {
  if (from >= text.length) return FieldSection.Ascii;
  ASCII_FIELD_SECTION.lastIndex = from;
  if (ASCII_FIELD_SECTION.test(text)) return FieldSection.Ascii;
  FIELD_SECTION.lastIndex = from;
  return FIELD_SECTION.test(text) ? FieldSection.ObsText : FieldSection.Invalid;
}

/**
 * Latin1 head text (one character a byte) as uWS must be given it: uWS writes a string as UTF-8, so
 * text with bytes 0x80-0xFF goes as a Buffer of those bytes (both builds write a Buffer as it is).
 */
export function asSent(text: string): string | Buffer {
  return NOT_ASCII.test(text) ? Buffer.from(text, 'latin1') : text;
}

/** Whether text[start..start+name.length) is `name` (given in lower case) in any case; makes no string. */
export function nameIs(text: string, start: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    let c = text.charCodeAt(start + i);
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== name.charCodeAt(i)) return false;
  }
  return true;
}

/** text[from..to) without the spaces and tabs around it (RFC 9110 5.5: OWS is not part of a value). */
export function fieldValue(text: string, from: number, to: number): string {
  while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++;
  while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to--;
  return text.slice(from, to);
}
