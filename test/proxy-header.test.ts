// The PROXY protocol header reader and writer (src/proxy-header.ts) and the trust policy (src/proxy-protocol.ts), byte vectors in, verdicts out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyProtocolRefusals } from '../src/errors';
import { encodeProxyV2, PROXY_V2_LOCAL, readProxyHeader } from '../src/proxy-header';
import { proxiedClient } from '../src/proxy-protocol';
import { TrustedProxies } from '../src/proxy/forwarded-headers';
import { proxyV1Header, proxyV2Header } from './helpers/raw-client';

const request = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');

void describe('readProxyHeader', () => {
  void it('reads v2 over IPv4 and says how long it is, whatever follows', () => {
    const header = proxyV2Header('203.0.113.7');
    assert.deepEqual(readProxyHeader(Buffer.concat([header, request])), { kind: 'header', version: 2, length: header.length, source: '203.0.113.7' });
  });

  void it('reads v2 over IPv6, with TLVs after the addresses', () => {
    const sig = proxyV2Header('1.2.3.4').subarray(0, 12);
    const body = Buffer.alloc(36 + 7);
    body[15] = 1; // source ::1
    body[36] = 0x04; // PP2_TYPE_NOOP, 4 bytes
    body.writeUInt16BE(4, 37);
    const header = Buffer.concat([sig, Buffer.from([0x21, 0x21, 0, body.length]), body]);
    assert.deepEqual(readProxyHeader(header), { kind: 'header', version: 2, length: header.length, source: '::1' });
  });

  void it('reads v2 LOCAL (a health check) as no address', () => {
    const header = Buffer.concat([proxyV2Header('1.2.3.4').subarray(0, 12), Buffer.from([0x20, 0x00, 0, 0])]);
    assert.deepEqual(readProxyHeader(header), { kind: 'header', version: 2, length: 16, source: '' });
  });

  void it('reads v1 TCP4, TCP6 and UNKNOWN', () => {
    const v1 = proxyV1Header('198.51.100.1');
    assert.deepEqual(readProxyHeader(Buffer.concat([v1, request])), { kind: 'header', version: 1, length: v1.length, source: '198.51.100.1' });
    const v6 = Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 5555 443\r\n');
    assert.deepEqual(readProxyHeader(v6), { kind: 'header', version: 1, length: v6.length, source: '2001:db8::1' });
    assert.deepEqual(readProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { kind: 'header', version: 1, length: 15, source: '' });
  });

  void it('asks for more bytes while a header may still be arriving, and for none when it cannot be one', () => {
    const v2 = proxyV2Header('203.0.113.7');
    for (const n of [1, 5, 12, 15, 20]) assert.equal(readProxyHeader(v2.subarray(0, n)).kind, 'incomplete', `${n} bytes of v2`);
    assert.equal(readProxyHeader(Buffer.from('PROX')).kind, 'incomplete');
    assert.equal(readProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4')).kind, 'incomplete');
    assert.equal(readProxyHeader(request).kind, 'none');
    assert.equal(readProxyHeader(Buffer.from([0x16, 0x03, 0x01])).kind, 'none', 'a TLS ClientHello');
  });

  void it('refuses what breaks the format', () => {
    for (const bad of ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n', 'PROXY TCP4 ::1 ::1 1 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n', 'PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n', `PROXY TCP4 ${'1'.repeat(110)}`]) {
      assert.equal(readProxyHeader(Buffer.from(bad)).kind, 'invalid', bad);
    }
    const v2 = proxyV2Header('203.0.113.7');
    const version1 = Buffer.from(v2);
    version1[12] = 0x11;
    assert.equal(readProxyHeader(version1).kind, 'invalid');
    const short = Buffer.from(v2);
    short[15] = 4; // TCP4 with 4 bytes of addresses
    assert.equal(readProxyHeader(short).kind, 'invalid');
  });
});

void describe('proxiedClient', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8']);
  void it('takes the carried address from a trusted peer, and closes a trusted peer without one', () => {
    assert.equal(proxiedClient('10.1.2.3', '203.0.113.7', trusted), '203.0.113.7');
    assert.equal(proxiedClient('10.1.2.3', '', trusted), ProxyProtocolRefusals.missingHeader);
  });
  void it('serves other peers as themselves, and closes them when they send a header', () => {
    assert.equal(proxiedClient('192.0.2.1', '', trusted), '192.0.2.1');
    assert.equal(proxiedClient('192.0.2.1', '203.0.113.7', trusted), ProxyProtocolRefusals.untrustedPeer);
  });
});

void describe('encodeProxyV2', () => {
  void it('writes what HAProxy send-proxy-v2 writes, IPv4, IPv6 and a mixed pair (IPv4 mapped)', () => {
    assert.equal(encodeProxyV2('203.0.113.7', 0, '127.0.0.1', 8443).toString('hex'), '0d0a0d0a000d0a515549540a2111000ccb007107' + '7f000001' + '0000' + '20fb');
    const v6 = encodeProxyV2('2001:db8::1', 1234, '::1', 443);
    assert.equal(v6.length, 16 + 36);
    assert.equal(v6.subarray(12, 16).toString('hex'), '21210024');
    assert.equal(v6.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001');
    assert.equal(v6.subarray(32, 48).toString('hex'), '00000000000000000000000000000001');
    assert.deepEqual([v6.readUInt16BE(48), v6.readUInt16BE(50)], [1234, 443]);
    const mixed = encodeProxyV2('2001:db8::7', 0, '10.0.0.1', 80);
    assert.equal(mixed.subarray(32, 48).toString('hex'), '00000000000000000000ffff0a000001');
    for (const [header, source] of [[v6, '2001:db8::1'], [mixed, '2001:db8::7']] as const) {
      assert.deepEqual(readProxyHeader(header), { kind: 'header', version: 2, length: 52, source });
    }
    assert.deepEqual(readProxyHeader(PROXY_V2_LOCAL), { kind: 'header', version: 2, length: 16, source: '' });
  });
});
