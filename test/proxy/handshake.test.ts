// Backend-hop handshake and the headers that cross the balancer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientRequest } from '../../src/client-request';
import { TrustedProxies, clientIp, forwardedHeaders } from '../../src/proxy/forwarded-headers';
import { acceptFor, buildUpgradeRequest, checkSwitchingProtocols, isValidClientKey, parseResponseHead } from '../../src/proxy/handshake';

describe('handshake', () => {
  it('computes Sec-WebSocket-Accept as in RFC 6455 section 1.3', () => {
    assert.equal(acceptFor('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('validates client keys', () => {
    assert.ok(isValidClientKey('dGhlIHNhbXBsZSBub25jZQ=='));
    assert.ok(!isValidClientKey(''));
    assert.ok(!isValidClientKey('short=='));
    assert.ok(!isValidClientKey('dGhlIHNhbXBsZSBub25jZQ')); // missing padding
  });

  it('builds the upgrade request with our own key and version', () => {
    const text = buildUpgradeRequest('/chat?room=1', 'k', [['host', 'a.test'], ['cookie', 'c=1']]);
    assert.match(text, /^GET \/chat\?room=1 HTTP\/1\.1\r\nhost: a\.test\r\ncookie: c=1\r\n/);
    assert.match(text, /Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: k\r\n\r\n$/);
  });

  it('parses a response head incrementally and keeps set-cookie apart', () => {
    const full = Buffer.from('HTTP/1.1 403 Forbidden\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nno');
    assert.equal(parseResponseHead(full.subarray(0, 20)), null);
    const head = parseResponseHead(full)!;
    assert.equal(head.status, 403);
    assert.equal(head.reason, 'Forbidden');
    assert.deepEqual(head.setCookie, ['a=1', 'b=2']);
    assert.equal(full.subarray(head.size).toString(), 'no');
    assert.throws(() => parseResponseHead(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n')), /malformed status line/);
  });

  it("refuses a refusal whose header lines would not pass on safely (they reach the client)", () => {
    const refusal = (lines: string) => Buffer.from(`HTTP/1.1 403 Forbidden\r\n${lines}\r\nContent-Length: 0\r\n\r\n`);
    // A bare LF inside Location would give the client a header the backend smuggled in.
    assert.throws(() => parseResponseHead(refusal('Location: /x\nSet-Cookie: admin=1')), /malformed header line/);
    assert.throws(() => parseResponseHead(refusal('Location : /x')), /malformed header line/);
    assert.throws(() => parseResponseHead(refusal('Location: /x\r\n folded')), /malformed header line/);
    assert.throws(() => parseResponseHead(Buffer.from('HTTP/1.1 403 No\rpe\r\n\r\n')), /malformed status line/);
    assert.equal(parseResponseHead(refusal('Location: /x'))!.headers.get('location'), '/x');
  });

  it('accepts a correct 101 and rejects wrong accept keys, unoffered protocols and extensions', () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const ok = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n`;
    const parse = (extra: string) => parseResponseHead(Buffer.from(ok + extra + '\r\n'))!;
    assert.equal(checkSwitchingProtocols(parse(''), key, ''), '');
    assert.equal(checkSwitchingProtocols(parse('Sec-WebSocket-Protocol: chat.v2\r\n'), key, 'a, chat.v2'), 'chat.v2');
    assert.throws(() => checkSwitchingProtocols(parse('Sec-WebSocket-Protocol: other\r\n'), key, 'a'), /did not offer/);
    assert.throws(() => checkSwitchingProtocols(parse('Sec-WebSocket-Extensions: permessage-deflate\r\n'), key, ''), /extension/);
    assert.throws(() => checkSwitchingProtocols(parse(''), 'AAAAAAAAAAAAAAAAAAAAAA==', ''), /Accept/);
  });
});

describe('forwarded headers', () => {
  const request = (peerIp: string, headers: [string, string][]): ClientRequest => ({ method: 'GET', url: '/', peerIp, headers, secure: false });
  const asMap = (pairs: [string, string][]) => new Map(pairs);

  it('passes end-to-end headers, drops hop-by-hop ones, sets X-Forwarded-*', () => {
    const req = request('10.1.1.1', [
      ['host', 'chat.test'], ['cookie', 'sid=1'], ['authorization', 'Bearer t'], ['origin', 'https://chat.test'],
      ['user-agent', 'UA'], ['sec-websocket-protocol', 'a, b'], ['connection', 'Upgrade, X-Private'], ['upgrade', 'websocket'],
      ['keep-alive', '5'], ['x-private', 'secret'], ['te', 'trailers'], ['sec-websocket-key', 'k'], ['sec-websocket-extensions', 'permessage-deflate'],
      ['x-forwarded-for', '6.6.6.6'],
    ]);
    const h = asMap(forwardedHeaders(req, new TrustedProxies([])));
    for (const name of ['host', 'cookie', 'authorization', 'origin', 'user-agent', 'sec-websocket-protocol']) assert.ok(h.has(name), name);
    for (const name of ['connection', 'upgrade', 'keep-alive', 'x-private', 'te', 'sec-websocket-key', 'sec-websocket-extensions']) assert.ok(!h.has(name), name);
    assert.equal(h.get('x-forwarded-for'), '10.1.1.1'); // untrusted peer: its XFF is replaced
    assert.equal(h.get('x-forwarded-proto'), 'http');
    assert.equal(h.get('x-forwarded-host'), 'chat.test');
    assert.equal(h.get('x-real-ip'), '10.1.1.1');
  });

  it('appends to X-Forwarded-For only for a trusted proxy, and takes the client IP from it', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8', '192.0.2.7']);
    const req = request('10.1.1.1', [['host', 'h'], ['x-forwarded-for', '203.0.113.9'], ['x-forwarded-proto', 'https']]);
    const h = asMap(forwardedHeaders(req, trusted));
    assert.equal(h.get('x-forwarded-for'), '203.0.113.9, 10.1.1.1');
    assert.equal(h.get('x-forwarded-proto'), 'https');
    assert.equal(h.get('x-real-ip'), '203.0.113.9');
    assert.equal(clientIp(req, trusted), '203.0.113.9');
    assert.equal(clientIp(request('192.0.2.8', [['x-forwarded-for', '203.0.113.9']]), trusted), '192.0.2.8');
  });

  it('rejects a trusted proxy entry that is not an address', () => {
    assert.throws(() => new TrustedProxies(['localhost']), /not an IP address/);
  });
});
