// The backend side of a tunnel: a plain net.Socket speaking RFC 6455 as a client.
//
// Why not the `ws` package here: measured on this machine (shared/ANCHORS.md), a `ws` client on the
// backend hop costs ~1.7x NGINX's CPU per relayed message and ~50 KB per tunnel; a minimal client on
// net.Socket costs ~1.4x and 15-20 KB. Two things make the difference and live in this file:
//  - reads land in one static buffer shared by every backend socket of the worker (net's `onread`),
//    so an idle tunnel holds no read buffer and a read allocates nothing;
//  - writes are corked until the end of the event-loop turn, so a burst of messages becomes one writev.
import { connect, type Socket } from 'node:net';
import type { Backend } from '../upstream/backend';
import { buildUpgradeRequest, checkSwitchingProtocols, newKey, parseResponseHead, type ResponseHead } from './handshake';

/** Whoever currently consumes a backend socket's bytes: the handshake, then the tunnel. */
export interface ReadTarget {
  /** `buf[0..length)` is valid only during the call. */
  onBackendData(buf: Buffer, length: number): void;
}

const kTarget = Symbol('switchyard.readTarget');
type BackendSocket = Socket & { [kTarget]?: ReadTarget };

// One read buffer for the whole worker: reads are delivered one at a time, and every consumer
// either finishes with the bytes inside the callback or copies them.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function onRead(this: BackendSocket, length: number, buf: Buffer): boolean {
  this[kTarget]?.onBackendData(buf, length);
  return true;
}

export function setReadTarget(socket: Socket, target: ReadTarget): void {
  (socket as BackendSocket)[kTarget] = target;
}

// Writes are batched per event-loop turn: frames for a socket queue here, and the check phase
// (after uWS has delivered everything it polled) hands each socket its frames as one write. Why not
// socket.cork()/uncork(): with one frame per socket per turn (the chat case) cork, uncork and the
// stream's writev bookkeeping cost more than the syscall they save; a plain array and one write() of
// one Buffer is the cheapest path through net.Socket (bench/README.md has the numbers).
const kPending = Symbol('switchyard.pending');
type QueuedSocket = Socket & { [kPending]?: Buffer | Buffer[] };
const queued: QueuedSocket[] = [];
let flushScheduled = false;
/** Below this many queued bytes, frames are copied into one Buffer; above, written as a corked burst. */
const COALESCE_LIMIT = 64 * 1024;

function flushSocket(s: QueuedSocket): void {
  const pending = s[kPending];
  if (pending === undefined) return;
  s[kPending] = undefined;
  if (s.destroyed) return;
  if (!Array.isArray(pending)) {
    s.write(pending);
    return;
  }
  let total = 0;
  for (let i = 0; i < pending.length; i++) total += pending[i].length;
  if (total <= COALESCE_LIMIT) {
    s.write(Buffer.concat(pending, total));
    return;
  }
  s.cork();
  for (let i = 0; i < pending.length; i++) s.write(pending[i]);
  s.uncork();
}

function flushQueued(): void {
  flushScheduled = false;
  for (let i = 0; i < queued.length; i++) flushSocket(queued[i]);
  queued.length = 0;
}

/** Queues `data` (which must not change afterwards) for the socket's write at the end of this turn. */
export function writeBatched(socket: Socket, data: Buffer): void {
  const s = socket as QueuedSocket;
  const pending = s[kPending];
  if (pending === undefined) {
    s[kPending] = data;
    queued.push(s);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushQueued);
    }
  } else if (Array.isArray(pending)) pending.push(data);
  else s[kPending] = [pending, data];
}

/** Ends the socket after whatever this turn queued for it, with `data` as the last bytes. */
export function endAfterQueued(socket: Socket, data?: Buffer): void {
  flushSocket(socket);
  if (data) socket.end(data);
  else socket.end();
}

/** The backend accepted the upgrade. Frames that arrive before the tunnel takes the socket over are kept in `leftover`. */
export interface Upgraded {
  kind: 'upgraded';
  socket: Socket;
  protocol: string;
  /** Frames that arrived with the 101 (copied). */
  leftover: Buffer | null;
}

/** The backend answered the upgrade with an HTTP status instead of 101. */
export interface Refused {
  kind: 'refused';
  head: ResponseHead;
  body: Buffer;
}

export type ConnectFailure = 'refused' | 'timeout' | 'handshake';

/** The backend could not be used; `reason` says how, for the retry decision and the log. */
export class BackendConnectError extends Error {
  constructor(
    readonly reason: ConnectFailure,
    message: string,
  ) {
    super(message);
  }
}

const MAX_REFUSAL_BODY = 64 * 1024;

/**
 * Connects to `backend` and asks it to upgrade `pathAndQuery`. `timeoutMs` bounds the TCP connect
 * and the wait for the answer together (NGINX's proxy_connect_timeout plus the header read).
 */
export function openBackendSocket(
  backend: Backend,
  pathAndQuery: string,
  headers: readonly (readonly [string, string])[],
  offeredProtocols: string,
  timeoutMs: number,
): Promise<Upgraded | Refused> {
  return new Promise((resolve, reject) => {
    const key = newKey();
    const socket: BackendSocket = connect({ host: backend.host, port: backend.port, noDelay: true, onread: { buffer: READ_BUFFER, callback: onRead } });
    let head: ResponseHead | null = null;
    let received: Buffer = Buffer.alloc(0);
    let done = false;
    let connected = false;

    const finish = (err: BackendConnectError | null, value?: Upgraded | Refused): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(value!);
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      const reason: ConnectFailure = connected ? 'handshake' : 'refused';
      finish(new BackendConnectError(reason, `${backend.name}: ${err.code ?? err.message}`));
    };
    const onClose = (): void => {
      if (head && head.status !== 101) return void finish(null, { kind: 'refused', head, body: received.subarray(head.size) });
      finish(new BackendConnectError('handshake', `${backend.name}: closed the connection before answering the upgrade`));
    };
    const timer = setTimeout(() => {
      finish(new BackendConnectError('timeout', `${backend.name}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);

    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('connect', () => {
      connected = true;
      socket.write(buildUpgradeRequest(pathAndQuery, key, headers));
    });
    let upgraded: Upgraded | null = null;
    setReadTarget(socket, {
      onBackendData(buf, length) {
        if (upgraded) {
          // Frames after the 101, before the tunnel has taken the socket over: keep them for it.
          const copy = Buffer.from(buf.subarray(0, length));
          upgraded.leftover = upgraded.leftover ? Buffer.concat([upgraded.leftover, copy]) : copy;
          return;
        }
        if (done) return;
        received = Buffer.concat([received, buf.subarray(0, length)]);
        try {
          head ??= parseResponseHead(received);
        } catch (err) {
          return finish(new BackendConnectError('handshake', `${backend.name}: ${(err as Error).message}`));
        }
        if (head === null) return;
        if (head.status === 101) {
          let protocol: string;
          try {
            protocol = checkSwitchingProtocols(head, key, offeredProtocols);
          } catch (err) {
            return finish(new BackendConnectError('handshake', `${backend.name}: ${(err as Error).message}`));
          }
          // The socket keeps reading (pausing and resuming it cost two epoll_ctl calls per upgrade).
          const leftover = received.length > head.size ? received.subarray(head.size) : null;
          upgraded = { kind: 'upgraded', socket, protocol, leftover };
          return finish(null, upgraded);
        }
        // A refusal: take a small body if the backend says how long it is, then hand it on.
        const bodyLength = Number(head.headers.get('content-length') ?? '0');
        const have = received.length - head.size;
        if (!(bodyLength > 0 && bodyLength <= MAX_REFUSAL_BODY) || have >= bodyLength) {
          socket.destroy();
          finish(null, { kind: 'refused', head, body: received.subarray(head.size, head.size + Math.min(have, bodyLength)) });
        }
      },
    });
  });
}
