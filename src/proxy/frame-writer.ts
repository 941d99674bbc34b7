// RFC 6455 frame writer for the backend hop, client role: every frame is masked (section 5.3).
// Returns the bytes to write, never changed afterwards. Building header and masked payload into a
// buffer of ours is also the copy we need anyway, since uWS's message ArrayBuffer dies when its
// handler returns.
import { Buffer } from 'node:buffer'; // the global Buffer is a getter: a call on every use in hot code
import { randomFillSync } from 'node:crypto';
import { Opcode } from './frame-reader';

// Masking keys come from a pooled random buffer, refilled 2048 keys at a time (as ws does), and
// are read as 32-bit words: payloads are masked a word at a time.
const KEY_POOL = new Uint8Array(8192);
const KEY_WORDS = new Int32Array(KEY_POOL.buffer);
let keyIndex = KEY_WORDS.length;

function nextMaskKey(): number {
  if (keyIndex === KEY_WORDS.length) {
    randomFillSync(KEY_POOL);
    keyIndex = 0;
  }
  return KEY_WORDS[keyIndex++];
}

// Frames are built in pooled 8 KiB slabs, as Buffer.allocUnsafe does, but with each payload at a
// 4-byte boundary so masking is one Int32 XOR per word (a byte loop was ~2,000 instructions for a
// 64-byte chat message; bench/README.md). A slab is never reused: once full a new one is made and the
// old one lives on only as long as views into it do (libuv may hold one while a write is queued).
const SLAB_SIZE = 8192;
/** Larger frames get a buffer of their own. */
const SLAB_MAX_FRAME = SLAB_SIZE / 2;
let slab = newSlab();
let slabBytes = new Uint8Array(slab);
let slabWords = new Int32Array(slab);
let slabUsed = 0;
// Called through a constant: `bytes.set` was a generic property load (LoadIC) on every frame.
// eslint-disable-next-line @typescript-eslint/unbound-method -- always called with .call(bytes, ...)
const copyBytes = Uint8Array.prototype.set;

/** Uninitialised memory (every byte of a frame is written before it leaves): no 8 KiB zero-fill per slab. */
function newSlab(): ArrayBuffer {
  return Buffer.allocUnsafeSlow(SLAB_SIZE).buffer;
}

/** A masked frame carrying `payload`; `fin` false for all but the last fragment of a message. */
export function encodeFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const headerSize = 2 + lenBytes + 4;
  // The payload starts at `at` (4-aligned); the words masked may run up to 3 bytes past its end.
  let buffer: ArrayBuffer, bytes: Uint8Array, words: Int32Array, at: number;
  if (headerSize + len <= SLAB_MAX_FRAME) {
    at = (slabUsed + headerSize + 3) & ~3;
    if (at + len + 3 > SLAB_SIZE) {
      slab = newSlab();
      slabBytes = new Uint8Array(slab);
      slabWords = new Int32Array(slab);
      at = (headerSize + 3) & ~3;
    }
    slabUsed = (at + len + 3) & ~3;
    buffer = slab;
    bytes = slabBytes;
    words = slabWords;
  } else {
    at = (headerSize + 3) & ~3;
    buffer = Buffer.allocUnsafeSlow((at + len + 3) & ~3).buffer;
    bytes = new Uint8Array(buffer);
    words = new Int32Array(buffer);
  }
  const start = at - headerSize;
  bytes[start] = (fin ? 0x80 : 0) | opcode;
  if (lenBytes === 0) bytes[start + 1] = 0x80 | len;
  else if (lenBytes === 2) {
    bytes[start + 1] = 0x80 | 126;
    bytes[start + 2] = len >>> 8;
    bytes[start + 3] = len & 0xff;
  } else {
    bytes[start + 1] = 0x80 | 127;
    const high = Math.floor(len / 0x100000000);
    const low = len >>> 0;
    for (let i = 0; i < 4; i++) {
      bytes[start + 2 + i] = (high >>> (24 - 8 * i)) & 0xff;
      bytes[start + 6 + i] = (low >>> (24 - 8 * i)) & 0xff;
    }
  }
  // The key's bytes go out in memory order, and each payload word is XORed with the same word, so
  // byte i of the payload meets key byte i % 4 whatever the platform's endianness.
  const key = nextMaskKey();
  words[(at >>> 2) - 1] = key;
  copyBytes.call(bytes, payload, at);
  const endWord = (at + len + 3) >>> 2;
  for (let w = at >>> 2; w < endWord; w++) words[w] ^= key;
  return new Uint8Array(buffer, start, headerSize + len);
}

// encodeFrame copies (masks) the payload into the frame, so these can be reused: a close without a
// reason, the common case, then costs one Buffer instead of three (churn profile).
const NO_PAYLOAD = new Uint8Array(0);
const CODE_ONLY = new Uint8Array(2);

/** A close frame; code 1005 ("no status") sends an empty payload. Reasons are cut to the 123 bytes a control frame allows. */
export function encodeClose(code: number, reason = ''): Uint8Array {
  if (code === 1005) return encodeFrame(Opcode.close, NO_PAYLOAD);
  if (reason === '') {
    CODE_ONLY[0] = code >>> 8;
    CODE_ONLY[1] = code & 0xff;
    return encodeFrame(Opcode.close, CODE_ONLY);
  }
  const text = Buffer.from(reason, 'utf8');
  const cut = utf8CutPoint(text, 123);
  const body = Buffer.allocUnsafe(2 + cut);
  body.writeUInt16BE(code, 0);
  text.copy(body, 2, 0, cut);
  return encodeFrame(Opcode.close, body);
}

/** Largest length <= max that does not split a UTF-8 sequence. */
export function utf8CutPoint(text: Uint8Array, max: number): number {
  if (text.length <= max) return text.length;
  let cut = max;
  while (cut > 0 && (text[cut] & 0xc0) === 0x80) cut--;
  return cut;
}
