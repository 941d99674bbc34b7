// Requests the balancer must refuse before any backend is involved: malformed upgrades (400),
// plain requests on websocket-only routes (426), unknown routes (404), host/segment matching.
// An already-open tunnel must keep echoing through all of it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { rawRequest, upgradeRequest } from '../helpers/raw-client';
import { connect, upgradeStatus, type TestClient } from '../helpers/ws-client';

void describe('protocol errors and routing', { timeout: 60_000 }, () => {
  let chat: EchoBackend;
  let hosted: EchoBackend;
  let balancer: Balancer;
  let tunnel: TestClient;

  before(async () => {
    chat = await startEchoBackend({ name: 'chat' });
    hosted = await startEchoBackend({ name: 'hosted' });
    balancer = await startBalancer({
      config: {
        pools: { chat: { backends: [{ url: chat.url }] }, hosted: { backends: [{ url: hosted.url }] } },
        routes: [
          { host: 'example.test', path: '/h', pool: 'hosted', mode: 'websocket' },
          { path: '/chat', pool: 'chat', mode: 'websocket' },
        ],
      },
    });
    tunnel = await connect(balancer.url('/chat/room1'));
  });

  after(async () => {
    tunnel?.terminate();
    await stopAll(balancer);
    await closeAll(chat, hosted);
  });

  const status = async (request: string): Promise<number> => {
    const res = await rawRequest(balancer.port, request);
    res.socket.destroy();
    return res.status;
  };

  void it('answers 400 to an upgrade without Sec-WebSocket-Key', async () => {
    assert.equal(await status(upgradeRequest({ path: '/chat', key: null }).text), 400);
  });

  void it('answers 400 to an upgrade with an invalid Sec-WebSocket-Key', async () => {
    assert.equal(await status(upgradeRequest({ path: '/chat', key: 'not-a-valid-key' }).text), 400);
  });

  void it('answers 400 to an upgrade with a wrong Sec-WebSocket-Version', async () => {
    assert.equal(await status(upgradeRequest({ path: '/chat', version: '8' }).text), 400);
    assert.equal(await status(upgradeRequest({ path: '/chat', version: null }).text), 400);
  });

  void it('answers 400 to an upgrade whose Connection header lacks the upgrade token, or whose Upgrade is not websocket', async () => {
    for (const connection of ['close', 'keep-alive', 'upgraded']) {
      assert.equal(await status(upgradeRequest({ path: '/chat', headers: { Connection: connection } }).text), 400, `Connection: ${connection}`);
    }
    assert.equal(await status(upgradeRequest({ path: '/chat', headers: { Upgrade: 'h2c' } }).text), 400);
    for (const connection of ['keep-alive, Upgrade', 'UPGRADE']) {
      const res = await rawRequest(balancer.port, upgradeRequest({ path: '/chat', headers: { Connection: connection } }).text);
      res.socket.destroy();
      assert.equal(res.status, 101, `Connection: ${connection}`);
    }
  });

  void it('answers 426 to a plain GET on a websocket-only route', async () => {
    assert.equal(await status(`GET /chat HTTP/1.1\r\nHost: 127.0.0.1:${balancer.port}\r\n\r\n`), 426);
  });

  void it('answers 404 when no route matches', async () => {
    assert.equal(await upgradeStatus(balancer.url('/nowhere')), 404);
    assert.equal(await status(`GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`), 404);
  });

  void it('matches path prefixes on segment boundaries', async () => {
    assert.equal(await upgradeStatus(balancer.url('/chatroom')), 404);
    for (const path of ['/chat', '/chat/', '/chat/a/b', '/chat?x=1']) {
      const c = await connect(balancer.url(path));
      assert.equal(await c.whoami(), 'chat', path);
      await c.close();
    }
  });

  void it('matches the Host header (port ignored, case-insensitive)', async () => {
    const c = await connect(balancer.url('/h/x'), { headers: { Host: 'Example.TEST:1234' } });
    assert.equal(await c.whoami(), 'hosted');
    await c.close();
    assert.equal(await upgradeStatus(balancer.url('/h/x'), { headers: { Host: 'other.test' } }), 404);
  });

  void it('kept the already-open tunnel working and no worker died', async () => {
    assert.equal(tunnel.closeInfo, undefined);
    assert.equal((await tunnel.request('still alive')).text, 'still alive');
    assert.equal(balancer.logs.filter((l) => l.msg === 'worker exited').length, 0, 'no worker exited');
  });
});
