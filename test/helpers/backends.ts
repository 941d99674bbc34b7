// Backends started by the tests: a real `ws` echo server (with plain HTTP handling), and raw `net`
// servers that misbehave on purpose (never answer, or stop reading after the handshake).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { waitFor } from './wait';

export interface CloseInfo {
  code: number;
  reason: string;
}

export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** One upgrade the backend accepted. */
export interface BackendConnection {
  ws: WebSocket;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  remoteAddress: string | undefined;
  /** The TCP connection under `ws` (to reset it). */
  socket: Socket;
  /** Set once the backend saw the close (code 1005 when none was given, 1006 when the TCP dropped). */
  closeInfo: CloseInfo | undefined;
  closed: Promise<CloseInfo>;
  /** Messages received from the balancer. */
  received: number;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface EchoBackendOptions {
  name?: string;
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Address to listen on (default 127.0.0.1; any 127.0.0.x is loopback on Linux). */
  host?: string;
  /** ws `handleProtocols`. Default: picks "chat.v2" when offered, else no subprotocol. */
  handleProtocols?: (protocols: Set<string>, req: IncomingMessage) => string | false;
  /** Return an HTTP status to refuse an upgrade with it. */
  refuse?: (req: IncomingMessage) => number | undefined;
  /** Called for every accepted upgrade, after the echo handler is attached. */
  onConnection?: (conn: BackendConnection) => void;
  /** Plain HTTP hook; return true when it answered the request itself. */
  onRequest?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** Serve TLS (wss:// and https://) with this certificate; `ca` set: require a client certificate it signed. */
  tls?: { cert: string; key: string; ca?: string };
}

export interface EchoBackend {
  name: string;
  port: number;
  /** ws://127.0.0.1:port (wss:// with `tls`) */
  url: string;
  /** Client certificates' subjects seen in TLS handshakes (with `tls.ca`), and handshakes that failed. */
  tlsClients: string[];
  tlsErrors: string[];
  httpServer: HttpServer;
  wss: WebSocketServer;
  /** Every accepted upgrade, in order. */
  connections: BackendConnection[];
  /** Upgrade requests refused by `refuse`. */
  refused: RecordedRequest[];
  httpRequests: RecordedRequest[];
  openConnections(): BackendConnection[];
  openCount(): number;
  waitForConnection(predicate: (c: BackendConnection) => boolean, timeoutMs: number): Promise<BackendConnection>;
  /** Drops every tunnel's TCP connection without a close frame. */
  terminateAll(): void;
  close(): Promise<void>;
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error' };

function defaultProtocols(protocols: Set<string>): string | false {
  return protocols.has('chat.v2') ? 'chat.v2' : false;
}

function defaultHttp(name: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://backend');
  const status = /^\/status\/(\d{3})$/.exec(url.pathname);
  if (url.pathname === '/echo') {
    // Streams the request body straight back.
    res.writeHead(200, {
      'content-type': req.headers['content-type'] ?? 'application/octet-stream',
      'x-backend': name,
    });
    req.pipe(res);
    return;
  }
  if (status) {
    const body = `status ${status[1]} from ${name}`;
    res.writeHead(Number(status[1]), { 'content-type': 'text/plain', 'x-backend': name, 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  let length = 0;
  req.on('data', (chunk: Buffer) => (length += chunk.length));
  req.on('end', () => {
    const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, bodyLength: length });
    res.writeHead(200, {
      'content-type': 'application/json',
      'x-backend': name,
      'set-cookie': ['a=1; Path=/', 'b=2; Path=/'],
      'cache-control': 'no-store',
    });
    res.end(body);
  });
}

export async function startEchoBackend(options: EchoBackendOptions = {}): Promise<EchoBackend> {
  const name = options.name ?? `backend-${Math.random().toString(36).slice(2, 8)}`;
  const connections: BackendConnection[] = [];
  const refused: RecordedRequest[] = [];
  const httpRequests: RecordedRequest[] = [];

  const onHttp = (req: IncomingMessage, res: ServerResponse): void => {
    httpRequests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (options.onRequest?.(req, res)) return;
    defaultHttp(name, req, res);
  };
  const tls = options.tls;
  const tlsClients: string[] = [];
  const tlsErrors: string[] = [];
  const httpServer = tls
    ? (createHttpsServer(
        { cert: readFileSync(tls.cert), key: readFileSync(tls.key), ...(tls.ca && { ca: readFileSync(tls.ca), requestCert: true, rejectUnauthorized: true }) },
        onHttp,
      ) as unknown as HttpServer)
    : createServer(onHttp);
  if (tls) {
    httpServer.on('secureConnection', (s: TLSSocket) => {
      const peer = s.getPeerCertificate();
      if (peer.subject) tlsClients.push(String(peer.subject.CN));
    });
    httpServer.on('tlsClientError', (err: Error) => tlsErrors.push(err.message));
  }
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: options.handleProtocols ?? defaultProtocols,
    maxPayload: 256 * 1024 * 1024,
  });

  httpServer.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const status = options.refuse?.(req);
    if (status !== undefined) {
      refused.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const body = `refused by ${name}`;
      socket.end(
        `HTTP/1.1 ${status} ${REASONS[status] ?? 'Refused'}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      let resolveClosed!: (c: CloseInfo) => void;
      const conn: BackendConnection = {
        ws,
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        remoteAddress: req.socket.remoteAddress,
        socket,
        closeInfo: undefined,
        closed: new Promise<CloseInfo>((r) => (resolveClosed = r)),
        received: 0,
      };
      connections.push(conn);
      ws.on('error', () => {});
      ws.on('close', (code, reason) => {
        conn.closeInfo = { code, reason: reason.toString() };
        resolveClosed(conn.closeInfo);
      });
      ws.on('message', (data, isBinary) => {
        conn.received++;
        const buf = toBuffer(data);
        if (!isBinary && buf.length === 6 && buf.toString() === 'whoami') ws.send(name);
        else ws.send(buf, { binary: isBinary });
      });
      options.onConnection?.(conn);
    });
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = httpServer.address();
  if (address === null || typeof address === 'string') throw new Error('backend has no port');
  const port = address.port;

  const backend: EchoBackend = {
    name,
    port,
    url: `${tls ? 'wss' : 'ws'}://${options.host ?? '127.0.0.1'}:${port}`,
    tlsClients,
    tlsErrors,
    httpServer,
    wss,
    connections,
    refused,
    httpRequests,
    openConnections: () => connections.filter((c) => c.closeInfo === undefined),
    openCount: () => connections.filter((c) => c.closeInfo === undefined).length,
    waitForConnection: (predicate, timeoutMs) => waitFor(() => connections.find(predicate), timeoutMs, `a connection on ${name}`),
    terminateAll: () => {
      for (const c of connections) if (c.closeInfo === undefined) c.ws.terminate();
    },
    close: async () => {
      for (const c of connections) if (c.closeInfo === undefined) c.ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
  return backend;
}

export async function startEchoBackends(count: number, prefix = 'b'): Promise<EchoBackend[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => startEchoBackend({ name: `${prefix}${i}` })));
}

/** The backend with the given name (from "whoami"). */
export function byName(backends: readonly EchoBackend[], name: string): EchoBackend {
  const b = backends.find((x) => x.name === name);
  if (!b) throw new Error(`no backend named ${JSON.stringify(name)}`);
  return b;
}

export async function closeAll(...servers: ({ close(): Promise<void> } | undefined)[]): Promise<void> {
  await Promise.all(servers.map((s) => (s ? s.close() : Promise.resolve())));
}

// ---------------------------------------------------------------------------------------------
// Raw TCP backends

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptKey(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

interface RawServerBase {
  port: number;
  url: string;
  server: NetServer;
  sockets: Set<Socket>;
  /** TCP connections accepted. */
  accepted(): number;
  close(): Promise<void>;
}

async function listenRaw(onSocket: (socket: Socket) => void): Promise<RawServerBase> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createNetServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onSocket(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('raw server has no port');
  return {
    port: address.port,
    url: `ws://127.0.0.1:${address.port}`,
    server,
    sockets,
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Accepts TCP connections and never sends a byte (a backend hung before its 101). */
export async function startSilentServer(): Promise<RawServerBase> {
  return listenRaw((socket) => socket.on('data', () => {}));
}

/** Pings a 'ping-flood' backend sends. */
export const PING_FLOOD = 200_000;

export interface RawWsBackend extends RawServerBase {
  /** Upgrades answered with 101. */
  handshakes(): number;
  /** Sockets whose handshake is done. */
  upgraded: Socket[];
}

/**
 * Answers the WebSocket upgrade correctly, then misbehaves:
 * - 'ignore': keeps reading but never answers anything (no pong, no close, no data);
 * - 'stop-reading': stops reading the socket altogether;
 * - 'masked-frame': sends a masked frame, which a server must never send (a protocol error);
 * - 'bad-accept': answers 101 with a wrong Sec-WebSocket-Accept;
 * - 'close-keeps-tcp': answers a close frame with its own, but never closes the TCP connection;
 * - 'gone-after-101': sends a text frame "last words" right behind its 101, then closes TCP at once
 *   (no close frame): all of it reaches the balancer before the client has its 101.
 * - 'ping-flood': stops reading, then sends PING_FLOOD pings of 125 bytes, the n-th starting with n
 *   (4 bytes, big-endian): their pongs are more than the kernel's socket buffers hold.
 */
export async function startRawWsBackend(mode: 'ignore' | 'stop-reading' | 'masked-frame' | 'bad-accept' | 'close-keeps-tcp' | 'gone-after-101' | 'ping-flood'): Promise<RawWsBackend> {
  let handshakes = 0;
  const upgraded: Socket[] = [];
  const base = await listenRaw((socket) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const text = head.subarray(0, end).toString('latin1');
      const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(text)?.[1] ?? '';
      const answer = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${mode === 'bad-accept' ? acceptKey('x') : acceptKey(key)}\r\n\r\n`;
      if (mode === 'gone-after-101') {
        const words = Buffer.from('last words');
        socket.end(Buffer.concat([Buffer.from(answer, 'latin1'), Buffer.from([0x81, words.length]), words]));
        handshakes++;
        upgraded.push(socket);
        return;
      }
      socket.write(answer);
      handshakes++;
      upgraded.push(socket);
      if (mode === 'masked-frame') {
        socket.on('data', () => {});
        setTimeout(() => socket.write(Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x69 ^ 1, 0x69 ^ 2])), 50);
      } else if (mode === 'stop-reading') socket.pause();
      else if (mode === 'ping-flood') {
        socket.pause();
        const pings = Buffer.alloc(PING_FLOOD * 127, 0x70);
        for (let n = 0; n < PING_FLOOD; n++) {
          pings[n * 127] = 0x89;
          pings[n * 127 + 1] = 125;
          pings.writeUInt32BE(n, n * 127 + 2);
        }
        socket.write(pings);
      }
      else if (mode === 'close-keeps-tcp') {
        socket.on('data', (frame: Buffer) => {
          // A masked close frame with a status code (at most 125 bytes): answer with that code.
          if ((frame[0] & 0x0f) === 0x8 && (frame[1] & 0x7f) >= 2) {
            const mask = frame.subarray(2, 6);
            socket.write(Buffer.from([0x88, 2, frame[6] ^ mask[0], frame[7] ^ mask[1]]));
          }
        });
        socket.on('end', () => {}); // allowHalfOpen is off: our side ends when the balancer's does
      }
      else socket.on('data', () => {});
    };
    socket.on('data', onData);
  });
  return { ...base, handshakes: () => handshakes, upgraded };
}

export interface RawHttpBackend extends RawServerBase {
  /** Request heads received, in order ("GET /path HTTP/1.1\r\n..."). */
  heads: string[];
}

/**
 * An HTTP/1.1 backend driven by hand: `answer` gets each request (one at a time per connection,
 * `nth` counting from 1 on that connection) and writes whatever bytes it likes, or nothing.
 * Request bodies are read by their Content-Length (chunked uploads are not supported here).
 */
export async function startRawHttpBackend(answer: (socket: Socket, head: string, nth: number) => void): Promise<RawHttpBackend> {
  const heads: string[] = [];
  const base = await listenRaw((socket) => {
    let buffered = Buffer.alloc(0);
    let nth = 0;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/^content-length:\s*(\d+)\s*$/im.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.subarray(end + 4 + length);
        heads.push(head);
        answer(socket, head, ++nth);
      }
    });
  });
  return { ...base, heads };
}

export interface UnacceptingServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * The child: listens with a backlog of 1, prints its port, then blocks its event loop (never
 * accepts) for five minutes at most, so that it cannot outlive a crashed test run for long.
 */
const UNACCEPTING = `const s = require('node:net').createServer();
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  require('node:fs').writeSync(1, s.address().port + '\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300000);
  process.exit(0);
});`;

/** Resolves true when a connect to `port` completes, false when it is still pending after `ms`. */
function connects(port: number, ms: number, keep: Socket[]): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, ms);
    socket.once('connect', () => {
      clearTimeout(timer);
      keep.push(socket);
      resolve(true);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * A loopback port where a TCP connect hangs, as to a host behind a firewall that drops SYNs: a
 * listener in a child process that never accepts, its accept queue filled by this helper, so the
 * kernel (Linux) drops every further SYN and the connecting side waits until its own timeout.
 */
export async function startUnacceptingServer(): Promise<UnacceptingServer> {
  const child = spawn(process.execPath, ['-e', UNACCEPTING], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const port = Number(await waitFor(() => /^(\d+)\n/.exec(out)?.[1], 5000, 'the unaccepting listener'));
  const queued: Socket[] = [];
  const close = async (): Promise<void> => {
    for (const s of queued) s.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  };
  // Fill the queue: a loopback connect completes at once unless its SYN was dropped. A second to
  // call it hung is generous; ten tries are far more than the backlog of 1 (two queued on Linux).
  for (let i = 0; i < 10; i++) {
    if (!(await connects(port, 1000, queued))) return { port, url: `ws://127.0.0.1:${port}`, close };
  }
  await close();
  throw new Error('every connect to the unaccepting listener completed: its accept queue never filled');
}
