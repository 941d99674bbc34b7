// The client address as forwarded to backends (X-Forwarded-For, X-Real-IP), from uWS's raw bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientRequest } from '../../src/client-request';
import { clientIp, formatPeerAddress, forwardedHeaders, recoverBytes, TrustedProxies } from '../../src/proxy/forwarded-headers';

const v6 = (text: string): Uint8Array => {
  // Expands "a:b::c" to 16 bytes, for the test's inputs only.
  const [head, tail = ''] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = text.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return Uint8Array.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
};

describe('formatPeerAddress', () => {
  it('prints IPv4, and an IPv4-mapped IPv6 peer (dual-stack listener) as its IPv4', () => {
    assert.equal(formatPeerAddress(Uint8Array.from([127, 0, 0, 1])), '127.0.0.1');
    assert.equal(formatPeerAddress(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 1, 200, 254])), '10.1.200.254');
  });

  it('prints each IPv4 peer as its own, whatever came before (the last one is remembered)', () => {
    const peers: [number[], string][] = [
      [[10, 0, 0, 1], '10.0.0.1'],
      [[10, 0, 0, 1], '10.0.0.1'],
      [[10, 0, 0, 2], '10.0.0.2'],
      [[255, 255, 255, 255], '255.255.255.255'],
      [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 2], '10.0.0.2'],
      [[10, 0, 0, 1], '10.0.0.1'],
      [[0, 0, 0, 0], '0.0.0.0'],
    ];
    for (const [bytes, text] of peers) assert.equal(formatPeerAddress(Uint8Array.from(bytes)), text);
  });

  it("prints IPv6 in RFC 5952's short form (longest zero run, first of equals, lower case)", () => {
    for (const [bytes, text] of [
      ['::1', '::1'],
      ['2001:db8::1', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      ['fe80::', 'fe80::'],
      ['::', '::'],
      ['2001:DB8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ]) {
      assert.equal(formatPeerAddress(v6(bytes)), text, bytes);
    }
  });

  it('gives an empty string for anything else', () => {
    assert.equal(formatPeerAddress(new Uint8Array(0)), '');
  });
});

describe('the client address behind trusted proxies', () => {
  const request = (peerIp: string, headers: [string, string][]): ClientRequest => ({ method: 'GET', url: '/', peerIp, headers, secure: false });
  const trusted = new TrustedProxies(['127.0.0.1', '10.0.0.0/8']);

  it("joins repeated X-Forwarded-For lines: a client's own line does not become its address", () => {
    // HAProxy's `option forwardfor` adds its own line after the client's.
    const req = request('127.0.0.1', [['host', 'h'], ['x-forwarded-for', '6.6.6.6'], ['x-forwarded-for', '203.0.113.7']]);
    assert.equal(clientIp(req, trusted), '203.0.113.7');
    const h = new Map(forwardedHeaders(req, trusted));
    assert.equal(h.get('x-forwarded-for'), '6.6.6.6, 203.0.113.7, 127.0.0.1');
    assert.equal(h.get('x-real-ip'), '203.0.113.7');
  });

  it('walks the list from the right past trusted addresses (NGINX real_ip_recursive)', () => {
    assert.equal(clientIp(request('127.0.0.1', [['x-forwarded-for', '6.6.6.6, 203.0.113.7, 10.2.3.4']]), trusted), '203.0.113.7');
    assert.equal(clientIp(request('127.0.0.1', [['x-forwarded-for', '6.6.6.6, 203.0.113.7'], ['x-forwarded-for', '10.2.3.4, 10.9.9.9']]), trusted), '203.0.113.7');
    // Every address trusted: the leftmost one, as NGINX.
    assert.equal(clientIp(request('127.0.0.1', [['x-forwarded-for', '10.1.1.1, 10.2.2.2']]), trusted), '10.1.1.1');
    // Garbage stops the walk at the last address that parsed.
    assert.equal(clientIp(request('127.0.0.1', [['x-forwarded-for', '203.0.113.7, nonsense, 10.2.3.4']]), trusted), '10.2.3.4');
    assert.equal(clientIp(request('127.0.0.1', [['x-forwarded-for', 'nonsense']]), trusted), '127.0.0.1');
    // Empty elements are skipped; IPv6 works.
    assert.equal(clientIp(request('127.0.0.1', [['x-forwarded-for', '2001:db8::1,, ']]), trusted), '2001:db8::1');
    // An untrusted peer speaks for nobody.
    assert.equal(clientIp(request('192.0.2.1', [['x-forwarded-for', '203.0.113.7']]), trusted), '192.0.2.1');
  });

  it('replaces X-Forwarded-Proto and X-Forwarded-Host from a peer that is not trusted', () => {
    const req = request('192.0.2.1', [['host', 'chat.test'], ['x-forwarded-proto', 'https'], ['x-forwarded-host', 'evil.test'], ['x-real-ip', '6.6.6.6']]);
    const h = forwardedHeaders(req, trusted);
    assert.deepEqual(h.filter(([k]) => k.startsWith('x-')), [['x-forwarded-for', '192.0.2.1'], ['x-forwarded-proto', 'http'], ['x-forwarded-host', 'chat.test'], ['x-real-ip', '192.0.2.1']]);
  });

  it('never lets Connection remove Host or what the balancer sets', () => {
    const req = request('192.0.2.1', [['host', 'chat.test'], ['connection', 'upgrade, host'], ['connection', 'x-forwarded-for, x-real-ip, X-Private'], ['x-private', '1']]);
    const h = new Map(forwardedHeaders(req, trusted));
    assert.equal(h.get('host'), 'chat.test');
    assert.equal(h.get('x-forwarded-for'), '192.0.2.1');
    assert.equal(h.get('x-real-ip'), '192.0.2.1');
    assert.ok(!h.has('x-private'), 'a token on a second Connection line still names a hop-by-hop header');
  });
});

describe('recoverBytes', () => {
  const request = (url: string, headers: [string, string][]): ClientRequest => ({ method: 'GET', url, peerIp: '192.0.2.1', headers, secure: false });
  // What uWS's getHeader() gives: the first line's bytes, as latin1.
  const raw = (lines: Record<string, string>) => (name: string) => lines[name] ?? '';

  it('turns every value into its bytes, the replaced ones read again', () => {
    const req = request('/caf\u00e9', [['host', 'h'], ['x-a', 'ca\ufffdf'], ['x-b', 'caf\u00e9']]);
    recoverBytes(req, raw({ 'x-a': 'ca\xe9f' }));
    assert.equal(req.bytes, true);
    assert.equal(req.altered, undefined);
    assert.deepEqual(req.headers, [['host', 'h'], ['x-a', 'ca\xe9f'], ['x-b', 'caf\xc3\xa9']]);
    assert.equal(req.url, '/caf\xc3\xa9');
    const h = forwardedHeaders(req, new TrustedProxies([]));
    assert.equal(h.bytes, true, 'the backend head is written as those bytes');
  });

  it('marks as altered what cannot be read again: the URL, a header sent twice', () => {
    const url = request('/caf\ufffd', [['host', 'h']]);
    recoverBytes(url, raw({}));
    assert.equal(url.altered, true);
    const twice = request('/', [['host', 'h'], ['x-a', '1\ufffd'], ['x-a', '2']]);
    recoverBytes(twice, raw({ 'x-a': '1\xe9' }));
    assert.equal(twice.altered, true);
  });
});
