// Reads a PROXY protocol header (v1 text or v2 binary, haproxy.org/download/2.6/doc/proxy-protocol.txt)
// from the first bytes of a connection. Pure: bytes in, a verdict out. Written by hand, not taken from
// a package: it must also say "not a header" and "need more bytes" from a partial first read, and
// how long the header is, which the npm parsers do not.
import { isIP } from 'node:net';
import { formatPeerAddress } from './proxy/forwarded-headers';

export type ProxyHeader =
  /** The bytes so far are the start of a header, or could be. */
  | { kind: 'incomplete' }
  /** The connection does not start with a PROXY header. */
  | { kind: 'none' }
  /** It starts like one, but breaks the format. */
  | { kind: 'invalid' }
  /** `length` bytes of header; `source` the client address, '' for LOCAL (v2) or UNKNOWN (v1): the peer speaks for itself. */
  | { kind: 'header'; version: 1 | 2; length: number; source: string };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** v1: the longest line the specification allows, CRLF included. */
const V1_MAX = 107;
/** v2: addresses plus TLVs; HAProxy's own limit for what it accepts. */
const V2_MAX_BODY = 1024;

const INCOMPLETE: ProxyHeader = { kind: 'incomplete' };
const NONE: ProxyHeader = { kind: 'none' };
const INVALID: ProxyHeader = { kind: 'invalid' };

/** Whether `b` starts with `prefix`, as far as both go. */
function startsLike(b: Buffer, prefix: Buffer): boolean {
  const n = Math.min(b.length, prefix.length);
  return b.compare(prefix, 0, n, 0, n) === 0;
}

export function readProxyHeader(b: Buffer): ProxyHeader {
  if (b.length === 0) return INCOMPLETE;
  if (startsLike(b, V2_SIGNATURE)) return b.length < 16 ? INCOMPLETE : readV2(b);
  if (startsLike(b, V1_PREFIX)) return b.length < V1_PREFIX.length ? INCOMPLETE : readV1(b);
  return NONE;
}

function readV2(b: Buffer): ProxyHeader {
  const versionCommand = b[12];
  const family = b[13];
  const bodyLength = b.readUInt16BE(14);
  if (versionCommand >> 4 !== 2 || bodyLength > V2_MAX_BODY) return INVALID;
  const length = 16 + bodyLength;
  if (b.length < length) return INCOMPLETE;
  const command = versionCommand & 0x0f;
  if (command === 0) return { kind: 'header', version: 2, length, source: '' }; // LOCAL: a health check of the proxy's own
  if (command !== 1) return INVALID;
  if (family === 0x11 || family === 0x12) return bodyLength < 12 ? INVALID : { kind: 'header', version: 2, length, source: formatPeerAddress(b.subarray(16, 20)) };
  if (family === 0x21 || family === 0x22) return bodyLength < 36 ? INVALID : { kind: 'header', version: 2, length, source: formatPeerAddress(b.subarray(16, 32)) };
  return { kind: 'header', version: 2, length, source: '' }; // AF_UNSPEC or AF_UNIX: no address to take
}

function readV1(b: Buffer): ProxyHeader {
  const end = b.indexOf('\r\n', 0, 'latin1');
  if (end < 0) return b.length >= V1_MAX ? INVALID : INCOMPLETE;
  if (end + 2 > V1_MAX) return INVALID;
  const fields = b.toString('latin1', V1_PREFIX.length, end).split(' ');
  if (fields[0] === 'UNKNOWN') return { kind: 'header', version: 1, length: end + 2, source: '' };
  if (fields.length !== 5) return INVALID;
  const [protocol, source, destination, sourcePort, destinationPort] = fields;
  const family = protocol === 'TCP4' ? 4 : protocol === 'TCP6' ? 6 : 0;
  if (family === 0 || isIP(source) !== family || isIP(destination) !== family) return INVALID;
  if (!/^\d{1,5}$/.test(sourcePort) || !/^\d{1,5}$/.test(destinationPort) || Number(sourcePort) > 65535 || Number(destinationPort) > 65535) return INVALID;
  return { kind: 'header', version: 1, length: end + 2, source: family === 4 ? source : source.includes('.') ? source.slice(source.lastIndexOf(':') + 1) : formatPeerAddress(ipv6Bytes(source)) };
}

/** A v1 IPv6 address (hex groups only) in the short form the rest of the balancer uses (RFC 5952), via its bytes. */
function ipv6Bytes(text: string): Uint8Array {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

/** A PROXY protocol v2 LOCAL header: a connection the proxy makes on its own behalf (a health check), no address. */
export const PROXY_V2_LOCAL: Buffer = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);

/**
 * A PROXY protocol v2 header for a relayed TCP connection from `source` to `destination` (IPv4 or
 * IPv6; a mixed pair is written as IPv6, the IPv4 one mapped), what HAProxy's send-proxy-v2 writes.
 */
export function encodeProxyV2(source: string, sourcePort: number, destination: string, destinationPort: number): Buffer {
  const v6 = isIP(source) === 6 || isIP(destination) === 6;
  const size = v6 ? 36 : 12;
  const header = Buffer.alloc(16 + size);
  V2_SIGNATURE.copy(header, 0);
  header[12] = 0x21; // version 2, PROXY
  header[13] = v6 ? 0x21 : 0x11; // TCP over IPv6 / IPv4
  header.writeUInt16BE(size, 14);
  const addressBytes = v6 ? 16 : 4;
  writeAddress(header, 16, source, v6);
  writeAddress(header, 16 + addressBytes, destination, v6);
  header.writeUInt16BE(sourcePort, 16 + 2 * addressBytes);
  header.writeUInt16BE(destinationPort, 18 + 2 * addressBytes);
  return header;
}

function writeAddress(out: Buffer, at: number, address: string, v6: boolean): void {
  if (!v6) {
    address.split('.').forEach((part, i) => (out[at + i] = Number(part)));
    return;
  }
  const text = isIP(address) === 4 ? `::ffff:${address}` : address;
  // Expand "::" and a trailing dotted IPv4 part into eight 16-bit groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  const hex = dotted ? text.slice(0, dotted.index) + ((+dotted[1] << 8) | +dotted[2]).toString(16) + ':' + ((+dotted[3] << 8) | +dotted[4]).toString(16) : text;
  const [head, tail] = hex.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), at + 2 * i));
}
