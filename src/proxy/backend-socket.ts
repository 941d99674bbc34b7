// The backend side of a tunnel: a TCP connection (tcp-connection.ts) speaking RFC 6455 as a client.
//
// Why not the `ws` package here: measured on this machine (shared/ANCHORS.md), a `ws` client on the
// backend hop costs ~1.7x NGINX's CPU per relayed message and ~50 KB per tunnel; a minimal client
// costs far less. What makes the difference lives in tcp-connection.ts: reads land in one buffer
// shared by every backend connection of the worker, and writes are batched per event-loop turn.
import type { Backend } from '../upstream/backend';
import { buildUpgradeRequest, checkSwitchingProtocols, newKey, parseResponseHead, type ResponseHead } from './handshake';
import { TcpConnection } from './tcp-connection';

/** The backend accepted the upgrade. Frames that arrive before the tunnel takes the socket over are kept in `leftover`. */
export interface Upgraded {
  kind: 'upgraded';
  socket: TcpConnection;
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
    let head: ResponseHead | null = null;
    let received: Buffer = Buffer.alloc(0);
    let done = false;
    let connected = false;
    let upgraded: Upgraded | null = null;

    const finish = (err: BackendConnectError | null, value?: Upgraded | Refused): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(value!);
    };
    const timer = setTimeout(() => {
      finish(new BackendConnectError('timeout', `${backend.name}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);

    const socket = new TcpConnection({
      onBackendConnected() {
        connected = true;
        socket.writeNow(buildUpgradeRequest(pathAndQuery, key, headers));
      },
      onBackendClosed(error) {
        if (error !== undefined) return finish(new BackendConnectError(connected ? 'handshake' : 'refused', `${backend.name}: ${error}`));
        if (head && head.status !== 101) return finish(null, { kind: 'refused', head, body: received.subarray(head.size) });
        finish(new BackendConnectError('handshake', `${backend.name}: closed the connection before answering the upgrade`));
      },
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
    socket.connect(backend.host, backend.port);
  });
}
