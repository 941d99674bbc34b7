// A pool's hashKey (what `algorithm: hash` hashes on): parsed and checked once when the config is
// validated, then compiled into one small function per pool, so the per-request work is a scan of a
// header, the URL or the client IP, with no parsing of the key's description.
//   ip          the client IP (trustedProxies decide which one)
//   ip/24       the IPv4 /24 (any prefix length 1-32), as NGINX's ip_hash; IPv6 clients by whole address
//   ip/24,64    and the IPv6 /64 (any prefix length 1-128), as HAProxy's ipmask(24,64)
//   header:NAME the first NAME header's value
//   cookie:NAME the NAME cookie's value
//   query:NAME  the NAME query parameter's value, as sent (not percent-decoded, as NGINX's $arg_NAME)
//   path:N      the N-th path segment: /rooms/42/ws with path:2 keys on 42
// An empty value counts as missing: such a request falls back to least-connections.
import { isIPv4, isIPv6 } from 'node:net';
import { header, type ClientRequest } from '../client-request';

export type HashKeySpec =
  | { kind: 'ip'; v4Bits: number; v6Bits: number }
  | { kind: 'header' | 'cookie' | 'query'; name: string }
  | { kind: 'path'; segment: number };

/** The request's key; undefined when it has none. `clientIp` is the address the balancer trusts as the client's. */
export type HashKeyExtractor = (request: ClientRequest, clientIp: string) => string | undefined;

export const HASH_KEY_FORMS = 'ip, ip/24, ip/24,64, header:NAME, cookie:NAME, query:NAME or path:N';

/** RFC 9110 token characters: header and cookie names. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The parsed key, or a message saying what is wrong with `text`. */
export function parseHashKey(text: string): HashKeySpec | string {
  const colon = text.indexOf(':');
  const kind = colon < 0 ? text : text.slice(0, colon);
  const arg = colon < 0 ? '' : text.slice(colon + 1);
  if (kind === 'ip' || kind.startsWith('ip/')) {
    if (text === 'ip') return { kind: 'ip', v4Bits: 32, v6Bits: 128 };
    const m = /^ip\/(\d{1,2})(?:,(\d{1,3}))?$/.exec(text);
    const v4Bits = Number(m?.[1]);
    const v6Bits = m?.[2] === undefined ? 128 : Number(m[2]);
    if (m === null || v4Bits < 1 || v4Bits > 32 || v6Bits < 1 || v6Bits > 128) return 'ip takes an IPv4 prefix length 1-32 and optionally an IPv6 one 1-128: ip/24 or ip/24,64';
    return { kind: 'ip', v4Bits, v6Bits };
  }
  switch (kind) {
    case 'header':
      return TOKEN.test(arg) ? { kind, name: arg.toLowerCase() } : 'header: needs a header name, e.g. header:X-Room';
    case 'cookie':
      return TOKEN.test(arg) ? { kind, name: arg } : 'cookie: needs a cookie name, e.g. cookie:room';
    case 'query':
      return arg !== '' && !/[&=#?\s]/.test(arg) ? { kind, name: arg } : 'query: needs a parameter name, e.g. query:room';
    case 'path': {
      const n = /^\d{1,2}$/.test(arg) ? Number(arg) : 0;
      return n >= 1 && n <= 64 ? { kind, segment: n } : 'path: needs a segment number 1-64, e.g. path:2 for 42 in /rooms/42/ws';
    }
    default:
      return `must be ${HASH_KEY_FORMS}`;
  }
}

/** The extractor of a valid hashKey (the schema checked it). */
export function compileHashKey(text: string): HashKeyExtractor {
  const spec = parseHashKey(text);
  if (typeof spec === 'string') throw new Error(`hashKey ${text}: ${spec}`);
  switch (spec.kind) {
    case 'ip': {
      const { v4Bits, v6Bits } = spec;
      if (v4Bits === 32 && v6Bits === 128) return (_request, ip) => (ip === '' ? undefined : ip);
      return (_request, ip) => (ip === '' ? undefined : maskIp(ip, v4Bits, v6Bits));
    }
    case 'header': {
      const name = spec.name;
      return (request) => nonEmpty(header(request, name));
    }
    case 'cookie': {
      const name = spec.name;
      return (request) => cookieValue(request, name);
    }
    case 'query': {
      const name = spec.name;
      return (request) => queryValue(request.url, name);
    }
    case 'path': {
      const segment = spec.segment;
      return (request) => pathSegment(request.url, segment);
    }
  }
}

function nonEmpty(value: string): string | undefined {
  return value === '' ? undefined : value;
}

/** `name`'s value in the Cookie header(s): `a=1; room=42` -> 42 for room. */
export function cookieValue(request: ClientRequest, name: string): string | undefined {
  for (const [k, v] of request.headers) {
    if (k !== 'cookie') continue;
    const found = listValue(v, 0, v.length, name, ';', true);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** `name`'s value in the query of `url`: /ws?room=42&x=1 -> 42 for room. */
export function queryValue(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  const fragment = url.indexOf('#', q);
  return listValue(url, q + 1, fragment < 0 ? url.length : fragment, name, '&', false);
}

/** The first non-empty value of `name=` in the `sep`-separated list text[from, to) (cookie pairs may have spaces after `;`). */
function listValue(text: string, from: number, to: number, name: string, sep: string, skipSpaces: boolean): string | undefined {
  let at = from;
  while (at < to) {
    if (skipSpaces) while (text.charCodeAt(at) === 32) at++;
    let end = text.indexOf(sep, at);
    if (end < 0 || end > to) end = to;
    if (text.startsWith(name, at) && text.charCodeAt(at + name.length) === 61 /* = */ && at + name.length < end) {
      const value = text.slice(at + name.length + 1, end).trim();
      if (value !== '') return value;
    }
    at = end + 1;
  }
  return undefined;
}

/** The `n`-th (1-based) segment of the path of `url`: /rooms/42/ws, 2 -> 42. */
export function pathSegment(url: string, n: number): string | undefined {
  let end = url.indexOf('?');
  if (end < 0) end = url.length;
  let start = 1; // after the leading /
  for (let i = 1; i < n; i++) {
    const slash = url.indexOf('/', start);
    if (slash < 0 || slash >= end) return undefined;
    start = slash + 1;
  }
  const slash = url.indexOf('/', start);
  const stop = slash < 0 || slash > end ? end : slash;
  return stop > start ? url.slice(start, stop) : undefined;
}

/** The network of `ip`: its first v4Bits (IPv4) or v6Bits (IPv6) bits, as text. */
export function maskIp(ip: string, v4Bits: number, v6Bits: number): string {
  if (isIPv4(ip)) {
    if (v4Bits === 24) return ip.slice(0, ip.lastIndexOf('.')); // the common case, as NGINX's ip_hash
    const parts = ip.split('.');
    const n = ((Number(parts[0]) << 24) | (Number(parts[1]) << 16) | (Number(parts[2]) << 8) | Number(parts[3])) >>> 0;
    return `${(v4Bits === 32 ? n : (n & (~0 << (32 - v4Bits)))) >>> 0}/${v4Bits}`;
  }
  if (v6Bits === 128 || !isIPv6(ip)) return ip;
  const groups = ipv6Groups(ip);
  let out = '';
  for (let g = 0; g < 8; g++) {
    const keep = Math.max(0, Math.min(16, v6Bits - g * 16));
    const value = keep === 0 ? 0 : groups[g] & (0xffff << (16 - keep));
    out += (g === 0 ? '' : ':') + value.toString(16);
  }
  return `${out}/${v6Bits}`;
}

/** The eight 16-bit groups of a valid IPv6 address (with "::", an optional zone and a dotted IPv4 tail). */
function ipv6Groups(ip: string): number[] {
  const zone = ip.indexOf('%');
  let text = zone < 0 ? ip : ip.slice(0, zone);
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) >= 0) {
    const [a, b, c, d] = text.slice(lastColon + 1).split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const double = text.indexOf('::');
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  if (double < 0) return groups(text);
  const front = groups(text.slice(0, double));
  const back = groups(text.slice(double + 2));
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}
