// The checks on a backend's HTTP/1.x response head that both of its readers make: the upgrade
// handshake (handshake.ts, the answer to our GET with Upgrade) and the plain-HTTP parser
// (http-response-parser.ts). Both read the head as latin1 text up to, not including, its blank line.

/** The blank line that ends a head. */
export const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Header lines after the status line, all of them in one pass: `token:` then no CR, LF or NUL,
 * CRLF-separated (RFC 9112 5). Refuses whitespace before a colon and obsolete line folding, which
 * let a backend smuggle or split what a proxy passes on. Sticky: set lastIndex to where lines start.
 */
const FIELD_SECTION = /(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\0]*(?:\r\n(?!$)|$))*$/y;

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

/** Whether every line of `text` from `from` (just after the status line's CRLF) is a well-formed `name:value`. */
export function isValidFieldSection(text: string, from: number): boolean {
  if (from >= text.length) return true;
  FIELD_SECTION.lastIndex = from;
  return FIELD_SECTION.test(text);
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
