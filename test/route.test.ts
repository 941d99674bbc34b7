// Route matching: host + path prefix on segment boundaries, most specific first.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig } from '../src/config/load';
import { RouteTable, pathMatches } from '../src/route';
import { Pool } from '../src/upstream/pool';

const config = validateConfig({
  pools: { chat: { backends: [{ url: 'ws://127.0.0.1:1' }] }, notify: { backends: [{ url: 'ws://127.0.0.1:2' }] }, web: { backends: [{ url: 'http://127.0.0.1:3' }] }, vip: { backends: [{ url: 'ws://127.0.0.1:4' }] } },
  routes: [
    { path: '/', pool: 'web' },
    { path: '/chat', pool: 'chat' },
    { path: '/notify/', pool: 'notify' },
    { host: 'VIP.example.com', path: '/chat', pool: 'vip' },
  ],
});
const pools = new Map(Object.entries(config.pools).map(([name, pc]) => [name, new Pool(name, pc)]));
const table = new RouteTable(config.routes, pools);
const poolFor = (host: string, url: string): string | undefined => table.match(host, url)?.pool.name;

describe('routes', () => {
  it('matches path prefixes on segment boundaries', () => {
    assert.equal(poolFor('a.test', '/chat'), 'chat');
    assert.equal(poolFor('a.test', '/chat/room/1'), 'chat');
    assert.equal(poolFor('a.test', '/chat?room=1'), 'chat');
    assert.equal(poolFor('a.test', '/chatroom'), 'web');
    assert.equal(poolFor('a.test', '/notify'), 'notify');
    assert.equal(poolFor('a.test', '/'), 'web');
  });

  it('prefers a route naming the host, case-insensitively and ignoring the port', () => {
    assert.equal(poolFor('vip.example.com:8080', '/chat'), 'vip');
    assert.equal(poolFor('VIP.EXAMPLE.COM', '/chat/x'), 'vip');
    assert.equal(poolFor('other.example.com', '/chat'), 'chat');
  });

  it('ignores a trailing dot in the Host (the fully qualified form of the same name), in a route too', () => {
    assert.equal(poolFor('vip.example.com.', '/chat'), 'vip');
    assert.equal(poolFor('VIP.example.com.:8080', '/chat'), 'vip');
    const dotted = validateConfig({ pools: { p: { backends: [{ url: 'ws://127.0.0.1:1' }] }, q: { backends: [{ url: 'ws://127.0.0.1:2' }] } }, routes: [{ path: '/', pool: 'p' }, { host: 'chat.example.', path: '/', pool: 'q' }] });
    const t = new RouteTable(dotted.routes, new Map(Object.entries(dotted.pools).map(([name, pc]) => [name, new Pool(name, pc)])));
    assert.equal(t.match('chat.example', '/')?.pool.name, 'q');
    assert.equal(t.match('chat.example.', '/')?.pool.name, 'q');
    assert.equal(t.match('[::1]', '/')?.pool.name, 'p');
    assert.equal(poolFor('.', '/chat'), 'chat', 'a lone dot names no host');
  });

  it('answers nothing when no route matches', () => {
    const only = new RouteTable([config.routes[1]], pools);
    assert.equal(only.match('a.test', '/other'), undefined);
  });

  it('pathMatches', () => {
    assert.ok(pathMatches('/', '/anything'));
    assert.ok(pathMatches('/a', '/a'));
    assert.ok(!pathMatches('/a', '/ab'));
    assert.ok(!pathMatches('/a/b', '/a'));
  });
});
