// The admin listener: Prometheus metrics aggregated over the workers (tunnels, messages, upgrades,
// closes, restarts, plain HTTP requests and responses), the probes, /status, and that none of it is
// served on the public port.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { runCli, startBalancer, workerPidOf, writeConfig } from '../helpers/balancer';
import { closeAll, startEchoBackend, startRawHttpBackend } from '../helpers/backends';
import { scrape, type Scrape } from '../helpers/metrics';
import { deadPort, freePort } from '../helpers/ports';
import { openSocket, rawWebSocket, readResponseHead } from '../helpers/raw-client';
import { connectMany, upgradeStatus, type TestClient } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';

/** Scrapes until `check` passes (metrics follow events by a little), then returns that scrape. */
async function scrapeUntil(url: string, check: (s: Scrape) => boolean, what: string, timeoutMs = 5000): Promise<Scrape> {
  let last: Scrape | undefined;
  try {
    return await waitFor(async () => {
      last = await scrape(url);
      return check(last) ? last : undefined;
    }, timeoutMs, what, 100);
  } catch (err) {
    (err as Error).message += `\nlast scrape:\n${last?.text.split('\n').filter((l) => l.startsWith('switchyard_')).join('\n')}`;
    throw err;
  }
}

void describe('metrics and the admin listener', { timeout: 90_000 }, () => {
  void it('counts N tunnels and M messages over both workers; upgrades, closes, latency, probes and /status agree', async (t) => {
    const backend = await startEchoBackend({ name: 'm' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(backend);
    });
    const balancer = await startBalancer({
      config: { admin: { port: 0 }, pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ path: '/chat', pool: 'chat' }] },
    });
    t.after(() => balancer.stop());
    const metricsUrl = balancer.adminUrl('/metrics');
    const labels = { pool: 'chat', backend: `127.0.0.1:${backend.port}` };

    const N = 12;
    const M = 5;
    clients.push(...(await connectMany(N, (i) => balancer.url(`/chat?i=${i}`))));
    let bytes = 0;
    for (const c of clients) {
      for (let j = 0; j < M; j++) {
        const text = `message ${j} of ${c.ws.url}`;
        bytes += Buffer.byteLength(text);
        assert.equal((await c.request(text)).text, text);
      }
    }
    assert.equal(await upgradeStatus(balancer.url('/nowhere')), 404);

    const s = await scrapeUntil(metricsUrl, (x) => x.sum('switchyard_messages_total', { direction: 'to_client' }) === N * M, `${N * M} messages to clients`);
    // Both workers answered (each reports its own slot), and the sums cover both.
    assert.deepEqual(s.select('switchyard_worker_event_loop_lag_seconds').map((x) => x.labels.worker).sort(), ['0', '1']);
    assert.equal(s.sum('switchyard_tunnels_active', labels), N);
    assert.equal(s.sum('switchyard_tunnels_opened_total', labels), N);
    assert.equal(s.sum('switchyard_messages_total', { direction: 'to_backend' }), N * M);
    assert.equal(s.sum('switchyard_bytes_total', { direction: 'to_backend' }), bytes);
    assert.equal(s.sum('switchyard_bytes_total', { direction: 'to_client' }), bytes);
    assert.equal(s.sum('switchyard_upgrades_total', { outcome: 'ok' }), N);
    assert.equal(s.sum('switchyard_upgrades_total', { outcome: 'no_route' }), 1);
    assert.equal(s.sum('switchyard_upgrades_total', { outcome: 'backend_unreachable' }), 0);
    assert.equal(s.sum('switchyard_upgrade_duration_seconds_count', { pool: 'chat' }), N);
    assert.equal(s.sum('switchyard_backend_up', labels), 1);
    assert.equal(s.sum('switchyard_backend_max_connections', labels), 0, 'no limit configured');
    assert.equal(s.sum('switchyard_backend_admin_state', { ...labels, state: 'ready' }), 1);
    assert.equal(s.sum('switchyard_backend_admin_state', { ...labels, state: 'drain' }), 0);
    assert.equal(s.sum('switchyard_backend_ejections_total', labels), 0);
    assert.equal(s.sum('switchyard_redis_configured'), 0);
    assert.equal(s.sum('switchyard_workers'), 2);
    assert.equal(s.sum('switchyard_worker_restarts_total'), 0);
    assert.ok(s.sum('process_cpu_user_seconds_total') > 0, 'default process metrics are there');
    for (const x of s.select('switchyard_worker_resident_memory_bytes')) assert.ok(x.value > 10e6, `worker ${x.labels.worker} rss ${x.value}`);

    // /status says the same.
    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as {
      ready: boolean; tunnels: number; redis: string; tls: unknown; workers: { pid: number; listening: boolean }[]; totals: { messagesToBackend: number };
      pools: { name: string; backends: { name: string; health: string; admin: string; tunnels: number }[] }[];
    };
    assert.equal(status.ready, true);
    assert.equal(status.tunnels, N);
    assert.equal(status.totals.messagesToBackend, N * M);
    assert.equal(status.redis, 'not configured');
    assert.equal(status.tls, null, 'no TLS, no certificate');
    assert.deepEqual(status.workers.map((w) => w.pid).sort(), [...balancer.initialPids].sort());
    assert.deepEqual(status.pools[0].backends[0], { ...status.pools[0].backends[0], name: labels.backend, health: 'up', admin: 'ready', tunnels: N });
    assert.equal((await fetch(balancer.adminUrl('/healthz'))).status, 200);
    assert.equal((await fetch(balancer.adminUrl('/readyz'))).status, 200);

    // Closes: 4 by the client with 4001, 3 by the backend with 1000, then the rest by the client with 1000.
    for (const c of clients.slice(0, 4)) await c.close(4001, 'bye');
    await waitFor(() => backend.openCount() === N - 4, 5000, 'the backend to see 4 tunnels closed');
    const fromBackend = backend.openConnections().slice(0, 3);
    for (const conn of fromBackend) conn.ws.close(1000, 'backend done');
    await waitFor(() => clients.filter((c) => c.closeInfo?.code === 1000).length === 3, 5000, 'three clients closed by the backend');
    for (const c of clients) await c.close(1000);
    const closed = await scrapeUntil(metricsUrl, (x) => x.select('switchyard_tunnels_closed_total').reduce((n, y) => n + y.value, 0) === N, `${N} closed tunnels`);
    assert.equal(closed.sum('switchyard_tunnels_closed_total', { side: 'client', code: '4xxx' }), 4);
    assert.equal(closed.sum('switchyard_tunnels_closed_total', { side: 'backend', code: '1000' }), 3);
    assert.equal(closed.sum('switchyard_tunnels_closed_total', { side: 'client', code: '1000' }), N - 7);
    assert.equal(closed.sum('switchyard_tunnels_active', labels), 0);
  });

  void it('counts plain HTTP requests once each by outcome, and every response by status class, over both workers', async (t) => {
    const backend = await startEchoBackend({ name: 'h' });
    const silent = await startRawHttpBackend(() => {}); // takes requests, never answers
    t.after(() => closeAll(backend, silent));
    const dead = `ws://127.0.0.1:${await deadPort()}`;
    const balancer = await startBalancer({
      config: {
        admin: { port: 0 },
        pools: {
          web: { backends: [{ url: backend.url }] },
          dead: { backends: [{ url: dead }] },
          silent: { backends: [{ url: silent.url }] },
          // A refused connect is retried on the other backend: still one request.
          retry: { algorithm: 'round-robin', backends: [{ url: dead }, { url: backend.url }] },
        },
        // No "/" route: /nowhere has none.
        routes: [
          { path: '/web', pool: 'web' },
          { path: '/status', pool: 'web' }, // the backend answers /status/NNN with NNN
          { path: '/ws-only', pool: 'web', mode: 'websocket' },
          { path: '/dead', pool: 'dead' },
          { path: '/silent', pool: 'silent' },
          { path: '/retry', pool: 'retry' },
        ],
      },
    });
    t.after(() => balancer.stop());
    // A fresh connection each, so that both workers take some.
    const get = async (path: string): Promise<number> => {
      const res = await request(balancer.httpUrl(path), { reset: true });
      await res.body.dump();
      return res.statusCode;
    };

    const N = 10;
    const K = 4;
    for (let i = 0; i < N; i++) assert.equal(await get(`/web/x?i=${i}`), 200);
    for (let i = 0; i < 2; i++) assert.equal(await get('/status/503'), 503); // relayed: ok, 5xx
    for (let i = 0; i < K; i++) assert.equal(await get(`/retry/x?i=${i}`), 200);
    assert.equal(await get('/nowhere'), 404);
    assert.equal(await get('/ws-only'), 426);
    for (let i = 0; i < 2; i++) assert.equal(await get('/dead/x'), 502);
    // Upgrades are not plain requests: this one counts in switchyard_upgrades_total only.
    assert.equal(await upgradeStatus(balancer.url('/nowhere')), 404);
    // A client that leaves while the backend is still thinking.
    const socket = await openSocket(balancer.port);
    socket.write('GET /silent/x HTTP/1.1\r\nHost: t\r\n\r\n');
    await waitFor(() => silent.heads.length === 1, 5000, 'the silent backend to get the request');
    socket.destroy();
    await balancer.waitForLog((l) => l.msg === 'http backend request failed' && l.pool === 'retry', 5000, 'a retried request on the retry pool');

    const requests = N + 2 + K + 1 + 1 + 2 + 1;
    const total = (s: Scrape, name: string): number => s.select(name).reduce((n, x) => n + x.value, 0);
    const s = await scrapeUntil(balancer.adminUrl('/metrics'), (x) => total(x, 'switchyard_http_requests_total') >= requests, `${requests} plain requests`);
    assert.equal(total(s, 'switchyard_http_requests_total'), requests, 'each request counted once');
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'ok' }), N + 2 + K);
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'no_route' }), 1);
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'upgrade_required' }), 1);
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'backend_unreachable' }), 2);
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'client_gone' }), 1);
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'no_backend' }), 0);
    assert.equal(s.sum('switchyard_upgrades_total', { outcome: 'no_route' }), 1);
    assert.equal(s.sum('switchyard_http_responses_total', { code: '2xx' }), N + K);
    assert.equal(s.sum('switchyard_http_responses_total', { code: '4xx' }), 2);
    assert.equal(s.sum('switchyard_http_responses_total', { code: '5xx' }), 2 + 2);
    assert.equal(s.sum('switchyard_http_responses_total', { code: '1xx' }), 0);
    assert.equal(s.sum('switchyard_http_responses_total', { code: '3xx' }), 0);
    assert.equal(s.sum('switchyard_http_responses_total', { code: 'other' }), 0);
    // Every request but the abandoned one got exactly one response.
    assert.equal(total(s, 'switchyard_http_responses_total'), requests - 1);
  });

  void it('a plain request on a kept-alive connection during the drain gets 503 and counts as draining', async (t) => {
    const backend = await startEchoBackend({ name: 'dr' });
    const silent = await startRawHttpBackend(() => {}); // takes requests, never answers
    t.after(() => closeAll(backend, silent));
    const balancer = await startBalancer({
      workers: 1,
      config: {
        admin: { port: 0 },
        drainTimeout: '8s',
        pools: { web: { backends: [{ url: backend.url }] }, silent: { backends: [{ url: silent.url }] } },
        routes: [
          { path: '/silent', pool: 'silent' },
          { path: '/', pool: 'web' },
        ],
      },
    });
    t.after(() => balancer.stop('SIGKILL'));
    // A request in flight holds the drain open for drainTimeout; a tunnel's 1001 says it has begun.
    const holding = await openSocket(balancer.port);
    t.after(() => holding.destroy());
    holding.write('GET /silent/x HTTP/1.1\r\nHost: t\r\n\r\n');
    await waitFor(() => silent.heads.length === 1, 5000, 'the silent backend to get the request');
    const { socket: tunnel } = await rawWebSocket(balancer.port, { path: '/ws' });
    t.after(() => tunnel.destroy());
    const kept = await openSocket(balancer.port);
    t.after(() => kept.destroy());
    const ask = async (): Promise<number> => {
      kept.write('GET /status/200 HTTP/1.1\r\nHost: t\r\n\r\n');
      const head = await readResponseHead(kept);
      const length = Number(head.headers['content-length']);
      // Read the body off so that the next head starts clean.
      let got = head.rest.length;
      while (got < length) got += ((await once(kept.resume(), 'data')) as [Buffer])[0].length;
      kept.pause();
      return head.status;
    };
    assert.equal(await ask(), 200);

    process.kill(balancer.pid, 'SIGTERM');
    // The worker is draining once the tunnel gets its 1001 close frame.
    tunnel.resume();
    await once(tunnel, 'data');
    assert.equal(await ask(), 503);

    const s = await scrapeUntil(balancer.adminUrl('/metrics'), (x) => x.sum('switchyard_http_requests_total', { outcome: 'draining' }) === 1, 'one draining request');
    assert.equal(s.sum('switchyard_http_requests_total', { outcome: 'ok' }), 1);
    assert.equal(s.sum('switchyard_http_responses_total', { code: '5xx' }), 1);
  });

  void it("a killed worker's restart shows in switchyard_worker_restarts_total", async (t) => {
    const backend = await startEchoBackend({ name: 'r' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({ args: ['--backend', backend.url] });
    t.after(() => balancer.stop());
    const metricsUrl = balancer.adminUrl('/metrics');
    const before = await scrape(metricsUrl);
    assert.equal(before.sum('switchyard_worker_restarts_total'), 0);

    // Scrapes keep coming while the worker dies: none may fail, and the primary must not care.
    let scraping = true;
    let scrapes = 0;
    const scraper = (async () => {
      while (scraping) {
        await scrape(metricsUrl);
        scrapes++;
      }
    })();
    const victim = balancer.initialPids[0];
    process.kill(victim, 'SIGKILL');
    await balancer.waitForLog((l) => l.msg === 'worker started' && workerPidOf(l, balancer.pid) !== victim, 10_000, 'the replacement worker');
    scraping = false;
    await scraper;
    assert.ok(scrapes > 0);
    assert.equal(balancer.exitInfo(), undefined, 'the primary is still running');
    const after = await scrapeUntil(metricsUrl, (x) => x.sum('switchyard_workers') === 2 && x.select('switchyard_worker_event_loop_lag_seconds').length === 2, 'two workers again');
    assert.equal(after.sum('switchyard_worker_restarts_total'), 1);
    // The first worker forked is slot 0.
    assert.equal(after.sum('switchyard_worker_restarts_total', { worker: '0' }), 1);
    assert.equal(after.sum('switchyard_worker_restarts_total', { worker: '1' }), 0);
  });

  void it('is not served on the public port; binds 127.0.0.1 by default', async (t) => {
    const backend = await startEchoBackend({ name: 'p' });
    t.after(() => closeAll(backend));
    const adminPort = await freePort();
    const balancer = await startBalancer({ config: { admin: { port: adminPort }, pools: { p: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'p' }] } });
    t.after(() => balancer.stop());
    const ready = await balancer.waitForLog((l) => l.msg === 'switchyard ready', 1000);
    assert.equal(ready.admin, `127.0.0.1:${adminPort}`);
    assert.equal(balancer.adminPort, adminPort);

    const admin = await fetch(balancer.adminUrl('/metrics'));
    assert.match(await admin.text(), /^# HELP switchyard_/m);
    for (const path of ['/metrics', '/status', '/healthz', '/readyz']) {
      const res = await fetch(balancer.httpUrl(path));
      const body = await res.text();
      // The public port proxies these to the backend like any other path.
      assert.equal(res.headers.get('x-backend'), 'p', `${path} on the public port reached the backend`);
      assert.doesNotMatch(body, /switchyard_|"tunnels"/, `${path} on the public port must not expose admin data`);
    }
    assert.ok(backend.httpRequests.some((r) => r.url === '/metrics'), 'the backend got /metrics');
  });

  void it('/readyz is 503 without a backend that may take tunnels; unknown paths 404', async (t) => {
    const balancer = await startBalancer({ config: { admin: { port: 0 }, pools: { p: { backends: [{ url: 'ws://127.0.0.1:9', admin: 'maintenance' }] } }, routes: [{ pool: 'p' }] } });
    t.after(() => balancer.stop());
    const res = await fetch(balancer.adminUrl('/readyz'));
    assert.equal(res.status, 503);
    assert.match(await res.text(), /no healthy backend/);
    assert.equal((await fetch(balancer.adminUrl('/healthz'))).status, 200);
    assert.equal((await fetch(balancer.adminUrl('/nope'))).status, 404);
    assert.equal((await fetch(balancer.adminUrl('/metrics'), { method: 'POST' })).status, 405);
    const s = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(s.sum('switchyard_backend_admin_state', { pool: 'p', state: 'maintenance' }), 1);
  });

  void it('admin config: a busy admin port is one line and exit 1; same port as public is a config error; --no-admin', async (t) => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => busy.close(() => r())));
    const busyPort = (busy.address() as { port: number }).port;
    const port = await freePort();
    const started = await runCli(['start', '--port', String(port), '--backend', 'ws://127.0.0.1:9', '--admin-port', String(busyPort), '--workers', '1']);
    assert.equal(started.code, 1);
    assert.equal(started.stderr.trim(), `switchyard: admin listener cannot listen on 127.0.0.1:${busyPort}: port in use (set admin.port, --admin-port, or --no-admin)`);

    const { file, cleanup } = writeConfig({ listen: { port: 8123 }, admin: { port: 8123 }, pools: { p: { backends: [{ url: 'ws://127.0.0.1:9' }] } }, routes: [{ pool: 'p' }] });
    t.after(cleanup);
    const checked = await runCli(['check', '--config', file]);
    assert.equal(checked.code, 1);
    assert.equal(checked.stderr.trim(), 'config error: admin.port: must differ from listen.port: the admin listener is never on the public port');

    const balancer = await startBalancer({ args: ['--backend', 'ws://127.0.0.1:9', '--no-admin'], workers: 1 });
    t.after(() => balancer.stop());
    assert.equal(balancer.adminPort, undefined);
    assert.equal((await balancer.waitForLog((l) => l.msg === 'switchyard ready', 1000)).admin, 'disabled');
  });
});
