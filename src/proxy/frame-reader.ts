// RFC 6455 frame reader for the backend hop: bytes in, messages and control frames out.
// It knows nothing of sockets. The caller may reuse its buffer after push() returns, so complete
// frames are handed to the sink as views into that buffer (zero copy, valid only during the call)
// and only frames split across reads are copied. What those copies hold (messages being assembled)
// is counted against an AssemblyBudget the readers of a worker share.
import { Buffer, isUtf8 } from 'node:buffer';
import { CloseCodes, isSendableCloseCode } from '../errors';

export const Opcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

export interface FrameSink {
  /** A whole message; `data` is valid only during the call. */
  onMessage(data: Uint8Array, isBinary: boolean): void;
  onPing(data: Uint8Array): void;
  onPong(data: Uint8Array): void;
  /** The peer's close frame; code 1005 when it carried none. */
  onClose(code: number, reason: string): void;
  /** The peer broke the protocol; `closeCode` is what to answer (1002, 1007 or 1009). Nothing more is read. */
  onProtocolError(closeCode: number, reason: string): void;
}

/**
 * Bytes held for messages being assembled (frames split across reads, fragments kept), shared by the
 * readers that use it. A new assembly larger than SMALL_ASSEMBLY that would take `held` past
 * `limit` fails its reader with 1009; smaller ones always pass (a read is 64 KiB: chat's own
 * messages never wait on a budget).
 */
export class AssemblyBudget {
  held = 0;
  /** Assemblies refused for want of budget. */
  refused = 0;

  constructor(public limit: number) {}
}

/** The worker's budget (its messageAssemblyLimit), shared by all its tunnels. */
export const assemblyBudget = new AssemblyBudget(Infinity);

/** Assemblies up to this size are never refused by the budget (still counted in it). */
export const SMALL_ASSEMBLY = 64 * 1024;
const NO_BUDGET = new AssemblyBudget(Infinity);

const EMPTY = new Uint8Array(0);
/** Shared, never written: the fragment list of every reader that is not inside a fragmented message. */
const NO_FRAGMENTS: Buffer[] = [];

// Payload views are made here rather than with buf.subarray(): Buffer#subarray reads length, buffer
// and byteOffset through getters its (megamorphic) call sites never inline, and `buffer` is a C++
// getter wherever it is read. The tunnel always passes the same read buffer, so its ArrayBuffer is
// looked up once (bench/README.md, chat profiling).
// The payload of a small frame read on its own always sits at offset 2: those views are made once
// per length and reused (they are valid only during the sink's call either way).
let lastBuf: Uint8Array | null = null;
let lastArrayBuffer: ArrayBufferLike = EMPTY.buffer;
let lastByteOffset = 0;
const smallViews = new Array<Uint8Array | undefined>(126).fill(undefined);
function viewOf(buf: Uint8Array, pos: number, len: number): Uint8Array {
  if (buf !== lastBuf) {
    lastBuf = buf;
    lastArrayBuffer = buf.buffer;
    lastByteOffset = buf.byteOffset;
    smallViews.fill(undefined);
  }
  if (pos !== 2 || len > 125) return new Uint8Array(lastArrayBuffer, lastByteOffset + pos, len);
  return (smallViews[len] ??= new Uint8Array(lastArrayBuffer, lastByteOffset + 2, len));
}

export class FrameReader {
  // Header being assembled when a read ends inside it (at most 14 bytes); allocated on first need,
  // since most tunnels never see a header split across reads and idle tunnels should cost little.
  private head: Buffer | null = null;
  private headLen = 0;
  // Payload being assembled when a read ends inside it.
  private payload: Buffer | null = null;
  private payloadFilled = 0;
  private opcode = 0;
  private fin = false;
  // Fragments of a message sent in several frames.
  private fragments: Buffer[] = NO_FRAGMENTS;
  private fragmentsLength = 0;
  private fragmentedOpcode = 0;
  private failed = false;
  // The header being handled: payload length and masking key.
  private length = 0;
  private mask = 0;
  /** Bytes this reader holds against the budget: the payload being filled, the fragments kept. */
  private payloadHeld = 0;
  private fragmentsHeld = 0;
  /** The last failure was a refusal for want of budget (for the caller's count). */
  overBudget = false;

  constructor(
    private readonly sink: FrameSink,
    private readonly maxPayload: number,
    /** Server frames must not be masked; a reader of client frames (tests, fuzzing) sets this to true. */
    private readonly expectMasked = false,
    private readonly budget: AssemblyBudget = NO_BUDGET,
  ) {}

  /** Between frames: nothing of a header or payload is waiting for more bytes. */
  get idle(): boolean {
    return this.payload === null && this.headLen === 0;
  }

  /** Feed bytes [start, end) of `buf`. */
  push(buf: Uint8Array, start = 0, end = buf.length): void {
    let pos = start;
    while (pos < end && !this.failed) {
      if (this.payload !== null) {
        const n = Math.min(end - pos, this.payload.length - this.payloadFilled);
        this.payload.set(buf.subarray(pos, pos + n), this.payloadFilled);
        this.payloadFilled += n;
        pos += n;
        if (this.payloadFilled === this.payload.length) {
          const data = this.payload;
          this.payload = null;
          this.frame(this.opcode, this.fin, data, true);
        }
        continue;
      }
      if (this.headLen === 0) {
        // Fast path: the whole header is in this buffer.
        const used = this.parseHeader(buf, pos, end);
        if (used === -1) return;
        if (used > 0) {
          pos = this.afterHeader(buf, pos + used, end);
          continue;
        }
      }
      // Slow path: collect header bytes across reads.
      const head = (this.head ??= Buffer.allocUnsafe(14));
      while (pos < end && this.headLen < 14) {
        head[this.headLen++] = buf[pos++]!;
        const used = this.parseHeader(head, 0, this.headLen);
        if (used === -1) return;
        if (used > 0) {
          this.headLen = 0;
          pos = this.afterHeader(buf, pos, end);
          break;
        }
      }
    }
  }

  /** Parses a header at buf[pos..end); returns its size, 0 when incomplete, -1 on protocol error. */
  private parseHeader(buf: Uint8Array, pos: number, end: number): number {
    if (end - pos < 2) return 0;
    const b0 = buf[pos];
    const b1 = buf[pos + 1];
    const masked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    let size = 2;
    if (len === 126) size = 4;
    else if (len === 127) size = 10;
    if (masked) size += 4;
    if (end - pos < size) return 0;
    if ((b0 & 0x70) !== 0) return this.fail(CloseCodes.protocolError, 'reserved bits set without a negotiated extension');
    if (masked !== this.expectMasked) return this.fail(CloseCodes.protocolError, masked ? 'masked frame from server' : 'unmasked frame from client');
    if (len === 126) len = (buf[pos + 2] << 8) | buf[pos + 3];
    else if (len === 127) {
      const high = ((buf[pos + 2] << 24) >>> 0) + (buf[pos + 3] << 16) + (buf[pos + 4] << 8) + buf[pos + 5];
      const low = ((buf[pos + 6] << 24) >>> 0) + (buf[pos + 7] << 16) + (buf[pos + 8] << 8) + buf[pos + 9];
      if (high > 0x1fffff) return this.fail(CloseCodes.messageTooBig, 'frame length out of range');
      len = high * 0x100000000 + low;
    }
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (opcode >= 0x8) {
      if (opcode > Opcode.pong) return this.fail(CloseCodes.protocolError, `unknown opcode ${opcode}`);
      if (!fin || len > 125) return this.fail(CloseCodes.protocolError, 'fragmented or oversized control frame');
    } else if (opcode === Opcode.continuation) {
      if (this.fragmentedOpcode === 0) return this.fail(CloseCodes.protocolError, 'continuation frame without a message');
      if (this.fragmentsLength + len > this.maxPayload) return this.fail(CloseCodes.messageTooBig, 'message larger than maxPayload');
    } else if (opcode === Opcode.text || opcode === Opcode.binary) {
      if (this.fragmentedOpcode !== 0) return this.fail(CloseCodes.protocolError, 'new message inside a fragmented one');
      if (len > this.maxPayload) return this.fail(CloseCodes.messageTooBig, 'message larger than maxPayload');
    } else {
      return this.fail(CloseCodes.protocolError, `unknown opcode ${opcode}`);
    }
    if (masked) {
      const m = pos + size - 4;
      this.mask = ((buf[m] << 24) | (buf[m + 1] << 16) | (buf[m + 2] << 8) | buf[m + 3]) >>> 0;
    }
    this.opcode = opcode;
    this.fin = fin;
    this.length = len;
    return size;
  }

  /** Header parsed; take the payload from buf[pos..end) or start collecting it. Returns the new position. */
  private afterHeader(buf: Uint8Array, pos: number, end: number): number {
    const len = this.length;
    if (end - pos >= len) {
      const view = len === 0 ? EMPTY : viewOf(buf, pos, len);
      this.frame(this.opcode, this.fin, view, false);
      return pos + len;
    }
    const data = this.hold(len, this.opcode >= 0x8 ? len : this.fragmentsLength + len);
    if (data === null) return end;
    this.payload = data;
    this.payloadHeld = len;
    this.payloadFilled = end - pos;
    this.payload.set(buf.subarray(pos, end), 0);
    return end;
  }

  /**
   * `len` bytes for a payload to assemble, counted against the budget; null (and the reader failed
   * with 1009) when the budget cannot spare them for a message of `messageSize` or memory is out.
   */
  private hold(len: number, messageSize: number): Buffer | null {
    const budget = this.budget;
    if (messageSize > SMALL_ASSEMBLY && budget.held + len > budget.limit) {
      budget.refused++;
      this.overBudget = true;
      this.fail(CloseCodes.messageTooBig, 'the balancer is assembling too many large messages: try again later');
      return null;
    }
    let data: Buffer;
    try {
      data = Buffer.allocUnsafe(len);
    } catch {
      this.fail(CloseCodes.messageTooBig, 'no memory to assemble this message');
      return null;
    }
    budget.held += len;
    return data;
  }

  /** The assembled payload was handled: its bytes go back to the budget. */
  private releasePayload(): void {
    this.budget.held -= this.payloadHeld;
    this.payloadHeld = 0;
  }

  /** A fragmented message was delivered (or dropped): its fragments' bytes go back to the budget. */
  private releaseFragments(): void {
    this.budget.held -= this.fragmentsHeld;
    this.fragmentsHeld = 0;
  }

  /** Gives back everything held (the tunnel ended); nothing more is read. */
  dispose(): void {
    this.failed = true;
    this.payload = null;
    this.fragments = NO_FRAGMENTS;
    this.releasePayload();
    this.releaseFragments();
  }

  /** One complete frame. `owned`: `data` is the payload this reader assembled (held against the budget), not a view into the caller's buffer. */
  private frame(opcode: number, fin: boolean, data: Uint8Array, owned: boolean): void {
    if (this.expectMasked) unmask(data, this.mask);
    if (opcode === Opcode.text || opcode === Opcode.binary) {
      if (fin) {
        this.message(data, opcode);
        if (owned) this.releasePayload();
        return;
      }
      this.fragmentedOpcode = opcode;
      this.keepFragment(data, owned);
      return;
    }
    if (opcode === Opcode.continuation) {
      if (!this.keepFragment(data, owned) || !fin) return;
      const whole = this.fragments.length === 1 ? this.fragments[0] : Buffer.concat(this.fragments, this.fragmentsLength);
      const op = this.fragmentedOpcode;
      this.fragments = NO_FRAGMENTS;
      this.fragmentsLength = 0;
      this.fragmentedOpcode = 0;
      this.message(whole, op);
      this.releaseFragments();
      return;
    }
    if (owned) this.releasePayload(); // a control frame: at most 125 bytes, handled within this call
    if (opcode === Opcode.ping) return this.sink.onPing(data);
    if (opcode === Opcode.pong) return this.sink.onPong(data);
    // close
    if (data.length === 0) return this.sink.onClose(1005, '');
    if (data.length === 1) return void this.fail(CloseCodes.protocolError, 'close frame with a 1-byte payload');
    const code = (data[0] << 8) | data[1];
    if (!isSendableCloseCode(code)) return void this.fail(CloseCodes.protocolError, `invalid close code ${code}`);
    const reason = data.subarray(2);
    if (!isUtf8(reason)) return void this.fail(1007, 'close reason is not UTF-8');
    this.failed = true; // nothing may follow a close frame
    this.sink.onClose(code, Buffer.from(reason.buffer, reason.byteOffset, reason.length).toString('utf8'));
  }

  /** Keeps a fragment: the assembled payload as it is, or a copy of a view (the caller's buffer is reused). False when the budget refused the copy. */
  private keepFragment(data: Uint8Array, owned: boolean): boolean {
    let kept: Buffer;
    if (owned) {
      kept = data as Buffer;
      this.fragmentsHeld += this.payloadHeld;
      this.payloadHeld = 0;
    } else {
      const copy = this.hold(data.length, this.fragmentsLength + data.length);
      if (copy === null) return false;
      copy.set(data);
      kept = copy;
      this.fragmentsHeld += data.length;
    }
    if (this.fragments === NO_FRAGMENTS) this.fragments = [];
    this.fragments.push(kept);
    this.fragmentsLength += data.length;
    return true;
  }

  private message(data: Uint8Array, opcode: number): void {
    if (opcode === Opcode.text && !isUtf8(data)) return void this.fail(1007, 'text message is not UTF-8');
    this.sink.onMessage(data, opcode === Opcode.binary);
  }

  private fail(closeCode: number, reason: string): -1 {
    this.dispose();
    this.sink.onProtocolError(closeCode, reason);
    return -1;
  }
}

/** XOR with a 32-bit mask, in place (RFC 6455 5.3). */
export function unmask(data: Uint8Array, mask: number): void {
  const m0 = mask >>> 24, m1 = (mask >>> 16) & 0xff, m2 = (mask >>> 8) & 0xff, m3 = mask & 0xff;
  const n = data.length;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    data[i] ^= m0;
    data[i + 1] ^= m1;
    data[i + 2] ^= m2;
    data[i + 3] ^= m3;
  }
  const ms = [m0, m1, m2, m3];
  for (let j = 0; i < n; i++, j++) data[i] ^= ms[j];
}
