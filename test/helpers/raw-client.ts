// Raw TCP clients, for what `ws` will not do: malformed upgrades, clients that stop reading,
// never answer pings, or vanish without a close frame.
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { acceptKey } from './backends';
import { withTimeout } from './wait';

export interface RawResponse {
  socket: Socket;
  status: number;
  statusLine: string;
  headers: Record<string, string>;
  /** Bytes after the response head that arrived with it. */
  rest: Buffer;
}

export async function openSocket(port: number, localAddress?: string, timeoutMs = 5000): Promise<Socket> {
  const socket = netConnect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      timeoutMs,
      `TCP connect to ${port}`,
    );
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}

/** Reads one HTTP response head from `socket`; leaves the socket paused with no data listener. */
export async function readResponseHead(socket: Socket, timeoutMs = 5000): Promise<Omit<RawResponse, 'socket'>> {
  let buf = Buffer.alloc(0);
  let onData!: (chunk: Buffer) => void;
  let onEnd!: () => void;
  try {
    return await withTimeout(
      new Promise<Omit<RawResponse, 'socket'>>((resolve, reject) => {
        onData = (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          socket.pause();
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
          const statusLine = lines[0] ?? '';
          const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
          if (!m) return reject(new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`));
          const headers: Record<string, string> = {};
          for (const line of lines.slice(1)) {
            const i = line.indexOf(':');
            if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
          }
          resolve({ status: Number(m[1]), statusLine, headers, rest: buf.subarray(end + 4) });
        };
        onEnd = () => reject(new Error(`connection closed before a response head (got ${JSON.stringify(buf.toString('latin1'))})`));
        socket.on('data', onData);
        socket.once('end', onEnd);
        socket.once('close', onEnd);
        socket.resume();
      }),
      timeoutMs,
      'an HTTP response head',
    );
  } finally {
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
  }
}

/** Sends `request` verbatim on a new connection and reads the response head. */
export async function rawRequest(port: number, request: string, timeoutMs = 5000): Promise<RawResponse> {
  const socket = await openSocket(port, undefined, timeoutMs);
  try {
    socket.write(request);
    const head = await readResponseHead(socket, timeoutMs);
    return { socket, ...head };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

export interface UpgradeRequestOptions {
  path?: string;
  host?: string;
  key?: string | null;
  version?: string | null;
  /** Extra header lines, e.g. { 'Connection': 'Upgrade, X-Secret' } (replaces the default of the same name). */
  headers?: Record<string, string>;
}

export function upgradeRequest(options: UpgradeRequestOptions = {}): { text: string; key: string | null } {
  const key = options.key === undefined ? randomBytes(16).toString('base64') : options.key;
  const headers: Record<string, string> = {
    Host: options.host ?? '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
  };
  if (key !== null) headers['Sec-WebSocket-Key'] = key;
  if (options.version !== null) headers['Sec-WebSocket-Version'] = options.version ?? '13';
  for (const [k, v] of Object.entries(options.headers ?? {})) {
    const existing = Object.keys(headers).find((h) => h.toLowerCase() === k.toLowerCase());
    if (existing) delete headers[existing];
    headers[k] = v;
  }
  const lines = [`GET ${options.path ?? '/'} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return { text: lines.join('\r\n') + '\r\n\r\n', key };
}

/**
 * A complete WebSocket handshake over a raw socket. Resolves once 101 arrived (and the accept key
 * checked); the socket is returned paused, with no data listener: the caller decides whether it reads.
 */
export async function rawWebSocket(
  port: number,
  options: UpgradeRequestOptions & { localAddress?: string; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const socket = await openSocket(port, options.localAddress, timeoutMs);
  try {
    const { text, key } = upgradeRequest(options);
    socket.write(text);
    const head = await readResponseHead(socket, timeoutMs);
    if (head.status !== 101) throw new Error(`expected 101, got ${head.statusLine}`);
    if (key !== null && head.headers['sec-websocket-accept'] !== acceptKey(key)) {
      throw new Error(`bad Sec-WebSocket-Accept ${head.headers['sec-websocket-accept']}`);
    }
    return { socket, ...head };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** A masked client frame (RFC 6455 5.2) with FIN set. */
export function clientFrame(opcode: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const header = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = 0x80 | opcode;
  if (len < 126) header[1] = 0x80 | len;
  else if (len < 65536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(len, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

/** Waits for the socket to be closed by the other side (FIN or reset). */
export async function socketClosed(socket: Socket, timeoutMs: number): Promise<void> {
  if (socket.destroyed || socket.readableEnded) return;
  await withTimeout(
    new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.once('end', () => resolve());
      socket.resume();
    }),
    timeoutMs,
    'the socket to be closed',
  );
}

export interface ServerFrame {
  fin: boolean;
  opcode: number;
  /** Payload length. */
  length: number;
}

/**
 * Incremental parser of unmasked (server -> client) frames, for raw clients. Payloads are not kept:
 * `onPayload` sees each payload piece as it arrives (for checking content without buffering it).
 */
export class ServerFrameParser {
  readonly frames: ServerFrame[] = [];
  payloadBytes = 0;
  /** Set when the stream stops making sense (a masked or reserved-bit frame from the server). */
  error: string | undefined;
  private head: Buffer = Buffer.alloc(0);
  private remaining = 0;
  private current: ServerFrame | undefined;

  constructor(private readonly onPayload: (frame: ServerFrame, piece: Buffer, offset: number) => void = () => {}) {}

  push(chunk: Buffer): void {
    let data = chunk;
    while (data.length > 0 && this.error === undefined) {
      if (this.current && this.remaining > 0) {
        const piece = data.subarray(0, this.remaining);
        this.onPayload(this.current, piece, this.current.length - this.remaining);
        this.remaining -= piece.length;
        this.payloadBytes += piece.length;
        data = data.subarray(piece.length);
        if (this.remaining === 0) this.current = undefined;
        continue;
      }
      this.head = this.head.length ? Buffer.concat([this.head, data]) : data;
      data = Buffer.alloc(0);
      if (this.head.length < 2) return;
      const b0 = this.head[0];
      const b1 = this.head[1];
      if (b0 & 0x70 || b1 & 0x80) {
        this.error = `bad frame header ${this.head.subarray(0, 2).toString('hex')} after ${this.frames.length} frames`;
        return;
      }
      let length = b1 & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.head.length < 4) return;
        length = this.head.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.head.length < 10) return;
        length = Number(this.head.readBigUInt64BE(2));
        offset = 10;
      }
      const frame: ServerFrame = { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, length };
      this.frames.push(frame);
      data = this.head.subarray(offset);
      this.head = Buffer.alloc(0);
      this.current = frame;
      this.remaining = length;
      if (length === 0) this.current = undefined;
    }
  }
}

/** A masked client frame header announcing `length` bytes of binary payload (64-bit length; the payload is the caller's). */
export function announceFrame(length: number): Buffer {
  const head = Buffer.alloc(14);
  head[0] = 0x82;
  head[1] = 0x80 | 127;
  head.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
  head.writeUInt32BE(length >>> 0, 6);
  head.writeUInt32BE(0x01020304, 10); // the mask
  return head;
}

/** Writes `bytes` zero bytes in 64 KiB pieces; resolves when the kernel took them all, or the socket closed. */
export function streamZeros(socket: Socket, bytes: number): Promise<void> {
  const piece = Buffer.alloc(64 * 1024);
  return new Promise((resolve) => {
    let left = bytes;
    socket.once('close', () => resolve());
    const pump = (): void => {
      while (left > 0 && !socket.destroyed) {
        const n = Math.min(left, piece.length);
        left -= n;
        if (!socket.write(piece.subarray(0, n))) return void socket.once('drain', pump);
      }
      if (left === 0) socket.write(Buffer.alloc(0), () => resolve());
    };
    pump();
  });
}

/**
 * `count` raw WebSockets on `${path}-1`, `${path}-2`, ..., each sent the header of a `size`-byte
 * message and all of it but its last byte; resolves once the kernel took the bytes or the balancer
 * cut the connection.
 */
export async function unfinishedMessages(port: number, count: number, size: number, path = '/big'): Promise<Socket[]> {
  const sockets = await Promise.all(Array.from({ length: count }, async (_, i) => (await rawWebSocket(port, { path: `${path}-${i + 1}` })).socket));
  await Promise.all(
    sockets.map((s) => {
      s.on('error', () => {});
      s.resume();
      s.write(announceFrame(size));
      return streamZeros(s, size - 1);
    }),
  );
  return sockets;
}

const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A PROXY protocol v2 header (PROXY command, TCP over IPv4) saying the connection is from `source`. */
export function proxyV2Header(source: string, sourcePort = 40000, destination = '127.0.0.1', destinationPort = 443): Buffer {
  const addresses = Buffer.alloc(12);
  Buffer.from(source.split('.').map(Number)).copy(addresses, 0);
  Buffer.from(destination.split('.').map(Number)).copy(addresses, 4);
  addresses.writeUInt16BE(sourcePort, 8);
  addresses.writeUInt16BE(destinationPort, 10);
  return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 12]), addresses]);
}

/** A PROXY protocol v1 line saying the connection is from `source` (IPv4). */
export function proxyV1Header(source: string, sourcePort = 40000, destination = '127.0.0.1', destinationPort = 443): Buffer {
  return Buffer.from(`PROXY TCP4 ${source} ${destination} ${sourcePort} ${destinationPort}\r\n`, 'latin1');
}

/** Resolves with what `socket` received before the other side closed it (or rejects after `timeoutMs`). */
export function untilClosed(socket: Socket, timeoutMs = 5000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.resume();
  return withTimeout(new Promise<Buffer>((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks)))), timeoutMs, 'the balancer to close the connection');
}
