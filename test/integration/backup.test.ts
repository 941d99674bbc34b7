// backends[].backup (NGINX's and HAProxy's `backup`): a backup backend gets tunnels and plain
// requests only while no primary backend of its pool can take them (down, drained, in maintenance,
// full, or failed on this request), and its tunnels stay when a primary comes back.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { adminStatus } from '../helpers/admin';
import { runCli, startBalancer } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { deadPort } from '../helpers/ports';
import { waitFor } from '../helpers/wait';
import { closeClients, connectMany, type TestClient } from '../helpers/ws-client';

/** The backend (x-backend) that answered a plain GET. */
async function httpBackend(url: string): Promise<string> {
  const res = await request(url, { reset: true });
  await res.body.dump();
  assert.equal(res.statusCode, 200);
  return String(res.headers['x-backend']);
}

async function names(clients: readonly TestClient[]): Promise<string[]> {
  const out: string[] = [];
  for (const c of clients) out.push(await c.whoami());
  return out;
}

void describe('backup backends', { timeout: 60_000 }, () => {
  void it('get tunnels and requests only while every primary is out, and keep them when a primary returns', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    const b = await startEchoBackend({ name: 'b' });
    const spare = await startEchoBackend({ name: 'spare' });
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a, b, spare);
    });
    const balancer = await startBalancer({
      workers: 2,
      config: {
        pools: { chat: { backends: [{ url: a.url }, { url: spare.url, backup: true }, { url: b.url }] } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    t.after(() => balancer.stop());
    const admin = balancer.adminArgs();
    const open = async (n: number, path: string): Promise<TestClient[]> => {
      const opened = await connectMany(n, (i) => balancer.url(`${path}?i=${i}`));
      clients.push(...opened);
      return opened;
    };
    const nextTunnelOn = async (name: string, what: string): Promise<void> => {
      await waitFor(async () => (await names(await open(1, '/probe')))[0] === name, 3000, what);
    };

    const first = await open(8, '/1');
    assert.deepEqual(new Set(await names(first)), new Set(['a', 'b']), 'the primaries share the tunnels');
    for (let i = 0; i < 4; i++) assert.notEqual(await httpBackend(balancer.httpUrl(`/p${i}`)), 'spare');

    // One primary out: the other takes everything, still not the backup.
    assert.equal((await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'maintenance', ...admin])).code, 0);
    await nextTunnelOn('b', 'a out of rotation');
    assert.deepEqual(new Set(await names(await open(4, '/2'))), new Set(['b']));

    // Both out: the backup.
    assert.equal((await runCli(['admin', 'chat', `127.0.0.1:${b.port}`, 'drain', ...admin])).code, 0);
    await nextTunnelOn('spare', 'the backup in rotation');
    const onSpare = await open(4, '/3');
    assert.deepEqual(await names(onSpare), ['spare', 'spare', 'spare', 'spare']);
    assert.equal(await httpBackend(balancer.httpUrl('/during')), 'spare');

    // A primary returns: new tunnels leave the backup; the backup's tunnels stay.
    assert.equal((await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'ready', ...admin])).code, 0);
    await nextTunnelOn('a', 'a back in rotation');
    assert.deepEqual(await names(await open(4, '/4')), ['a', 'a', 'a', 'a']);
    assert.equal(await httpBackend(balancer.httpUrl('/after')), 'a');
    for (const c of onSpare) assert.equal((await c.request('still')).text, 'still');

    const report = await adminStatus(balancer.adminPort!);
    assert.deepEqual(report.pools.chat.map((r) => r.backup), [false, true, false]);
    const cli = await runCli(['status', ...admin]);
    assert.match(cli.stdout, new RegExp(`127\\.0\\.0\\.1:${spare.port} \\(backup\\)`));
  });

  void it('take what a full primary cannot, and a request whose primary fails to connect', async (t) => {
    const a = await startEchoBackend({ name: 'a' });
    const spare = await startEchoBackend({ name: 'spare' });
    const dead = await deadPort();
    const clients: TestClient[] = [];
    t.after(async () => {
      await closeClients(clients);
      await closeAll(a, spare);
    });
    const balancer = await startBalancer({
      workers: 1,
      config: {
        pools: {
          full: { backends: [{ url: a.url, maxConnections: 1 }, { url: spare.url, backup: true }] },
          broken: { retries: 1, outlierDetection: { enabled: false }, backends: [{ url: `ws://127.0.0.1:${dead}` }, { url: spare.url, backup: true }] },
        },
        routes: [
          { path: '/full', pool: 'full' },
          { path: '/broken', pool: 'broken' },
        ],
      },
    });
    t.after(() => balancer.stop());

    const full = await connectMany(3, (i) => balancer.url(`/full?i=${i}`));
    clients.push(...full);
    assert.deepEqual(await names(full), ['a', 'spare', 'spare']);

    // The primary refuses the connection: the retry goes to the backup.
    const broken = await connectMany(2, (i) => balancer.url(`/broken?i=${i}`));
    clients.push(...broken);
    assert.deepEqual(await names(broken), ['spare', 'spare']);
    assert.equal(await httpBackend(balancer.httpUrl('/broken/page')), 'spare');
  });
});
