// The admin listener's Host allow-list: what DNS rebinding can and cannot name.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalIp, HostAllowList, parseHost } from '../../src/admin/host-allow-list';

describe('Host header parsing', () => {
  it('splits name and port; brackets IPv6; lower-cases; drops a trailing dot', () => {
    assert.deepEqual(parseHost('LocalHost:8405'), { name: 'localhost', port: 8405 });
    assert.deepEqual(parseHost('localhost.'), { name: 'localhost', port: undefined });
    assert.deepEqual(parseHost('[::1]:8405'), { name: '::1', port: 8405 });
    assert.deepEqual(parseHost('[0:0:0:0:0:0:0:1]'), { name: '::1', port: undefined });
    assert.deepEqual(parseHost('10.0.0.5:80'), { name: '10.0.0.5', port: 80 });
  });
  it('refuses what is not a plain host[:port]', () => {
    for (const bad of ['', '::1', '[::1', '[evil.example]', 'user@localhost', 'localhost:99999', 'localhost:', 'a b', 'localhost/x', '.', 'localhost:80:80']) {
      assert.equal(parseHost(bad), null, bad);
    }
  });
  it('one spelling per address, IPv4-mapped IPv6 as IPv4', () => {
    assert.equal(canonicalIp('::ffff:10.0.0.5'), '10.0.0.5');
    assert.equal(canonicalIp('FD00:0:0::2'), 'fd00::2');
    assert.equal(canonicalIp('127.0.0.1'), '127.0.0.1');
  });
});

describe('HostAllowList', () => {
  const list = new HostAllowList('127.0.0.1', ['lb1.internal', 'FD00::9']);
  it('answers loopback names and addresses, the configured address and the listed names', () => {
    for (const ok of ['localhost', 'localhost:1', '127.0.0.1:8405', '127.9.9.9', '[::1]:8405', 'lb1.internal', 'LB1.INTERNAL.:8405', '[fd00::9]']) {
      assert.ok(list.allows(ok, '127.0.0.1'), ok);
    }
  });
  it('refuses any other name, whatever it resolves to', () => {
    for (const bad of ['rebind.example', 'localhost.rebind.example', 'lb1.internal.evil', '127.0.0.1.nip.io', '10.0.0.5', '[fd00::2]', '0.0.0.0', '']) {
      assert.ok(!list.allows(bad, '127.0.0.1'), bad);
    }
  });
  it('answers an IP literal equal to the address the request arrived on (a wildcard bind scraped by address), and no name for it', () => {
    const any = new HostAllowList('0.0.0.0', []);
    assert.ok(any.allows('10.0.0.5:8405', '10.0.0.5'));
    assert.ok(any.allows('10.0.0.5', '::ffff:10.0.0.5'), 'a dual-stack socket reports IPv4 as mapped');
    assert.ok(any.allows('[fd00::2]:8405', 'fd00:0::2'));
    assert.ok(!any.allows('10.0.0.6', '10.0.0.5'));
    assert.ok(!any.allows('lb1.example.com', '10.0.0.5'));
    assert.ok(!any.allows('0.0.0.0', '10.0.0.5'), 'the wildcard itself names nothing');
  });
  it('lets a request without Host through (HTTP/1.0: no browser sends one)', () => {
    assert.ok(list.allows(undefined, '127.0.0.1'));
  });
});
