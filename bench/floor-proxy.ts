// The floor of this stack: the least a proxy built on Node 20, uWebSockets.js and Node's TCP handle
// can spend per relayed message, upgrade or request. It makes only the calls any such proxy must
// make (uWS's callbacks and sends, the backend handle's connect, reads and writes, forEachHeader and
// getRemoteAddress for the forwarded headers) with next to no JavaScript between them, and it
// skips what a real proxy may not: no frame parsing (one read is taken as one whole frame or one
// whole response, which holds for the bench's one-message-in-flight scenarios only), no checks,
// no backpressure, no timeouts, the backend handshake unverified, close without a close handshake.
// It is a measuring instrument, never a proxy to run: if even this costs more CPU than NGINX per
// operation, no JavaScript change to Switchyard can meet a target, and the gap is the stack's.
// bench/README.md ("The floor of the stack") has the measurements.
// Usage: node --import tsx bench/floor-proxy.ts PORT BACKEND_PORT [BACKEND_PORT ...]
import { forEachHeader, listenSocketPort, recordOpened, upgradeLater, uws, type HttpRequest, type HttpResponse, type WebSocket } from '../src/uws';

interface Req {
  oncomplete: (status: number) => void;
  handle: Handle;
}
interface Handle {
  onread: (this: Handle) => void;
  owner: Peer;
  connect(req: Req, address: string, port: number): number;
  useUserBuffer(buf: Uint8Array): void;
  readStart(): number;
  writeBuffer(req: Req, data: Uint8Array): number;
  writeUtf8String(req: Req, data: string): number;
  setNoDelay(on: boolean): number;
  close(): void;
}
/** Whoever reads from a backend handle: a tunnel or a pooled HTTP connection. */
interface Peer {
  handle: Handle;
  onData(length: number): void;
  onConnect(): void;
}
const binding = (name: string): unknown => (process as unknown as { binding(name: string): unknown }).binding(name);
const { TCP, TCPConnectWrap, constants } = binding('tcp_wrap') as { TCP: new (type: number) => Handle; TCPConnectWrap: new () => Req; constants: { SOCKET: number } };
const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = binding('stream_wrap') as { WriteWrap: new () => Req; streamBaseState: Int32Array; kReadBytesOrError: number; kLastWriteWasAsync: number };

const port = Number(process.argv[2]);
const backendPorts = process.argv.slice(3).map(Number);
let nextBackend = 0;
const READ = Buffer.allocUnsafe(64 * 1024);
const READ_AB = READ.buffer;
// One write request serves every write that completes at once (libuv holds a request only when it queues).
let writeReq = new WriteWrap();
const ignore = (): void => {};
function spareReq(handle: Handle): Req {
  if (streamBaseState[kLastWriteWasAsync] !== 0) writeReq = new WriteWrap();
  writeReq.oncomplete = ignore;
  writeReq.handle = handle;
  return writeReq;
}

function onRead(this: Handle): void {
  const n = streamBaseState[kReadBytesOrError];
  if (n > 0) this.owner.onData(n);
  else this.close();
}

function connect(peer: Peer): Handle {
  const handle = new TCP(constants.SOCKET);
  handle.owner = peer;
  handle.onread = onRead;
  handle.useUserBuffer(READ);
  const req = new TCPConnectWrap();
  req.oncomplete = () => {
    handle.setNoDelay(true);
    handle.readStart();
    peer.onConnect();
  };
  handle.connect(req, '127.0.0.1', backendPorts[nextBackend++ % backendPorts.length]);
  return handle;
}

function write(handle: Handle, data: Uint8Array): void {
  handle.writeBuffer(spareReq(handle), data);
}

// Client frames go to the backend as binary, masked with a zero key (valid, and the payload is left
// as is): the first byte and the key are written once, bytes 2-5 stay zero.
const FRAME = Buffer.alloc(6 + 125);
FRAME[0] = 0x82;
const u8 = (ab: ArrayBuffer): Uint8Array => new Uint8Array(ab);

class Tunnel implements Peer {
  handle: Handle;
  ws: WebSocket<{ tunnel: Tunnel }> | null = null;
  constructor(
    private res: HttpResponse | null,
    private head: string,
    private key: string,
    private protocol: string,
    private extensions: string,
    private context: unknown,
  ) {
    this.handle = connect(this);
  }
  onConnect(): void {
    this.handle.writeUtf8String(spareReq(this.handle), this.head);
  }
  onData(length: number): void {
    if (this.ws) {
      // One read is one unmasked frame with a payload under 126 bytes (the bench's 64-byte messages).
      if ((READ[0] & 0x0f) === 0x8) this.ws.end(1000);
      else this.ws.send(new Uint8Array(READ_AB, READ.byteOffset + 2, length - 2), true);
    } else if (this.res) {
      // The backend's 101, unread.
      const res = this.res;
      this.res = null;
      this.ws = upgradeLater(res, { tunnel: this }, this.key, this.protocol, this.extensions, this.context as never);
      if (!this.ws) this.handle.close();
    }
  }
  fromClient(message: ArrayBuffer): void {
    const length = message.byteLength; // under 126 (see onData)
    FRAME[1] = 0x80 | length;
    FRAME.set(u8(message), 6);
    write(this.handle, FRAME.subarray(0, 6 + length));
  }
}

/** One keep-alive backend connection; a response is taken as whole in one read. */
class Upstream implements Peer {
  handle: Handle;
  res: HttpResponse | null = null;
  aborted = false;
  /** onAborted's handler, made once per connection rather than once per request. */
  readonly abort = (): void => {
    this.aborted = true;
  };
  constructor(private firstHead: string) {
    this.handle = connect(this);
  }
  onConnect(): void {
    this.send(this.firstHead);
  }
  send(head: string): void {
    this.handle.writeUtf8String(spareReq(this.handle), head);
  }
  onData(length: number): void {
    const res = this.res;
    const aborted = this.aborted;
    this.res = null;
    idle.push(this);
    if (!res || aborted) return;
    const headEnd = READ.indexOf('\r\n\r\n', 0, 'latin1');
    const status = READ.toString('latin1', 9, READ.indexOf('\r\n', 0, 'latin1'));
    reply = { res, status, body: new Uint8Array(READ_AB, READ.byteOffset + headEnd + 4, length - headEnd - 4) };
    res.cork(respond);
  }
}
// No closure per response: cork() calls this for the response being sent.
let reply: { res: HttpResponse; status: string; body: Uint8Array } | null = null;
function respond(): void {
  reply!.res.writeStatus(reply!.status).end(reply!.body);
  reply = null;
}
const idle: Upstream[] = [];

// No closure per request: the header visitor appends to this.
let head = '';
function addHeader(name: string, value: string): void {
  head += `${name}: ${value}\r\n`;
}

/** The request as the backend gets it: the client's header lines, then X-Forwarded-For. */
function requestHead(res: HttpResponse, req: HttpRequest): string {
  head = `${req.getCaseSensitiveMethod()} ${req.getUrl()} HTTP/1.1\r\n`;
  forEachHeader(req, addHeader);
  const a = new Uint8Array(res.getRemoteAddress());
  const o = a.length - 4; // IPv4, or IPv4-mapped IPv6: the last four bytes
  return `${head}X-Forwarded-For: ${a[o]}.${a[o + 1]}.${a[o + 2]}.${a[o + 3]}\r\n\r\n`;
}

uws
  .App()
  .ws<{ tunnel: Tunnel }>('/*', {
    idleTimeout: 0,
    maxPayloadLength: 64 * 1024,
    upgrade: (res, req, context) => {
      // The client's own headers and key go to the backend as they came, with X-Forwarded-For.
      const tunnel = new Tunnel(res, requestHead(res, req), req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
      res.onAborted(() => tunnel.handle.close());
    },
    open: recordOpened,
    message: (ws, message) => ws.getUserData().tunnel.fromClient(message),
    close: (ws) => ws.getUserData().tunnel.handle.close(),
  })
  .any('/*', (res, req) => {
    const head = requestHead(res, req);
    const upstream = idle.pop();
    const target = upstream ?? new Upstream(head);
    target.res = res;
    target.aborted = false;
    res.onAborted(target.abort);
    if (upstream) upstream.send(head);
  })
  .listen('127.0.0.1', port, (socket) => {
    if (!socket) {
      process.stderr.write(`floor-proxy: cannot listen on 127.0.0.1:${port}\n`);
      process.exit(1);
    }
    process.stdout.write(`listening ${listenSocketPort(socket)}\n`);
  });
