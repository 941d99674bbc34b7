// Byte-vector tests of the plain-HTTP hop's response parser, split at every point, plus the
// malformed responses it must refuse (each would let a backend smuggle or corrupt a response).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Framing, MAX_HEAD_BYTES, ResponseParser } from '../../src/proxy/http-response-parser';

interface Result {
  events: unknown[];
  ok: boolean;
  error: string | null;
  parser: ResponseParser;
}

/** Feeds `chunks` through one reused buffer (as the TCP connection does), after one expect(). */
function parse(chunks: (string | Buffer)[], noBody = false, parser?: ResponseParser, events: unknown[] = []): Result {
  let body = '';
  const flushBody = (): void => {
    if (body !== '') events.push(['body', body]);
    body = '';
  };
  const p =
    parser ??
    new ResponseParser({
      onResponseHead: (status, reason, headers) => events.push(['head', status, reason, headers]),
      onResponseBody: (buf, start, end) => (body += buf.toString('latin1', start, end)),
      onResponseEnd: () => {
        flushBody();
        events.push(['end']);
      },
    });
  p.expect(noBody);
  const shared = Buffer.alloc(1 << 17);
  let ok = true;
  for (const chunk of chunks) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    shared.fill(0x58); // what a stale read buffer might hold
    bytes.copy(shared);
    ok = p.execute(shared, 0, bytes.length);
    if (!ok) break;
  }
  flushBody();
  return { events, ok, error: p.error, parser: p };
}

/** The same bytes cut at every point into two reads, and at seeded random points into several. */
function allSplits(text: string): (string | Buffer)[][] {
  const out: string[][] = [[text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  let seed = 4242;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const cuts = [...new Set(Array.from({ length: 1 + rand(6) }, () => rand(text.length)))].sort((a, b) => a - b);
    const parts: string[] = [];
    let at = 0;
    for (const c of cuts) {
      parts.push(text.slice(at, c));
      at = c;
    }
    parts.push(text.slice(at));
    out.push(parts.filter((p) => p !== ''));
  }
  return out;
}

const OK_LENGTH = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello world';
const CHUNKED =
  'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
  'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\n\r\n' +
  '5;ext=1\r\nhello\r\n1\r\n \r\nA\r\nchunked!!!\r\n0\r\nX-Trailer: t\r\n\r\n';

describe('ResponseParser', () => {
  it('reads a Content-Length response: head (lines as sent, repeats kept, framing ones dropped), body, end; keep-alive', () => {
    const r = parse([OK_LENGTH]);
    assert.equal(r.ok, true);
    assert.deepEqual(r.events, [['head', 200, 'OK', 'Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2'], ['body', 'hello world'], ['end']]);
    assert.equal(r.parser.keepAlive, true);
    assert.equal(r.parser.framing, Framing.Length);
    assert.equal(r.parser.contentLength, 11);
    assert.equal(r.parser.complete, true);
  });

  it('skips a 1xx interim head and de-chunks the body (extensions and trailers dropped)', () => {
    const r = parse([CHUNKED]);
    assert.equal(r.ok, true, String(r.error));
    assert.deepEqual(r.events, [['head', 201, 'Created', 'X-Id: 7'], ['body', 'hello chunked!!!'], ['end']]);
    assert.equal(r.parser.keepAlive, true);
    assert.equal(r.parser.contentLength, -1);
  });

  it('gives the same events however the bytes are split', () => {
    for (const text of [OK_LENGTH, CHUNKED]) {
      const expected = parse([text]).events;
      for (const parts of allSplits(text)) {
        const r = parse(parts);
        assert.equal(r.ok, true, `${JSON.stringify(parts)}: ${r.error}`);
        assert.deepEqual(r.events, expected, JSON.stringify(parts));
      }
    }
  });

  it('reads consecutive responses on one connection', () => {
    const first = parse([OK_LENGTH]);
    const second = parse([CHUNKED], false, first.parser, first.events);
    assert.equal(second.ok, true);
    assert.deepEqual(second.events.map((e) => (e as unknown[])[0]), ['head', 'body', 'end', 'head', 'body', 'end']);
  });

  it('expects no body after HEAD, 204 and 304, and keeps the Content-Length a HEAD answer declares', () => {
    const head = parse(['HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n'], true);
    assert.deepEqual(head.events, [['head', 200, 'OK', ''], ['end']]);
    assert.equal(head.parser.framing, Framing.None);
    assert.equal(head.parser.contentLength, 1234);
    for (const status of ['204 No Content', '304 Not Modified']) {
      const r = parse([`HTTP/1.1 ${status}\r\nETag: "x"\r\n\r\n`]);
      assert.deepEqual(r.events.at(-1), ['end']);
      assert.equal(r.parser.keepAlive, true);
    }
  });

  it('reads a body without length until the backend closes, and then does not keep the connection', () => {
    const r = parse(['HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ', 'bytes']);
    assert.equal(r.parser.framing, Framing.UntilClose);
    assert.equal(r.parser.keepAlive, false);
    assert.deepEqual(r.events.at(-1), ['body', 'some bytes']);
    assert.equal(r.parser.finish(), true);
    assert.deepEqual(r.events.at(-1), ['end']);
    // A Content-Length body cut short is not a clean end.
    assert.equal(parse(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc']).parser.finish(), false);
  });

  it('keeps the connection only as HTTP/1.1 (unless close) or HTTP/1.0 with keep-alive allow', () => {
    assert.equal(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n']).parser.keepAlive, false);
    assert.equal(parse(['HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n']).parser.keepAlive, false);
    assert.equal(parse(['HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n']).parser.keepAlive, true);
    // Transfer-Encoding and Content-Length together: chunked wins, and the connection is not reused (RFC 9112 6.1).
    const both = parse(['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n']);
    assert.deepEqual(both.events.slice(1), [['body', 'abc'], ['end']]);
    assert.equal(both.parser.keepAlive, false);
  });

  it('accepts a Content-Length list of equal values and no reason phrase', () => {
    const r = parse(['HTTP/1.1 200\r\nContent-Length: 2, 2\r\n\r\nok']);
    assert.deepEqual(r.events, [['head', 200, '', ''], ['body', 'ok'], ['end']]);
  });

  it("drops hop-by-hop fields, Date and those the Connection header names; reads Keep-Alive's timeout", () => {
    const r = parse([
      'HTTP/1.1 200 OK\r\nDate: Sun, 29 Nov 2026 21:00:00 GMT\r\nX-A: 1\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5, max=100\r\n' +
        'x-secret: s\r\nTE: trailers\r\nUpgrade: h2c\r\nTrailer: X-T\r\nProxy-Connection: close\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 0\r\n\r\n',
    ]);
    assert.deepEqual(r.events, [['head', 200, 'OK', 'X-A: 1\r\nContent-Type: text/html; charset=utf-8'], ['end']]);
    assert.equal(r.parser.keepAliveTimeout, 5);
    assert.equal(r.parser.keepAlive, true);
  });

  it('tells the fields it acts on in any case, and passes on names of the same length that differ', () => {
    const chunked = parse(['HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: Chunked\r\nCONNECTION: CLOSE\r\nContent-Lengtz: 9\r\nDATE: x\r\nDatum: y\r\n\r\n2\r\nok\r\n0\r\n\r\n']);
    assert.deepEqual(chunked.events, [['head', 200, 'OK', 'Content-Lengtz: 9\r\nDatum: y'], ['body', 'ok'], ['end']]);
    assert.equal(chunked.parser.keepAlive, false);
    const length = parse(['HTTP/1.1 200 OK\r\ncontent-length:\t2 \r\nkeep-alive: timeout=7\r\n\r\nok']);
    assert.deepEqual(length.events, [['head', 200, 'OK', ''], ['body', 'ok'], ['end']]);
    assert.equal(length.parser.keepAliveTimeout, 7);
  });

  const refused: [string, string][] = [
    ['conflicting Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'],
    ['a non-numeric Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok'],
    ['whitespace before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok'],
    ['obsolete line folding', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n'],
    ['a bare LF inside the head', 'HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n'],
    ['a bare LF in the status line', 'HTTP/1.1 200 O\nK\r\nContent-Length: 0\r\n\r\n'],
    ['a NUL in a value', 'HTTP/1.1 200 OK\r\nX-A: 1\0\r\nContent-Length: 0\r\n\r\n'],
    ['a header name with a space inside', 'HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n'],
    ['a line without a colon', 'HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 0\r\n\r\n'],
    ['a bare CR inside a value', 'HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n'],
    ['a malformed status line', 'HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n'],
    ['a three-letter status', 'HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n'],
    ['a 101 to a plain request', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'],
    ['an invalid chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['an absurd chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n'],
    ['chunk data without its CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n'],
    ['bytes after the response', `${OK_LENGTH}HTTP/1.1 200 OK\r\n`],
  ];
  for (const [what, text] of refused) {
    it(`refuses ${what}`, () => {
      const r = parse([text]);
      assert.equal(r.ok, false);
      assert.ok(r.error, 'names the error');
      // Split anywhere, the verdict is the same.
      for (const parts of allSplits(text).slice(0, 60)) assert.equal(parse(parts).ok, false, JSON.stringify(parts));
    });
  }

  it('never throws on garbage: mutated valid responses either parse or are refused (seeded fuzz)', () => {
    let seed = 777;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed % n;
    };
    const alphabet = Buffer.from('\r\n:; \t0123456789abcdefABCDEF,\0\x80\xffHTTP/1.chunked-lengthContent-Transfer-Encoding');
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(i % 2 === 0 ? OK_LENGTH : CHUNKED, 'latin1');
      for (let m = 1 + rand(4); m > 0; m--) bytes[rand(bytes.length)] = alphabet[rand(alphabet.length)];
      const cut = rand(bytes.length);
      const r = parse([bytes.subarray(0, cut), bytes.subarray(cut)]);
      if (!r.ok) refused++;
      else r.parser.finish();
    }
    assert.ok(refused > 100, `mutations are refused often enough to mean something (${refused})`);
  });

  it('refuses a head larger than 64 KiB, and bytes with no request outstanding', () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
    assert.equal(parse([big.slice(0, 40_000), big.slice(40_000)]).ok, false);
    assert.equal(parse([big]).ok, false);
    const idle = new ResponseParser({ onResponseHead: () => {}, onResponseBody: () => {}, onResponseEnd: () => {} });
    assert.equal(idle.execute(Buffer.from('HTTP/1.1 200 OK\r\n'), 0, 17), false);
  });

  it('skips up to 5 interim (1xx) responses before the final one; a sixth is an error', () => {
    const hints = 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n';
    const five = parse([hints.repeat(5) + OK_LENGTH]);
    assert.equal(five.ok, true);
    assert.deepEqual(five.events[0], ['head', 200, 'OK', 'Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2']);
    for (const chunks of [[hints.repeat(6) + OK_LENGTH], [hints.repeat(3), hints.repeat(3), OK_LENGTH]]) {
      const six = parse(chunks);
      assert.equal(six.ok, false);
      assert.match(six.error ?? '', /more than 5 interim/);
    }
    // The count is per exchange: the next request may have its own.
    const p = parse([hints.repeat(5) + OK_LENGTH]).parser;
    assert.equal(parse([hints.repeat(5) + OK_LENGTH], false, p).ok, true);
    assert.equal(parse(['HTTP/1.1 099 Odd\r\n\r\n']).ok, false, 'a status below 100 is no interim response');
  });

  it('says when the final head holds bytes 0x80-0xFF (reason or a value), at every split point', () => {
    for (const [text, expected] of [
      [OK_LENGTH, false],
      ['HTTP/1.1 200 D\xe9j\xe0 vu\r\nContent-Length: 0\r\n\r\n', true],
      ['HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 0\r\n\r\n', true],
      ['HTTP/1.1 103 Hints\r\nX-A: \xff\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', false],
    ] as const) {
      for (const chunks of allSplits(text)) {
        const r = parse(chunks);
        assert.equal(r.ok, true);
        assert.equal(r.parser.obsText, expected, JSON.stringify(chunks));
      }
    }
    const r = parse(['HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 0\r\n\r\n']);
    assert.deepEqual(r.events[0], ['head', 200, 'OK', 'X-A: caf\xe9'], 'the bytes as latin1 text, one character a byte');
  });
});
