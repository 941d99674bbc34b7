// hashKey: what each form takes from a request, what counts as missing, and what is refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileHashKey, maskIp, parseHashKey } from '../../src/load-balancer/hash-key';
import type { ClientRequest } from '../../src/client-request';

const request = (url: string, headers: [string, string][] = [], peerIp = '203.0.113.9'): ClientRequest => ({ method: 'GET', url, peerIp, headers, secure: false });
const keyOf = (hashKey: string, req: ClientRequest, ip = req.peerIp): string | undefined => compileHashKey(hashKey)(req, ip);

void describe('hashKey', () => {
  void it('path:N takes the N-th path segment, without the query', () => {
    assert.equal(keyOf('path:2', request('/rooms/42/ws')), '42');
    assert.equal(keyOf('path:2', request('/rooms/42?x=1')), '42');
    assert.equal(keyOf('path:1', request('/rooms/42/ws')), 'rooms');
    assert.equal(keyOf('path:3', request('/rooms/42/ws?room=9')), 'ws');
    assert.equal(keyOf('path:3', request('/rooms/42')), undefined);
    assert.equal(keyOf('path:2', request('/rooms//ws')), undefined, 'an empty segment is no key');
    assert.equal(keyOf('path:2', request('/rooms?a/b')), undefined, 'a slash in the query is not a segment');
  });

  void it('query:NAME takes the parameter as sent, the first non-empty one', () => {
    assert.equal(keyOf('query:room', request('/ws?room=42')), '42');
    assert.equal(keyOf('query:room', request('/ws?x=1&room=a%20b&room=z')), 'a%20b');
    assert.equal(keyOf('query:room', request('/ws?myroom=1&room=2')), '2', 'a name that merely ends with NAME is not NAME');
    assert.equal(keyOf('query:room', request('/ws?room=&room=3')), '3');
    assert.equal(keyOf('query:room', request('/ws?room')), undefined);
    assert.equal(keyOf('query:room', request('/ws')), undefined);
    assert.equal(keyOf('query:room', request('/ws?x=1#room=2')), undefined, 'not in the fragment');
  });

  void it('header:NAME (any case in the config) and cookie:NAME', () => {
    const req = request('/ws', [
      ['x-room', 'blue'],
      ['cookie', 'session=abc; room=7; theme=dark'],
      ['cookie', 'late=1'],
    ]);
    assert.equal(keyOf('header:X-Room', req), 'blue');
    assert.equal(keyOf('header:x-user', req), undefined);
    assert.equal(keyOf('cookie:room', req), '7');
    assert.equal(keyOf('cookie:session', req), 'abc');
    assert.equal(keyOf('cookie:late', req), '1', 'a second Cookie header is read too');
    assert.equal(keyOf('cookie:oom', req), undefined);
    assert.equal(keyOf('header:x-room', request('/ws', [['x-room', '']])), undefined, 'an empty value is no key');
  });

  void it('ip, ip/N and ip/N,M mask the client address the balancer trusts', () => {
    const req = request('/ws', [], '10.1.2.3');
    assert.equal(keyOf('ip', req), '10.1.2.3');
    assert.equal(keyOf('ip', req, '198.51.100.7'), '198.51.100.7', 'the trusted client IP, not the peer');
    assert.equal(keyOf('ip/24', req), keyOf('ip/24', request('/', [], '10.1.2.250')));
    assert.notEqual(keyOf('ip/24', req), keyOf('ip/24', request('/', [], '10.1.3.3')));
    assert.equal(maskIp('10.1.2.3', 16, 128), maskIp('10.1.200.9', 16, 128));
    assert.notEqual(maskIp('10.1.2.3', 16, 128), maskIp('10.2.2.3', 16, 128));
    assert.equal(maskIp('10.1.2.3', 32, 128), maskIp('10.1.2.3', 32, 128));
    // IPv6: whole address unless a second length is given.
    assert.equal(maskIp('2001:db8::1', 24, 128), '2001:db8::1');
    assert.equal(maskIp('2001:db8:0:1::1', 24, 64), maskIp('2001:db8:0:1:ffff::9', 24, 64));
    assert.notEqual(maskIp('2001:db8:0:1::1', 24, 64), maskIp('2001:db8:0:2::1', 24, 64));
    assert.equal(maskIp('2001:db8::1', 24, 32), '2001:db8:0:0:0:0:0:0/32');
    assert.equal(maskIp('::ffff:10.1.2.3', 24, 112), '0:0:0:0:0:ffff:a01:0/112');
    assert.equal(keyOf('ip', request('/', [], '')), undefined);
  });

  void it('refuses what it cannot use, saying what is expected', () => {
    for (const bad of ['', 'room', 'ip/0', 'ip/33', 'ip/24,0', 'ip/24,129', 'ip/x', 'header:', 'header:x room', 'cookie:', 'query:', 'query:a&b', 'path:0', 'path:x', 'path:65']) {
      assert.equal(typeof parseHashKey(bad), 'string', `${JSON.stringify(bad)} was accepted`);
    }
    for (const good of ['ip', 'ip/24', 'ip/8,48', 'header:X-Room', 'cookie:room', 'query:room', 'path:2']) {
      assert.equal(typeof parseHashKey(good), 'object', `${good} was refused`);
    }
  });
});
