// Fuzz target for the backend-hop frame reader: `npm run fuzz -- [seconds] [seed]` (not part of CI;
// test/proxy/frame.test.ts runs a short seeded version of the same checks on every `npm test`).
// Mutates valid frame streams (bit flips, truncation, splices, random lengths) and checks that the
// reader never throws, reports at most one error and nothing after it, and that the events do not
// depend on how the bytes are split across reads.
import assert from 'node:assert/strict';
import { FrameReader, type FrameSink } from '../../src/proxy/frame-reader';

const seconds = Number(process.argv[2] ?? 30);
let seed = Number(process.argv[3] ?? Date.now() % 1e9) >>> 0;
const startSeed = seed;
const rand = (n: number): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
};

function frame(opcode: number, payload: Buffer, fin: boolean): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, len]) : len < 65536 ? Buffer.from([0, 126, len >> 8, len & 0xff]) : Buffer.alloc(10);
  if (len >= 65536) {
    head[1] = 127;
    head.writeUInt32BE(len >>> 0, 6);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  return Buffer.concat([head, payload]);
}

function stream(): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0, n = 1 + rand(8); i < n; i++) {
    const op = [1, 2, 0, 8, 9, 10, 3][rand(7)];
    const size = [0, 1, 2, 125, 126, 200, 65536, 70_000][rand(8)];
    const payload = Buffer.alloc(size, op === 1 ? 0x61 : rand(256));
    parts.push(frame(op, payload, rand(4) !== 0));
  }
  const bytes = Buffer.concat(parts);
  for (let i = 0, flips = rand(4); i < flips && bytes.length > 0; i++) bytes[rand(bytes.length)] ^= 1 << rand(8);
  return rand(5) === 0 ? bytes.subarray(0, rand(bytes.length + 1)) : bytes;
}

function run(bytes: Buffer, splits: boolean): string[] {
  const events: string[] = [];
  let errored = false;
  const sink: FrameSink = {
    onMessage: (d, bin) => events.push(`m${bin ? 'b' : 't'}${d.length}:${Buffer.from(d).subarray(0, 8).toString('hex')}`),
    onPing: (d) => events.push(`ping${d.length}`),
    onPong: (d) => events.push(`pong${d.length}`),
    onClose: (c, r) => events.push(`close${c}:${r}`),
    onProtocolError: (c) => {
      assert.ok(!errored, 'two protocol errors');
      errored = true;
      events.push(`error${c}`);
    },
  };
  const reader = new FrameReader(sink, 100_000);
  if (!splits) reader.push(bytes);
  else {
    const scratch = Buffer.alloc(bytes.length);
    for (let pos = 0; pos < bytes.length; ) {
      const n = Math.min(bytes.length - pos, 1 + rand(rand(2) ? 16 : 50_000));
      bytes.copy(scratch, 0, pos, pos + n);
      reader.push(scratch, 0, n);
      scratch.fill(0xee, 0, n);
      pos += n;
    }
  }
  const err = events.findIndex((e) => e.startsWith('error'));
  assert.ok(err === -1 || err === events.length - 1, 'events after a protocol error');
  return events;
}

const until = Date.now() + seconds * 1000;
let cases = 0;
while (Date.now() < until) {
  const bytes = stream();
  try {
    assert.deepEqual(run(bytes, true), run(bytes, false));
  } catch (err) {
    console.error(`failure after ${cases} cases (start seed ${startSeed}); input: ${bytes.subarray(0, 64).toString('hex')}…`);
    throw err;
  }
  cases++;
}
console.log(`frame-reader fuzz: ${cases} cases in ${seconds} s, no failure (seed ${startSeed})`);
