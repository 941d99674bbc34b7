// A backend TCP connection driven on Node's own TCP stream handle (the TCPWrap inside every
// net.Socket), without net.Socket around it.
//
// Why an internal API: a net.Socket is a Duplex with two stream states, and every read and write
// goes through that machinery (onStreamRead, kUpdateTimer, Writable's buffering and callbacks).
// A tunnel needs none of it: reads land in one shared buffer, writes are batched per turn, and the
// only flow-control figure needed is how much libuv still holds, which the handle reports itself
// (`writeQueueSize`). bench/README.md (profiling notes) has the cost before and after.
// The bindings are used exactly as lib/net.js and lib/internal/stream_base_commons.js use them in
// Node 20; process.binding() allows both ('tcp_wrap', 'stream_wrap') and warns (DEP0111) only
// under --pending-deprecation. A Node upgrade that changes them breaks test/integration/tunnel.
import { lookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** Whoever currently consumes the connection: the handshake, then the tunnel. */
export interface ConnectionTarget {
  /** `buf[0..length)` is valid only during the call. */
  onBackendData(buf: Buffer, length: number): void;
  /** The handle is closed (called once). `error`: the errno name that closed it, if one did. */
  onBackendClosed(error: string | undefined): void;
  onBackendConnected?(): void;
  /** A write libuv had to queue has completed and nothing is left queued. */
  onBackendDrain?(): void;
}

interface Req {
  oncomplete: (this: Req, status: number) => void;
  handle: TcpHandle;
  buffer?: Uint8Array | Uint8Array[];
}
interface TcpHandle {
  owner: TcpConnection;
  onread: (this: TcpHandle) => void;
  readonly writeQueueSize: number;
  connect(req: Req, address: string, port: number): number;
  connect6(req: Req, address: string, port: number): number;
  useUserBuffer(buf: Uint8Array): void;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: Req, data: Uint8Array): number;
  writeUtf8String(req: Req, data: string): number;
  writev(req: Req, chunks: Uint8Array[], allBuffers: boolean): number;
  shutdown(req: Req): number;
  setNoDelay(on: boolean): number;
  /** libuv closes the descriptor at once; without a callback Node makes no JS call when the handle is freed. */
  close(cb?: (this: TcpHandle) => void): void;
}
type ReqClass = new () => Req;
const binding = (name: string): unknown => (process as unknown as { binding(name: string): unknown }).binding(name);
const tcpWrap = binding('tcp_wrap') as { TCP: new (type: number) => TcpHandle; TCPConnectWrap: ReqClass; constants: { SOCKET: number } };
const streamWrap = binding('stream_wrap') as { WriteWrap: ReqClass; ShutdownWrap: ReqClass; streamBaseState: Int32Array; kReadBytesOrError: number; kLastWriteWasAsync: number };
const { TCP, TCPConnectWrap, constants } = tcpWrap;
const { WriteWrap, ShutdownWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = streamWrap;

const UV_EOF = -4095; // libuv's value on every platform
const UV_ENOTCONN = -107;

// One read buffer for the whole worker: reads are delivered one at a time, and every consumer
// either finishes with the bytes inside the callback or copies them.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function newHandle(owner: TcpConnection): TcpHandle {
  const handle = new TCP(constants.SOCKET);
  handle.owner = owner;
  handle.onread = onRead;
  handle.useUserBuffer(READ_BUFFER);
  return handle;
}

function onRead(this: TcpHandle): void {
  const conn = this.owner;
  const nread = streamBaseState[kReadBytesOrError];
  if (nread > 0) {
    if (!conn.destroyed) conn.target.onBackendData(READ_BUFFER, nread);
  } else if (nread === UV_EOF) conn.onEof();
  else if (nread < 0) conn.fail(nread);
}

function afterConnect(this: Req, status: number): void {
  this.handle.owner.onConnect(status);
}

function afterWrite(this: Req, status: number): void {
  this.buffer = undefined;
  const conn = this.handle.owner;
  conn.asyncWrites--;
  if (status < 0) conn.fail(status);
  else if (this.handle.writeQueueSize === 0 && !conn.destroyed) conn.target.onBackendDrain?.();
}

function afterShutdown(this: Req, _status: number): void {
  this.handle.owner.onShutdown();
}

// A write that completes at once leaves its request object untouched (StreamBase::Write only binds
// it when libuv queues the rest), so one spare serves every synchronous write.
let spareWrite: Req | null = null;
function writeReq(handle: TcpHandle): Req {
  const req = spareWrite ?? new WriteWrap();
  spareWrite = req;
  req.oncomplete = afterWrite;
  req.handle = handle;
  return req;
}

// Writes are batched per event-loop turn: data for a connection queues on it, and the check phase
// (after uWS has delivered everything it polled) writes each connection's queue with one syscall.
// Closed connections are reported to their targets in the same pass, after the writes: a close
// callback from the handle would be one more C++ -> JS call per connection (churn profile).
const queued: TcpConnection[] = [];
const closed: TcpConnection[] = [];
let flushScheduled = false;
function scheduleFlush(): void {
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushQueued);
  }
}
function flushQueued(): void {
  flushScheduled = false;
  for (let i = 0; i < queued.length; i++) queued[i].flush();
  queued.length = 0;
  // A target may destroy another connection while told: the loop picks it up too.
  for (let i = 0; i < closed.length; i++) closed[i].onClosed();
  closed.length = 0;
}

export class TcpConnection {
  /** No more reads or writes: destroy() was called or an error struck. */
  destroyed = false;
  /** The handle is closed and the target told. */
  closed = false;
  private connected = false;
  private ending = false;
  private shutdownIssued = false;
  private shutDown = false;
  private eof = false;
  private error: string | undefined;
  private pending: Uint8Array | Uint8Array[] | undefined;
  /** Bytes in `pending`. */
  private pendingBytes = 0;
  /** @internal Writes libuv queued and has not completed yet. */
  asyncWrites = 0;
  private fallback: { addresses: LookupAddress[]; next: number; port: number } | undefined;
  private handle: TcpHandle;

  constructor(public target: ConnectionTarget) {
    this.handle = newHandle(this);
  }

  /**
   * Connects; failures arrive as onBackendClosed(error). A host name's addresses are tried in turn,
   * as net.connect's autoSelectFamily would (`localhost` may give ::1 first to an IPv4-only backend).
   */
  connect(host: string, port: number): void {
    const family = isIP(host);
    if (family !== 0) return this.connectTo({ address: host, family }, port);
    lookup(host, { all: true }, (err, addresses) => {
      if (this.destroyed) return;
      if (err || addresses.length === 0) {
        this.error = err?.code ?? 'ENOTFOUND';
        return this.destroy();
      }
      this.fallback = addresses.length > 1 ? { addresses, next: 1, port } : undefined;
      this.connectTo(addresses[0], port);
    });
  }

  private connectTo(to: LookupAddress, port: number): void {
    if (this.destroyed) return;
    const req = new TCPConnectWrap();
    req.oncomplete = afterConnect;
    req.handle = this.handle;
    let err = to.family === 6 ? this.handle.connect6(req, to.address, port) : this.handle.connect(req, to.address, port);
    // Reading starts with the connect (libuv reports the connect first): epoll then learns of the
    // socket once for both directions, one epoll_ctl fewer than starting reads after it.
    if (err === 0) err = this.handle.readStart();
    if (err !== 0) this.fail(err);
  }

  /** @internal */
  onConnect(status: number): void {
    if (this.destroyed) return;
    const fallback = this.fallback;
    this.fallback = undefined;
    if (status < 0 && fallback !== undefined) {
      // A failed connect leaves the handle unusable: the next address gets a fresh one.
      const next = fallback.addresses[fallback.next++];
      if (fallback.next < fallback.addresses.length) this.fallback = fallback;
      this.handle.close();
      this.handle = newHandle(this);
      return this.connectTo(next, fallback.port);
    }
    if (status < 0) return this.fail(status);
    this.connected = true;
    this.handle.setNoDelay(true);
    this.target.onBackendConnected?.();
    if (this.pending !== undefined) this.flush();
  }

  /** Bytes libuv still holds for the kernel (what net.Socket#writableLength counted, minus this turn's batch). */
  get writeQueueSize(): number {
    // The handle's getter is a call into C++, and libuv holds nothing unless a write went async.
    return this.asyncWrites === 0 ? 0 : this.handle.writeQueueSize;
  }

  /**
   * Every byte written and not yet taken by the kernel: this turn's batch plus what libuv holds. A
   * client can deliver many messages in one turn, all of them batched before the first write.
   */
  get unsentBytes(): number {
    return this.pendingBytes + this.writeQueueSize;
  }

  /** Queues `data` (which must not change afterwards) for one write at the end of this turn. */
  write(data: Uint8Array): void {
    if (this.destroyed || this.ending) return;
    this.pendingBytes += data.byteLength;
    const pending = this.pending;
    if (pending === undefined) {
      this.pending = data;
      queued.push(this);
      scheduleFlush();
    } else if (Array.isArray(pending)) pending.push(data);
    else this.pending = [pending, data];
  }

  /** @internal Writes what this turn queued. */
  flush(): void {
    const pending = this.pending;
    if (pending === undefined || this.destroyed || !this.connected) return;
    this.pending = undefined;
    this.pendingBytes = 0;
    const req = writeReq(this.handle);
    const err = Array.isArray(pending) ? this.handle.writev(req, pending, true) : this.handle.writeBuffer(req, pending);
    if (err !== 0) return this.fail(err);
    if (streamBaseState[kLastWriteWasAsync] !== 0) {
      req.buffer = pending; // libuv holds pointers into it until afterWrite
      spareWrite = null;
      this.asyncWrites++;
    }
  }

  /**
   * Writes `text` (UTF-8) now, on a connected socket with nothing queued: the upgrade request, from
   * onBackendConnected, or a plain-HTTP request head on a kept-alive connection. Node copies a string
   * it cannot write at once, so no Buffer and no flush; otherwise it queues like write().
   */
  writeNow(text: string): void {
    if (this.destroyed || this.ending || !this.connected || this.pending !== undefined) return this.write(Buffer.from(text));
    const req = writeReq(this.handle);
    const err = this.handle.writeUtf8String(req, text);
    if (err !== 0) return this.fail(err);
    if (streamBaseState[kLastWriteWasAsync] !== 0) spareWrite = null;
  }

  /**
   * Ends the connection after what is queued, `data` last, and waits for the peer to close: RFC 6455
   * 5.5.1, after the close handshake the server closes first and the client SHOULD wait for it (the
   * caller bounds the wait). Without a shutdown() of our own, a close costs two syscalls fewer
   * (shutdown, and the epoll_ctl libuv makes after it), and TIME_WAIT stays with the backend.
   */
  end(data?: Uint8Array): void {
    if (this.destroyed || this.ending) return;
    if (data) this.write(data);
    this.ending = true;
    if (!this.connected) this.destroy();
  }

  /** Our FIN once libuv has written what is queued (the peer has sent its own). */
  private shutdownAfterWrites(): void {
    this.flush();
    if (this.destroyed) return;
    this.shutdownIssued = true;
    const req = new ShutdownWrap();
    req.oncomplete = afterShutdown;
    req.handle = this.handle;
    const err = this.handle.shutdown(req);
    if (err === 1 || err === UV_ENOTCONN) this.onShutdown();
    else if (err !== 0) this.fail(err);
  }

  /** @internal */
  onShutdown(): void {
    this.shutDown = true;
    if (this.eof) this.destroy();
  }

  /**
   * @internal The peer sent FIN: like net.Socket without allowHalfOpen, end our side too. With all
   * our bytes already with the kernel, close() sends our FIN itself: no shutdown() first.
   */
  onEof(): void {
    this.eof = true;
    if (this.shutDown || (this.pending === undefined && this.handle.writeQueueSize === 0)) this.destroy();
    else if (!this.shutdownIssued) {
      this.ending = true;
      this.shutdownAfterWrites();
    }
  }

  pause(): void {
    if (this.connected && !this.destroyed) this.handle.readStop();
  }

  resume(): void {
    if (this.connected && !this.destroyed) this.handle.readStart();
  }

  /** @internal An errno from libuv: the connection is over (the target hears it as the close's error). */
  fail(errno: number): void {
    if (this.destroyed) return; // a write cancelled by our own close
    this.error ??= getSystemErrorName(errno);
    this.destroy();
  }

  /** Closes at once, dropping anything unsent; the target hears onBackendClosed() later in this turn (or the next). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pending = undefined;
    this.pendingBytes = 0;
    this.handle.close();
    closed.push(this);
    scheduleFlush();
  }

  /** @internal */
  onClosed(): void {
    this.closed = true;
    this.target.onBackendClosed(this.error);
  }
}
