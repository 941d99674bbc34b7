// Backends found by DNS, end to end: a real DNS server on loopback (dns-packet over UDP) whose
// answers the test changes (2 addresses, then 3, then 2 others), `ws` backends on 127.0.0.2-6, and a
// real balancer with two workers. Tunnels go to the addresses of the latest answer; a vanished
// backend's tunnels stay (no new ones) until they end or the drain deadline, then get 1001; a
// failed lookup keeps the set; SRV carries the ports; the TTL is respected within its bounds. With
// Redis, two machines that get different answers each keep their own set, sharing counts per address.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adminStatus } from '../helpers/admin';
import { NO_CLIENT_LIMITS, runCli, startBalancer, writeConfig, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { poolView, startBackendsOn, tunnelsUntil, waitForPool } from '../helpers/dns-pool';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { freePort } from '../helpers/ports';
import { startRedis } from '../helpers/redis';
import { scrape } from '../helpers/metrics';
import { connect, type TestClient } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';
import type { Status } from '../../src/admin/status';

const IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'];

void describe('backends found by DNS', { timeout: 120_000 }, () => {
  void it('2 addresses, then 3, then 2 others: joins (with slow start), drains, 1001 at the deadline; a failed lookup keeps the set', async (t) => {
    const dns: DnsServer = await startDnsServer();
    const { port, backends } = await startBackendsOn(IPS);
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(...backends.values());
      await dns.close();
    });
    const name = (ip: string): string => `${ip}:${port}`;
    dns.set('chat.test', { a: [IPS[0], IPS[1]], ttl: 1 });
    const discovery = { dns: 'chat.test', port, resolver: dns.address, minTtl: '1s', timeout: '200ms', drainTimeout: '5s' };
    const balancer = await startBalancer({
      workers: 2,
      config: {
        clientLimits: NO_CLIENT_LIMITS,
        pools: {
          rr: { algorithm: 'round-robin', discovery },
          ramp: { algorithm: 'least-connections', slowStart: '60s', discovery },
        },
        routes: [
          { path: '/rr', pool: 'rr' },
          { path: '/ramp', pool: 'ramp' },
        ],
      },
    });
    t.after(() => balancer.stop());

    // What DNS gave at start is there from the start: no slow start for it.
    assert.deepEqual(await poolView(balancer, 'rr'), { [name(IPS[0])]: 'ready', [name(IPS[1])]: 'ready' });
    const atStart = await adminStatus(balancer.adminPort!);
    assert.ok(atStart.pools.ramp.every((x) => x.slowStartUntil === 0 && x.discovered));
    assert.deepEqual(await tunnelsUntil(balancer, '/rr', clients, 20, (r) => r.size === 2), new Set([IPS[0], IPS[1]]));
    const onFirst = clients.find((c) => c.messages.at(-1)?.text === IPS[0])!;

    // 3 addresses: the new one joins, with slow start where the pool has it.
    dns.set('chat.test', { a: [IPS[0], IPS[1], IPS[2]], ttl: 1 });
    await waitForPool(balancer, 'rr', { [name(IPS[0])]: 'ready', [name(IPS[1])]: 'ready', [name(IPS[2])]: 'ready' }, 'the third address in pool rr');
    await waitFor(async () => (await adminStatus(balancer.adminPort!)).pools.ramp?.find((x) => x.backend === name(IPS[2])), 10_000, 'the third address in pool ramp');
    const ramp = (await adminStatus(balancer.adminPort!)).pools.ramp;
    assert.ok(ramp.find((x) => x.backend === name(IPS[2]))!.slowStartUntil > Date.now(), 'the new backend ramps');
    assert.equal(ramp.find((x) => x.backend === name(IPS[0]))!.slowStartUntil, 0, 'the others keep their weight');
    assert.ok((await tunnelsUntil(balancer, '/rr', clients, 30, (r) => r.has(IPS[2]))).has(IPS[2]), 'the new backend gets tunnels');

    // 2 others: they join, the three vanished ones drain: their tunnels stay, new ones go to the others only.
    dns.set('chat.test', { a: [IPS[3], IPS[4]], ttl: 1 });
    await waitFor(async () => {
      const v = await poolView(balancer, 'rr');
      return v[name(IPS[3])] === 'ready' && v[name(IPS[4])] === 'ready' && v[name(IPS[0])] === 'drain';
    }, 10_000, 'the two others ready and the vanished draining');
    const vanishedAt = Date.now();
    assert.equal((await onFirst.request('still here')).text, 'still here', 'a vanished backend\'s tunnel stays open');
    const fresh: TestClient[] = [];
    const reached = await tunnelsUntil(balancer, '/rr', fresh, 8, () => false);
    clients.push(...fresh);
    assert.deepEqual([...reached].sort(), [IPS[3], IPS[4]], 'new tunnels only to the addresses DNS gives now');

    // The status page's document and the metrics show the discovered backends.
    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as Status;
    const rr = status.pools.find((p) => p.name === 'rr')!;
    assert.equal(rr.discovery?.dns, 'chat.test');
    assert.equal(rr.discovery?.backends, 2);
    assert.ok(rr.backends.some((x) => x.name === name(IPS[3]) && x.discovered && x.admin === 'ready'));
    const m = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(m.sum('switchyard_discovery_backends', { pool: 'rr', state: 'live' }), 2);
    assert.ok(m.sum('switchyard_discovery_lookups_total', { pool: 'rr', result: 'ok' }) >= 3);
    assert.ok(m.sum('switchyard_tunnels_active', { pool: 'rr', backend: name(IPS[3]) }) >= 1);

    // A vanished backend whose tunnels ended leaves before the deadline; one still holding tunnels gets 1001 at it.
    for (const c of clients) if (c !== onFirst && (c.messages[0]?.text === IPS[1] || c.messages[0]?.text === IPS[2])) await c.close();
    await waitFor(async () => !(name(IPS[1]) in (await poolView(balancer, 'rr'))), 10_000, 'the drained backend removed');
    assert.equal((await poolView(balancer, 'rr'))[name(IPS[0])], 'drain', 'the one with a tunnel still drains');
    const closed = await onFirst.waitClose(15_000);
    assert.equal(closed.code, 1001);
    assert.ok(Date.now() - vanishedAt >= 3000, 'not long before the drain deadline');
    await waitFor(async () => !(name(IPS[0]) in (await poolView(balancer, 'rr'))), 10_000, 'the backend removed at its deadline');
    await balancer.waitForLog((l) => l.msg?.startsWith('discovery: drain deadline passed') === true && l.backend === name(IPS[0]), 5000);

    // A failed lookup keeps the last good set, logged once per failure streak.
    dns.servfail(true);
    const failedBefore = (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_discovery_lookups_total', { pool: 'rr', result: 'failed' });
    await waitFor(async () => ((await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_discovery_lookups_total', { pool: 'rr', result: 'failed' })) >= failedBefore + 3, 15_000, 'three failed lookups');
    assert.deepEqual(await poolView(balancer, 'rr'), { [name(IPS[3])]: 'ready', [name(IPS[4])]: 'ready' });
    assert.equal(balancer.logs.filter((l) => l.msg?.startsWith('discovery: lookup failed') && l.pool === 'rr').length, 1, 'logged once for the streak');
    assert.equal((await adminStatus(balancer.adminPort!)).discovery.rr.failing, 'ESERVFAIL');
    const during = await connect(balancer.url('/rr?during-failure'));
    clients.push(during);
    assert.ok([IPS[3], IPS[4]].includes(await during.whoami()));
    dns.servfail(false);
    await balancer.waitForLog((l) => l.msg === 'discovery: lookups answer again' && l.pool === 'rr', 10_000);
  });

  void it('SRV carries the ports; the TTL is respected within minTtl..maxTtl; check describes the pool', async (t) => {
    const dns = await startDnsServer();
    const a = await startEchoBackend({ name: 'srv-a', host: '127.0.0.7' });
    const b = await startEchoBackend({ name: 'srv-b', host: '127.0.0.8' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(a, b);
      await dns.close();
    });
    dns.set('_chat._tcp.chat.test', { srv: [{ target: 'a.chat.test', port: a.port }, { target: 'b.chat.test', port: b.port }], ttl: 3600 });
    dns.set('a.chat.test', { a: ['127.0.0.7'], ttl: 3600 });
    dns.set('b.chat.test', { a: ['127.0.0.8'], ttl: 3600 });
    // A TTL of 0 is bounded below by minTtl.
    dns.set('zero.test', { a: ['127.0.0.7'], ttl: 0 });
    const config = {
      clientLimits: NO_CLIENT_LIMITS,
      pools: {
        srv: { discovery: { dns: '_chat._tcp.chat.test', resolver: dns.address, maxTtl: '2s' } },
        zero: { discovery: { dns: 'zero.test', port: a.port, resolver: dns.address, minTtl: '1500ms' } },
      },
      routes: [
        { path: '/srv', pool: 'srv' },
        { path: '/zero', pool: 'zero' },
      ],
    };
    const { file, cleanup } = writeConfig(config, 'dns-check.yaml');
    t.after(cleanup);
    const check = await runCli(['check', '--config', file]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /pool srv: .*backends found by DNS \(SRV _chat\._tcp\.chat\.test, asking 127\.0\.0\.1:\d+, again at the TTL within 1s\.\.2s/);
    assert.match(check.stdout, /pool zero: .*backends found by DNS \(A\/AAAA zero\.test port \d+/);

    const startedAt = Date.now(); // check asked too: count the balancer's lookups only
    const balancer = await startBalancer({ workers: 1, config });
    t.after(() => balancer.stop());
    assert.deepEqual(Object.keys(await poolView(balancer, 'srv')).sort(), [`127.0.0.7:${a.port}`, `127.0.0.8:${b.port}`]);
    const reached = await tunnelsUntil(balancer, '/srv', clients, 10, (r) => r.size === 2);
    assert.deepEqual([...reached].sort(), ['srv-a', 'srv-b']);

    // TTL 3600 bounded above by maxTtl 2s: asked again within a few seconds.
    const srvAsked = dns.queries('_chat._tcp.chat.test').length;
    await waitFor(() => dns.queries('_chat._tcp.chat.test').length >= srvAsked + 2, 10_000, 'the SRV name asked again twice');
    // TTL 0 bounded below by minTtl 1.5s: never asked twice within it.
    const asked = (): number[] => dns.queries('zero.test').filter((at) => at >= startedAt);
    await waitFor(() => asked().length >= 6, 15_000, 'zero.test asked a few times');
    const times = asked();
    // A and AAAA go together: count the A/AAAA pairs as one lookup (pairs are ms apart).
    const lookups = times.filter((at, i) => i === 0 || at - times[i - 1] > 500);
    for (let i = 1; i < lookups.length; i++) assert.ok(lookups[i] - lookups[i - 1] >= 1400, `lookups ${lookups[i] - lookups[i - 1]} ms apart`);
  });

  void it('with Redis, each machine resolves for itself: different answers do not fight, counts and checks stay per address', async (t) => {
    const redis = await startRedis();
    const dnsP = await startDnsServer();
    const dnsQ = await startDnsServer();
    const { port, backends } = await startBackendsOn(['127.0.0.9', '127.0.0.10', '127.0.0.11', '127.0.0.12']);
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(...backends.values());
      await dnsP.close();
      await dnsQ.close();
      await redis.stop();
    });
    const name = (ip: string): string => `${ip}:${port}`;
    // Two views of one name (a split horizon, or an update seen by one machine first).
    dnsP.set('chat.test', { a: ['127.0.0.9', '127.0.0.10'], ttl: 1 });
    dnsQ.set('chat.test', { a: ['127.0.0.10', '127.0.0.11'], ttl: 1 });
    const machine = async (dns: DnsServer): Promise<Balancer> => {
      const b = await startBalancer({
        workers: 1,
        config: {
          clientLimits: NO_CLIENT_LIMITS,
          admin: { port: await freePort() },
          redis: { url: redis.url, clusterName: 'dns', leaseTtl: '1s', countTtl: '1s', syncInterval: '50ms' },
          pools: {
            chat: {
              discovery: { dns: 'chat.test', port, resolver: dns.address, minTtl: '1s', timeout: '200ms', drainTimeout: '30s' },
              healthCheck: { type: 'tcp', interval: '100ms', timeout: '500ms' },
            },
          },
          routes: [{ path: '/', pool: 'chat' }],
        },
      });
      t.after(() => b.stop());
      return b;
    };
    const p = await machine(dnsP);
    const q = await machine(dnsQ);
    assert.deepEqual(await poolView(p, 'chat'), { [name('127.0.0.10')]: 'ready', [name('127.0.0.9')]: 'ready' });
    assert.deepEqual(await poolView(q, 'chat'), { [name('127.0.0.10')]: 'ready', [name('127.0.0.11')]: 'ready' });

    // A tunnel through p to the address both have counts fleet-wide on q.
    const reached = await tunnelsUntil(p, '/', clients, 20, (r) => r.has('127.0.0.10'));
    assert.ok(reached.has('127.0.0.10'));
    const onShared = clients.find((c) => c.messages.at(-1)?.text === '127.0.0.10')!;
    const sharedOnQ = async () => (await adminStatus(q.adminPort!)).pools.chat.find((x) => x.backend === name('127.0.0.10'))!;
    await waitFor(async () => (await sharedOnQ()).connections.fleet >= 1, 5000, 'q counts p\'s tunnel on the shared address');
    assert.equal((await sharedOnQ()).connections.machine, 0);

    // p's answer drops the shared address: p drains it, q keeps it ready (drains are not shared state).
    dnsP.set('chat.test', { a: ['127.0.0.9'], ttl: 1 });
    await waitFor(async () => (await poolView(p, 'chat'))[name('127.0.0.10')] === 'drain', 10_000, 'p drains the address it lost');
    assert.equal((await sharedOnQ()).admin, 'ready');
    assert.equal((await onShared.request('kept')).text, 'kept');

    // A new address on q at run time: checked by the fleet (one machine holds its lease), counted, reachable.
    dnsQ.set('chat.test', { a: ['127.0.0.10', '127.0.0.11', '127.0.0.12'], ttl: 1 });
    await waitFor(async () => (await poolView(q, 'chat'))[name('127.0.0.12')] === 'ready', 10_000, 'q adds the new address');
    await waitFor(async () => (await adminStatus(q.adminPort!)).pools.chat.find((x) => x.backend === name('127.0.0.12'))?.checkedHere, 5000, 'q checks the new address (its lease)');

    // p's tunnel ends: p removes the address; q's fleet count falls back to 0 and q still has it.
    await onShared.close();
    await waitFor(async () => !(name('127.0.0.10') in (await poolView(p, 'chat'))), 10_000, 'p removes the drained address');
    await waitFor(async () => (await sharedOnQ()).connections.fleet === 0, 5000, 'the fleet count back to 0');
    assert.equal((await sharedOnQ()).admin, 'ready');
    assert.equal((await sharedOnQ()).health, 'up');
  });

  void it('a reload keeps what DNS said: the new workers have the discovered backends at once, without a new ramp, even while lookups fail', async (t) => {
    const dns = await startDnsServer();
    const { port, backends } = await startBackendsOn(['127.0.0.13', '127.0.0.14']);
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(...backends.values());
      await dns.close();
    });
    dns.set('chat.test', { a: ['127.0.0.13', '127.0.0.14'], ttl: 3600 });
    const config = (slowStart: string) => ({
      clientLimits: NO_CLIENT_LIMITS,
      pools: { chat: { algorithm: 'round-robin', slowStart, discovery: { dns: 'chat.test', port, resolver: dns.address, timeout: '200ms' } } },
      routes: [{ path: '/', pool: 'chat' }],
    });
    const balancer = await startBalancer({ workers: 1, config: config('60s') });
    t.after(() => balancer.stop());
    const before = await connect(balancer.url('/before'));
    clients.push(before);
    await before.whoami();

    // DNS fails from now on; the reload still starts its workers with both backends.
    dns.servfail(true);
    balancer.rewriteConfig(config('50s'));
    process.kill(balancer.pid, 'SIGHUP');
    await balancer.waitForLog((l) => l.msg === 'reloaded', 15_000, 'reloaded');
    const report = await adminStatus(balancer.adminPort!);
    assert.deepEqual(report.pools.chat.map((x) => [x.backend, x.admin, x.slowStartUntil]).sort(), [
      [`127.0.0.13:${port}`, 'ready', 0],
      [`127.0.0.14:${port}`, 'ready', 0],
    ]);
    const reached = await tunnelsUntil(balancer, '/after', clients, 10, (r) => r.size === 2);
    assert.deepEqual([...reached].sort(), ['127.0.0.13', '127.0.0.14'], 'the new generation balances over both');
    assert.equal((await before.request('old tunnel')).text, 'old tunnel');
    await waitFor(async () => (await adminStatus(balancer.adminPort!)).discovery.chat.failing === 'ESERVFAIL', 10_000, 'the failing lookups shown');
  });
});
