// One client <-> backend WebSocket tunnel: messages relayed both ways with their type, close codes
// and reasons carried end to end, buffers bounded in both directions, a dead backend detected.
//
// Hot path (per message): fromClient() and onBackendData()/onMessage(). They allocate only the
// outgoing frame, create no closures or promises, and log nothing.
import type { AccessEntry, TunnelTraffic } from '../access-log';
import { CLOSE_HANDSHAKE_MS } from '../close-spread';
import { backendFramingEnding, isLocalResourceError, isSendableCloseCode, TunnelEndings, type TunnelEnding } from '../errors';
import { backendFailed } from '../health/passive-signals';
import { counters, countClose, type CloseSide } from '../stats/counters';
import type { Backend } from '../upstream/backend';
import { oldBuild, type WebSocket } from '../uws';
import { assemblyBudget, FrameReader, Opcode, type FrameSink } from './frame-reader';
import { encodeClose, encodeFrame, utf8CutPoint } from './frame-writer';
import { deadlineList, type Deadline, type Expiring } from './deadlines';
import type { BackendConnection, ConnectionTarget } from './backend-connection';

export interface TunnelSettings {
  /** The client may have negotiated permessage-deflate: messages to it are offered for compression. */
  readonly compression: boolean;
  readonly maxPayload: number;
  readonly backendIdleTimeout: number;
  readonly clientBufferLimit: number;
  readonly backendBufferLimit: number;
}

/** What uWS keeps for each client socket. */
export interface ClientData {
  tunnel: Tunnel;
}

export interface TunnelOwner {
  /** Both sides are closed; called once. */
  onTunnelClosed(tunnel: Tunnel): void;
}

/**
 * Backend idle timeouts are checked by one sweep over a worker's tunnels instead of a timer per
 * socket: net.Socket#setTimeout re-arms a timer on every read and write and keeps a Timeout object
 * per tunnel, where a sweep costs one store per read (bench/README.md, profiling notes).
 */
let coarseNow = Date.now();

/** Runs checkBackendIdle on every tunnel; the listener calls it every IDLE_SWEEP_MS or so. */
export function sweepIdleBackends(tunnels: Iterable<Tunnel>): void {
  coarseNow = Date.now();
  for (const t of tunnels) t.checkBackendIdle(coarseNow);
}

/** How often the sweep runs for a given smallest backendIdleTimeout: a quarter of its half, 100 ms to 1 s. */
export function idleSweepInterval(smallestTimeoutMs: number): number {
  return Math.min(1000, Math.max(100, Math.floor(smallestTimeoutMs / 8)));
}

/** How long the backend gets to answer our close frame before its socket is destroyed. */
const CLOSE_TIMEOUT_MS = CLOSE_HANDSHAKE_MS;
const closeDeadlines = deadlineList(CLOSE_TIMEOUT_MS);

/** The reason uWS gives (with code 1006) when it closes a client that stopped answering its pings. */
const UWS_IDLE_REASON = 'WebSocket timed out from inactivity';
/** The reason uWS gives (with code 1006) when it cuts a client whose message passed maxPayloadLength (listener.ts). */
const UWS_TOO_BIG_REASON = 'Received too big message';

// The backend read being relayed inside a uWS cork; the cork callback is one function for all.
const EMPTY = Buffer.alloc(0);
let relayTunnel: Tunnel | null = null;
let relayBuffer: Buffer = EMPTY;
let relayLength = 0;
function relayCorked(): void {
  relayTunnel!.reader.push(relayBuffer, 0, relayLength);
}

/** The read is exactly one unmasked frame with a 7- or 16-bit length, starting at a frame boundary. */
function isOneFrame(buf: Buffer, length: number, reader: FrameReader): boolean {
  if (length < 2 || !reader.idle) return false;
  const len7 = buf[1];
  if (len7 < 126) return length === 2 + len7;
  return len7 === 126 && length >= 4 && length === 4 + ((buf[2] << 8) | buf[3]);
}

const enum State {
  /** Backend upgraded, client 101 being sent. */
  Opening,
  Open,
  /** A close frame went to, or came from, the backend. */
  Closing,
}

export class Tunnel implements FrameSink, ConnectionTarget, Expiring, TunnelTraffic {
  private ws: WebSocket<ClientData> | null = null;
  private state = State.Opening;
  private clientClosed = false;
  private clientEndedByUs = false;
  private backendClosed = false;
  private finished = false;
  private paused = false;
  private awaitingPong = false;
  /**
   * The pong for the backend's latest ping, not written yet: RFC 6455 5.5.3 lets one pong answer
   * every ping before it, so a backend that pings without reading costs one pong, not one per ping.
   */
  private pongDue: Uint8Array | null = null;
  private closeDeadline: Deadline | null = null;
  /** When the backend last sent anything, on the coarse clock of sweepIdleBackends(). */
  private lastHeard = coarseNow;
  /** Who started the close, and with which code: counted once when the tunnel finishes. */
  private closedBy: CloseSide | undefined;
  private closeCode = 0;
  readonly reader: FrameReader;
  /**
   * send()'s compress flag. The old build (@rjweb/uws) has a fast path for a message of 16 KiB or
   * more sent uncompressed with nothing buffered that corrupts the stream once the kernel takes only
   * part of a write; asking for compression skips it, and a socket that did not negotiate
   * permessage-deflate gets the frame uncompressed anyway. The current build has no such defect, and
   * there the fast path saves a copy of each large message (docs/design.md, "uWebSockets.js").
   */
  private readonly compress: boolean;
  /** For the access log line when the tunnel ends; null when the access log is off. */
  access: (AccessEntry & { pool: string }) | null = null;
  /** The client IP it counts against (client-limits.ts), released when it ends. */
  clientIp = '';
  messagesToBackend = 0;
  bytesToBackend = 0;
  messagesToClient = 0;
  bytesToClient = 0;

  constructor(
    readonly socket: BackendConnection,
    readonly backend: Backend,
    private readonly settings: TunnelSettings,
    private readonly owner: TunnelOwner,
    private leftover: Buffer | null,
  ) {
    this.reader = new FrameReader(this, settings.maxPayload, false, assemblyBudget);
    this.compress = settings.compression || oldBuild;
    socket.target = this; // a connection error ends in onBackendClosed; its cause is not the client's business
  }

  /** uWS upgraded the client side. False when it did not open it, or closed it already (see upgradeLater). */
  attach(ws: WebSocket<ClientData> | null): boolean {
    const opened = ws !== null && !this.clientClosed;
    if (!opened) {
      if (!this.clientClosed) this.onClientClose(1006, new ArrayBuffer(0));
    } else {
      this.ws = ws;
      this.state = State.Open;
      this.backend.tunnelsOpened++;
      if (this.leftover) {
        const first = this.leftover;
        this.leftover = null;
        this.onBackendData(first, first.length);
      }
    }
    // The backend closed between its 101 and the tunnel taking over: nobody was told then.
    if (this.socket.closed && !this.backendClosed) this.onBackendClosed();
    return opened;
  }

  // ---- client -> backend ----

  fromClient(message: ArrayBuffer, isBinary: boolean): void {
    if (this.state !== State.Open) return;
    const size = message.byteLength; // a builtin call, not a field load
    if (size > this.settings.maxPayload) return this.end(TunnelEndings.clientTooBig);
    // Checked before writing, so one message of any allowed size always goes out: what waits for
    // the backend (this turn's batch included) stays below backendBufferLimit + maxPayload.
    if (this.socket.unsentBytes > this.settings.backendBufferLimit) return this.end(TunnelEndings.backendSlow);
    this.socket.write(encodeFrame(isBinary ? Opcode.binary : Opcode.text, new Uint8Array(message)));
    counters.messagesToBackend++;
    counters.bytesToBackend += size;
    this.messagesToBackend++;
    this.bytesToBackend += size;
  }

  /** uWS drained the client's send buffer. */
  onClientDrain(): void {
    if (this.paused && this.ws !== null && this.ws.getBufferedAmount() <= this.settings.clientBufferLimit / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** uWS's close handler: the client closed, vanished, or we ended it. */
  onClientClose(code: number, message: ArrayBuffer): void {
    this.ws = null;
    this.clientClosed = true;
    if (!this.clientEndedByUs) {
      const reason = Buffer.from(message).toString('utf8');
      // uWS's own closes (idle, far too big) are the balancer's; the first close decides the side counted.
      if (code === 1006 && reason === UWS_IDLE_REASON) {
        this.noteClose('balancer', code);
        this.end(TunnelEndings.clientIdle);
      } else if (code === 1006 && reason.startsWith(UWS_TOO_BIG_REASON)) {
        this.noteClose('balancer', code);
        this.end(TunnelEndings.clientTooBigCut);
      } else {
        this.noteClose('client', code);
        if (code === 1006 || (!isSendableCloseCode(code) && code !== 1005)) this.end(TunnelEndings.clientLost);
        else this.closeBackend(code, reason); // relayed as the client sent it
      }
    }
    this.maybeFinished();
  }

  // ---- backend -> client ----

  onBackendData(buf: Buffer, length: number): void {
    this.awaitingPong = false;
    this.lastHeard = coarseNow;
    if (this.state === State.Opening) {
      // Bytes before the client side is open: keep a copy (rare; the 101 is usually alone).
      const copy = Buffer.from(buf.subarray(0, length));
      this.leftover = this.leftover ? Buffer.concat([this.leftover, copy]) : copy;
      return;
    }
    if (this.ws === null || isOneFrame(buf, length, this.reader)) {
      // One frame means at most one send to the client: no cork needed, and no C++ -> JS hop for it.
      // (Client gone: still read the backend's close frame.)
      this.reader.push(buf, 0, length);
    } else {
      // eslint-disable-next-line @typescript-eslint/no-this-alias -- handed to the shared cork callback, cleared below
      relayTunnel = this;
      relayBuffer = buf;
      relayLength = length;
      this.ws.cork(relayCorked);
      relayTunnel = null;
      relayBuffer = EMPTY;
    }
    if (this.pongDue !== null) this.sendPong();
  }

  onMessage(data: Uint8Array, isBinary: boolean): void {
    const ws = this.ws;
    if (ws === null || this.clientEndedByUs) return;
    counters.messagesToClient++;
    counters.bytesToClient += data.length;
    this.messagesToClient++;
    this.bytesToClient += data.length;
    const status = ws.send(data, isBinary, this.compress);
    if (status === 1) return;
    if (status === 2) {
      // Dropped past maxBackpressure: cannot happen while we pause at clientBufferLimit, but never lose data silently.
      this.end(TunnelEndings.clientSlow);
    } else if (!this.paused && ws.getBufferedAmount() > this.settings.clientBufferLimit) {
      this.paused = true;
      counters.backendReadsPaused++;
      this.socket.pause();
    }
  }

  onPing(data: Uint8Array): void {
    if (this.state === State.Open) this.pongDue = encodeFrame(Opcode.pong, data); // written after this read
  }

  /**
   * Once per read that carried pings. While libuv still holds bytes for the backend (it is not
   * reading fast enough), the pong waits here, as one frame however many pings come, until libuv has
   * written everything (onBackendDrain): a backend that pings without reading costs one pong, where
   * queueing one per ping grew the worker without bound. A pong may so wait for bytes queued after
   * its ping too; only a backend that stays behind that long is kept waiting.
   */
  private sendPong(): void {
    if (this.socket.writeQueueSize > 0 || this.state !== State.Open) return;
    const pong = this.pongDue!;
    this.pongDue = null;
    this.socket.write(pong);
  }

  /** libuv wrote everything it held for the backend. */
  onBackendDrain(): void {
    if (this.pongDue !== null) this.sendPong();
  }

  onPong(_data: Uint8Array): void {
    // awaitingPong was already cleared by the read that carried it
  }

  onClose(code: number, reason: string): void {
    if (this.state === State.Open) {
      // Backend-initiated close: answer it, then pass code and reason on to the client.
      this.noteClose('backend', code);
      this.state = State.Closing;
      this.socket.end(encodeClose(code, reason));
      this.armCloseTimer();
      this.endClient(code, reason);
    } else {
      this.socket.end(); // the backend answered our close; the close timer bounds its TCP close
    }
  }

  onProtocolError(closeCode: number, reason: string): void {
    const ending = backendFramingEnding(closeCode, reason);
    // Too big is a limit of ours, not a fault of the backend (the budget counts its own refusals).
    if (ending.counter === undefined) backendFailed(this.backend);
    this.end(ending, !this.reader.overBudget);
  }

  /** Pings a backend silent for half of backendIdleTimeout; cuts it off when the ping got no answer. */
  checkBackendIdle(now: number): void {
    const half = this.settings.backendIdleTimeout / 2;
    if (half === 0 || this.state !== State.Open || now - this.lastHeard < half) return;
    this.lastHeard = now;
    if (this.awaitingPong) {
      backendFailed(this.backend);
      this.end(TunnelEndings.backendIdle);
      this.socket.destroy();
      return;
    }
    this.awaitingPong = true;
    this.socket.write(encodeFrame(Opcode.ping, new Uint8Array(0)));
  }

  onBackendClosed(error?: string): void {
    this.backendClosed = true;
    this.reader.dispose(); // nothing more will come: what it was assembling goes back to the budget
    if (this.closeDeadline !== null) closeDeadlines.cancel(this.closeDeadline);
    if (this.state !== State.Closing) {
      // Lost without a close frame: an abnormal close, which counts against the backend (outlier
      // detection), unless a write failed for want of local buffers.
      if (this.state === State.Open && !isLocalResourceError(error)) backendFailed(this.backend);
      this.noteClose('backend', 1006);
      this.end(TunnelEndings.backendLost);
    }
    this.state = State.Closing;
    this.maybeFinished();
  }

  // ---- shutting down ----

  /** Its backend left the pool and its drain time is over: both sides hear 1001. */
  removeBackend(): void {
    this.end(TunnelEndings.backendRemoved);
  }

  /** Drain: tell both sides the balancer is going away. */
  shutdown(): void {
    this.end(TunnelEndings.shutdown);
  }

  /** Ends the tunnel as errors.ts's table says: its count (unless `count` is false), the client's close, then the backend's. */
  private end(ending: TunnelEnding, count = true): void {
    if (count && ending.counter !== undefined) counters[ending.counter]++;
    if (ending.toClient !== undefined) this.endClient(ending.toClient, ending.clientReason ?? '');
    if (ending.toBackend !== undefined) this.closeBackend(ending.toBackend, ending.backendReason ?? '');
  }

  /** Sends a close frame to the backend and gives it CLOSE_TIMEOUT_MS to finish the handshake. */
  private closeBackend(code: number, reason: string): void {
    if (this.state === State.Closing || this.backendClosed) return;
    this.noteClose('balancer', code);
    this.state = State.Closing;
    this.socket.write(encodeClose(code, reason));
    this.armCloseTimer();
  }

  /** A backend that never finishes the close handshake (or never closes TCP) is cut off. */
  private armCloseTimer(): void {
    this.closeDeadline ??= closeDeadlines.add(this);
  }

  /** The close timer ran out. */
  onDeadline(): void {
    this.socket.destroy();
  }

  private endClient(code: number, reason: string): void {
    if (this.clientClosed || this.clientEndedByUs) return;
    this.noteClose('balancer', code);
    this.clientEndedByUs = true;
    const ws = this.ws;
    if (ws === null) return;
    const text = Buffer.from(reason, 'utf8');
    const short = text.length > 123 ? text.subarray(0, utf8CutPoint(text, 123)) : text;
    if (code === 1005) ws.end();
    else ws.end(code, short); // calls onClientClose synchronously
  }

  /** Who closed first (the balancer when neither side did: a lost connection it noticed). */
  get closeSide(): CloseSide {
    return this.closedBy ?? 'balancer';
  }

  /** The close code of the first close (1006: connection lost). */
  get firstCloseCode(): number {
    return this.closeCode;
  }

  /** The first close decides the side and code counted for this tunnel. */
  private noteClose(side: CloseSide, code: number): void {
    if (this.closedBy !== undefined) return;
    this.closedBy = side;
    this.closeCode = code;
  }

  private maybeFinished(): void {
    if (this.clientClosed && this.backendClosed && !this.finished) {
      this.finished = true;
      countClose(this.closeSide, this.closeCode);
      this.owner.onTunnelClosed(this);
    }
  }
}
