// The client address as forwarded to backends (X-Forwarded-For, X-Real-IP), from uWS's raw bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatPeerAddress } from '../../src/proxy/forwarded-headers';

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
