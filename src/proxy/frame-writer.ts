// RFC 6455 frame writer for the backend hop, client role: every frame is masked (section 5.3).
// Pure: returns the bytes to write. Building header and masked payload into one fresh buffer is
// also the copy we need anyway, since uWS's message ArrayBuffer dies when its handler returns.
import { Buffer } from 'node:buffer'; // the global Buffer is a getter: a call on every use in hot code
import { randomFillSync } from 'node:crypto';
import { Opcode } from './frame-reader';

// Masking keys come from a pooled random buffer, refilled 2048 keys at a time (as ws does).
const KEY_POOL = Buffer.allocUnsafe(8192);
let keyOffset = KEY_POOL.length;

function nextMaskOffset(): number {
  if (keyOffset === KEY_POOL.length) {
    randomFillSync(KEY_POOL);
    keyOffset = 0;
  }
  const at = keyOffset;
  keyOffset += 4;
  return at;
}

/** A masked frame carrying `payload`; `fin` false for all but the last fragment of a message. */
export function encodeFrame(opcode: number, payload: Uint8Array, fin = true): Buffer {
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const headerSize = 2 + lenBytes + 4;
  const out = Buffer.allocUnsafe(headerSize + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (lenBytes === 0) out[1] = 0x80 | len;
  else if (lenBytes === 2) {
    out[1] = 0x80 | 126;
    out[2] = len >>> 8;
    out[3] = len & 0xff;
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(len / 0x100000000), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  const k = nextMaskOffset();
  const m0 = KEY_POOL[k], m1 = KEY_POOL[k + 1], m2 = KEY_POOL[k + 2], m3 = KEY_POOL[k + 3];
  const p = headerSize - 4;
  out[p] = m0;
  out[p + 1] = m1;
  out[p + 2] = m2;
  out[p + 3] = m3;
  let i = 0;
  let o = headerSize;
  for (; i + 3 < len; i += 4, o += 4) {
    out[o] = payload[i] ^ m0;
    out[o + 1] = payload[i + 1] ^ m1;
    out[o + 2] = payload[i + 2] ^ m2;
    out[o + 3] = payload[i + 3] ^ m3;
  }
  if (i < len) out[o++] = payload[i++] ^ m0;
  if (i < len) out[o++] = payload[i++] ^ m1;
  if (i < len) out[o] = payload[i] ^ m2;
  return out;
}

/** A close frame; code 1005 ("no status") sends an empty payload. Reasons are cut to the 123 bytes a control frame allows. */
export function encodeClose(code: number, reason = ''): Buffer {
  if (code === 1005) return encodeFrame(Opcode.close, new Uint8Array(0));
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
