// Byte-vector tests of the backend-hop framing, plus a seeded fuzz of split points and garbage.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AssemblyBudget, FrameReader, Opcode, SMALL_ASSEMBLY, unmask, type FrameSink } from '../../src/proxy/frame-reader';
import { encodeClose, encodeFrame, utf8CutPoint } from '../../src/proxy/frame-writer';

type Event = [string, ...unknown[]];

function recorder(): FrameSink & { events: Event[] } {
  const events: Event[] = [];
  return {
    events,
    onMessage: (d, bin) => events.push(['message', Buffer.from(d).toString('hex'), bin]),
    onPing: (d) => events.push(['ping', Buffer.from(d).toString('hex')]),
    onPong: (d) => events.push(['pong', Buffer.from(d).toString('hex')]),
    onClose: (code, reason) => events.push(['close', code, reason]),
    onProtocolError: (code, reason) => events.push(['error', code, reason]),
  };
}

/** An unmasked (server) frame. */
function serverFrame(opcode: number, payload: Buffer, fin = true, rsv = 0): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, len]) : len < 65536 ? Buffer.from([0, 126, len >> 8, len & 0xff]) : Buffer.alloc(10);
  if (len >= 65536) {
    head[1] = 127;
    head.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    head.writeUInt32BE(len >>> 0, 6);
  }
  head[0] = (fin ? 0x80 : 0) | rsv | opcode;
  return Buffer.concat([head, payload]);
}

function read(bytes: Buffer, maxPayload = 1 << 20): Event[] {
  const sink = recorder();
  new FrameReader(sink, maxPayload).push(bytes);
  return sink.events;
}

describe('FrameReader', () => {
  it('reads the RFC 6455 5.7 example "Hello" (unmasked text)', () => {
    assert.deepEqual(read(Buffer.from('810548656c6c6f', 'hex')), [['message', Buffer.from('Hello').toString('hex'), false]]);
  });

  it('reads the RFC 6455 5.7 fragmented "Hel" + "lo"', () => {
    assert.deepEqual(read(Buffer.from('010348656c800 26c6f'.replace(/ /g, ''), 'hex')), [['message', Buffer.from('Hello').toString('hex'), false]]);
  });

  it('delivers ping and pong payloads, and a control frame between fragments', () => {
    const bytes = Buffer.concat([
      serverFrame(Opcode.binary, Buffer.from([1, 2]), false),
      serverFrame(Opcode.ping, Buffer.from('hi')),
      serverFrame(Opcode.continuation, Buffer.from([3]), true),
      serverFrame(Opcode.pong, Buffer.alloc(0)),
    ]);
    assert.deepEqual(read(bytes), [['ping', '6869'], ['message', '010203', true], ['pong', '']]);
  });

  it('reads 16-bit and 64-bit lengths', () => {
    const mid = Buffer.alloc(300, 0xab);
    const big = Buffer.alloc(70_000, 0xcd);
    const events = read(Buffer.concat([serverFrame(Opcode.binary, mid), serverFrame(Opcode.binary, big)]));
    assert.equal(events.length, 2);
    assert.equal((events[0][1] as string).length, 600);
    assert.equal((events[1][1] as string).length, 140_000);
  });

  it('reads a close code and reason; 1005 for an empty close', () => {
    const body = Buffer.concat([Buffer.from([0x0f, 0xa2]), Buffer.from('later')]);
    assert.deepEqual(read(serverFrame(Opcode.close, body)), [['close', 4002, 'later']]);
    assert.deepEqual(read(serverFrame(Opcode.close, Buffer.alloc(0))), [['close', 1005, '']]);
  });

  it('names the close code of each protocol error', () => {
    const cases: [Buffer, number][] = [
      [serverFrame(Opcode.text, Buffer.from('x'), true, 0x40), 1002], // RSV1 without extension
      [Buffer.from([0x81, 0x81, 1, 2, 3, 4, 0x00]), 1002], // masked frame from a server
      [serverFrame(0x3, Buffer.alloc(0)), 1002], // reserved opcode
      [serverFrame(Opcode.continuation, Buffer.from('x')), 1002], // continuation with nothing to continue
      [serverFrame(Opcode.ping, Buffer.alloc(126)), 1002], // control frame > 125
      [serverFrame(Opcode.ping, Buffer.alloc(1), false), 1002], // fragmented control frame
      [serverFrame(Opcode.close, Buffer.from([0x03])), 1002], // 1-byte close payload
      [serverFrame(Opcode.close, Buffer.from([0x03, 0xee])), 1002], // close code 1006 may not be sent
      [serverFrame(Opcode.text, Buffer.from([0xff, 0xfe])), 1007], // text that is not UTF-8
      [serverFrame(Opcode.binary, Buffer.alloc(11)), 1009], // larger than maxPayload
      [Buffer.concat([serverFrame(Opcode.text, Buffer.from('a'), false), serverFrame(Opcode.text, Buffer.from('b'))]), 1002], // new message mid-fragment
    ];
    for (const [bytes, code] of cases) {
      const events = read(bytes, 10);
      assert.equal(events.at(-1)![0], 'error', `expected an error for ${bytes.toString('hex')}`);
      assert.equal(events.at(-1)![1], code, `close code for ${bytes.toString('hex')}`);
    }
  });

  it('stops at 1009 when fragments add up past maxPayload', () => {
    const bytes = Buffer.concat([serverFrame(Opcode.binary, Buffer.alloc(6), false), serverFrame(Opcode.continuation, Buffer.alloc(6))]);
    assert.deepEqual(read(bytes, 10).map((e) => e.slice(0, 2)), [['error', 1009]]);
  });

  it('reads nothing after a close frame', () => {
    const bytes = Buffer.concat([serverFrame(Opcode.close, Buffer.from([0x03, 0xe8])), serverFrame(Opcode.text, Buffer.from('late'))]);
    assert.deepEqual(read(bytes), [['close', 1000, '']]);
  });

  it('gives the same events however the bytes are split (seeded fuzz)', () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 1 + rand(6); i++) {
        const size = [0, 1, 125, 126, 127, 65535, 65536, 70_000][rand(8)];
        const payload = Buffer.alloc(size, rand(256));
        if (rand(3) === 0 && size > 2) {
          frames.push(serverFrame(Opcode.binary, payload.subarray(0, 2), false));
          frames.push(serverFrame(Opcode.ping, Buffer.from('p')));
          frames.push(serverFrame(Opcode.continuation, payload.subarray(2)));
        } else frames.push(serverFrame(Opcode.binary, payload));
      }
      const bytes = Buffer.concat(frames);
      const whole = read(bytes);
      const sink = recorder();
      const reader = new FrameReader(sink, 1 << 20);
      // Feed through one reused buffer, as the backend socket does, at random split points.
      const scratch = Buffer.alloc(bytes.length);
      for (let pos = 0; pos < bytes.length; ) {
        const n = Math.min(bytes.length - pos, 1 + rand(rand(2) ? 20 : 40_000));
        bytes.copy(scratch, 0, pos, pos + n);
        reader.push(scratch, 0, n);
        scratch.fill(0xee, 0, n); // anything kept as a view would now be corrupted
        pos += n;
      }
      assert.deepEqual(sink.events, whole, `round ${round}`);
    }
  });

  it('never throws on random garbage, and reports at most one error', () => {
    let seed = 99;
    for (let round = 0; round < 500; round++) {
      const bytes = Buffer.alloc(1 + (round % 200));
      for (let i = 0; i < bytes.length; i++) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        bytes[i] = seed >>> 24;
      }
      const events = read(bytes, 4096);
      assert.ok(events.filter((e) => e[0] === 'error').length <= 1);
    }
  });
});

describe('FrameReader assembly budget (messageAssemblyLimit)', () => {
  const KiB = 1024;
  /** The first `n` bytes of one frame: a header announcing it all, and part of its payload. */
  const partOf = (frame: Buffer, n: number): Buffer => frame.subarray(0, n);

  it('refuses a new large message with 1009 while others hold the budget, and takes it back when they finish', () => {
    const budget = new AssemblyBudget(300 * KiB);
    const big = serverFrame(Opcode.binary, Buffer.alloc(200 * KiB, 1));
    const [a, b] = [recorder(), recorder()];
    const readerA = new FrameReader(a, 1 << 20, false, budget);
    const readerB = new FrameReader(b, 1 << 20, false, budget);
    readerA.push(partOf(big, 1000));
    assert.equal(budget.held, 200 * KiB, 'a split frame holds its announced length');
    readerB.push(partOf(big, 1000));
    assert.deepEqual(b.events.map((e) => e.slice(0, 2)), [['error', 1009]], 'the second 200 KiB message does not fit in 300 KiB');
    assert.equal(readerB.overBudget, true);
    assert.equal(budget.refused, 1);
    readerA.push(big.subarray(1000));
    assert.equal(a.events.length, 1, 'the first message is delivered whole');
    assert.equal(budget.held, 0, 'and gives its bytes back');
    const c = recorder();
    new FrameReader(c, 1 << 20, false, budget).push(partOf(big, 1000));
    assert.deepEqual(c.events, [], 'a new large message fits again');
  });

  it('never refuses a message of 64 KiB or less, nor a control frame', () => {
    const budget = new AssemblyBudget(1);
    budget.held = 10; // already past the limit
    const sink = recorder();
    const reader = new FrameReader(sink, 1 << 20, false, budget);
    const small = serverFrame(Opcode.binary, Buffer.alloc(SMALL_ASSEMBLY, 2));
    reader.push(partOf(small, 100));
    reader.push(small.subarray(100));
    const ping = serverFrame(Opcode.ping, Buffer.from('p'));
    reader.push(ping.subarray(0, 2));
    reader.push(ping.subarray(2));
    assert.deepEqual(sink.events.map((e) => e[0]), ['message', 'ping']);
    assert.equal(budget.held, 10, 'what they held went back');
  });

  it('counts the fragments of a message against the budget and refuses when they outgrow it', () => {
    const budget = new AssemblyBudget(100 * KiB);
    const sink = recorder();
    const reader = new FrameReader(sink, 1 << 20, false, budget);
    const first = serverFrame(Opcode.binary, Buffer.alloc(60 * KiB, 3), false);
    reader.push(first); // whole in one read: kept as a copy
    assert.equal(budget.held, 60 * KiB);
    reader.push(serverFrame(Opcode.continuation, Buffer.alloc(60 * KiB, 3), false));
    assert.deepEqual(sink.events.map((e) => e.slice(0, 2)), [['error', 1009]], '120 KiB of fragments pass a 100 KiB budget');
    assert.equal(budget.held, 0, 'a failed reader gives everything back');
  });

  it('gives back a partial message when the reader is disposed (the tunnel ended)', () => {
    const budget = new AssemblyBudget(1 << 30);
    const reader = new FrameReader(recorder(), 1 << 20, false, budget);
    reader.push(partOf(serverFrame(Opcode.binary, Buffer.alloc(500 * KiB)), 5000));
    assert.equal(budget.held, 500 * KiB);
    reader.dispose();
    assert.equal(budget.held, 0);
  });

  it('balances the budget to zero over split, fragmented and interleaved streams (seeded)', () => {
    let seed = 777;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const budget = new AssemblyBudget(1 << 30);
    for (let round = 0; round < 100; round++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 1 + rand(5); i++) {
        const payload = Buffer.alloc([10, 70_000, 200_000][rand(3)], 1);
        frames.push(serverFrame(Opcode.binary, payload.subarray(0, 5), false), serverFrame(Opcode.ping, Buffer.from('p')), serverFrame(Opcode.continuation, payload.subarray(5)));
      }
      const bytes = Buffer.concat(frames);
      const reader = new FrameReader(recorder(), 1 << 20, false, budget);
      for (let pos = 0; pos < bytes.length; ) {
        const n = Math.min(bytes.length - pos, 1 + rand(50_000));
        reader.push(bytes.subarray(pos, pos + n));
        pos += n;
      }
      assert.equal(budget.held, 0, `round ${round}`);
    }
  });
});

describe('frame writer', () => {
  it('masks payloads so that a client-frame reader recovers them, at every length class', () => {
    for (const size of [0, 1, 3, 4, 5, 125, 126, 65535, 65536, 100_003]) {
      const payload = Buffer.alloc(size);
      for (let i = 0; i < size; i++) payload[i] = (i * 7) & 0xff;
      const sink = recorder();
      new FrameReader(sink, 1 << 20, true).push(encodeFrame(Opcode.binary, payload));
      assert.deepEqual(sink.events, [['message', payload.toString('hex'), true]], `size ${size}`);
    }
  });

  it('leaves earlier frames intact while later ones are built (pooled slabs, word masking past the payload end)', () => {
    // Sizes across the slab limit and every length mod 4; all frames are kept and decoded at the end.
    const payloads: Buffer[] = [];
    const frames: Uint8Array[] = [];
    for (let n = 0; n < 600; n++) {
      const size = n < 300 ? n % 131 : 4070 + (n % 40);
      const payload = Buffer.alloc(size);
      for (let i = 0; i < size; i++) payload[i] = (n * 13 + i * 7) & 0xff;
      payloads.push(payload);
      frames.push(encodeFrame(Opcode.binary, payload));
    }
    const sink = recorder();
    const reader = new FrameReader(sink, 1 << 20, true);
    for (const f of frames) reader.push(f);
    assert.deepEqual(sink.events, payloads.map((p) => ['message', p.toString('hex'), true]));
  });

  it('sets FIN and opcode, the mask bit, and the length encoding', () => {
    const f = encodeFrame(Opcode.text, Buffer.from('Hello'));
    assert.equal(f[0], 0x81);
    assert.equal(f[1], 0x80 | 5);
    assert.equal(f.length, 2 + 4 + 5);
    const frag = encodeFrame(Opcode.binary, Buffer.alloc(200), false);
    assert.equal(frag[0], 0x02);
    assert.equal(frag[1], 0x80 | 126);
    assert.equal((frag[2] << 8) | frag[3], 200);
  });

  it('encodes close frames with code and a reason cut at 123 bytes on a character boundary', () => {
    const sink = recorder();
    const long = 'é'.repeat(100); // 200 bytes
    new FrameReader(sink, 1 << 20, true).push(encodeClose(4001, long));
    const [kind, code, reason] = sink.events[0];
    assert.equal(kind, 'close');
    assert.equal(code, 4001);
    assert.equal(reason, 'é'.repeat(61));
    const empty = recorder();
    new FrameReader(empty, 1 << 20, true).push(encodeClose(1005));
    assert.deepEqual(empty.events, [['close', 1005, '']]);
  });

  it('utf8CutPoint never splits a sequence', () => {
    const text = Buffer.from('aé€😀');
    for (let max = 0; max <= text.length; max++) {
      const cut = utf8CutPoint(text, max);
      assert.ok(cut <= max);
      assert.doesNotThrow(() => new TextDecoder('utf-8', { fatal: true }).decode(text.subarray(0, cut)));
    }
  });

  it('unmask is its own inverse', () => {
    const data = Buffer.from('the quick brown fox');
    const copy = Buffer.from(data);
    unmask(data, 0xdeadbeef);
    assert.notDeepEqual(data, copy);
    unmask(data, 0xdeadbeef);
    assert.deepEqual(data, copy);
  });
});
