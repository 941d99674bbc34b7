// Backends written with a host name and `resolve: true`, SRV priority and weight, discovered backends
// over TLS, and `switchyard check`'s lookups, end to end: a real DNS server on loopback (dns-packet over UDP), `ws` backends
// on 127.0.0.x, a real balancer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NO_CLIENT_LIMITS, runCli, startBalancer, writeConfig } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { startDnsServer } from '../helpers/dns-server';
import { poolView, startBackendsOn, tunnelsUntil, waitForPool } from '../helpers/dns-pool';
import { certificateDir, makeCa, makeSignedCertificate } from '../helpers/tls';
import { connect, type TestClient } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';

const IPS = ['127.0.0.21', '127.0.0.22', '127.0.0.23', '127.0.0.24', '127.0.0.25'];
const FIXED = '127.0.0.26';

void describe('backends written with resolve: true, SRV priority and weight', { timeout: 120_000 }, () => {
  void it('a resolve: true backend beside a fixed one: both used; its answers 2 -> 3 -> 2 others', async (t) => {
    const dns = await startDnsServer();
    const { port, backends } = await startBackendsOn(IPS);
    const fixed = await startEchoBackend({ name: FIXED, host: FIXED });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(fixed, ...backends.values());
      await dns.close();
    });
    const name = (ip: string): string => `${ip}:${port}`;
    dns.set('chat.test', { a: [IPS[0], IPS[1]], ttl: 1 });
    const balancer = await startBalancer({
      workers: 1,
      config: {
        clientLimits: NO_CLIENT_LIMITS,
        pools: {
          chat: {
            algorithm: 'round-robin',
            backends: [
              { url: `ws://chat.test:${port}`, resolve: { resolver: dns.address, minTtl: '1s', timeout: '200ms', drainTimeout: '5s' } },
              { url: `ws://${FIXED}:${fixed.port}` },
            ],
          },
        },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    t.after(() => balancer.stop());
    const fixedName = `${FIXED}:${fixed.port}`;
    assert.deepEqual(await poolView(balancer, 'chat'), { [fixedName]: 'ready', [name(IPS[0])]: 'ready', [name(IPS[1])]: 'ready' }, 'the fixed backend and the addresses; not the name');
    assert.deepEqual(await tunnelsUntil(balancer, '/', clients, 20, (r) => r.size === 3), new Set([FIXED, IPS[0], IPS[1]]));

    dns.set('chat.test', { a: [IPS[0], IPS[1], IPS[2]], ttl: 1 });
    await waitForPool(balancer, 'chat', { [fixedName]: 'ready', [name(IPS[0])]: 'ready', [name(IPS[1])]: 'ready', [name(IPS[2])]: 'ready' }, 'the third address');

    dns.set('chat.test', { a: [IPS[3], IPS[4]], ttl: 1 });
    await waitFor(async () => {
      const v = await poolView(balancer, 'chat');
      return v[name(IPS[3])] === 'ready' && v[name(IPS[4])] === 'ready' && v[name(IPS[0])] === 'drain' && v[fixedName] === 'ready';
    }, 10_000, 'the two others ready, the vanished draining, the fixed one kept');
    const fresh: TestClient[] = [];
    const reached = await tunnelsUntil(balancer, '/', fresh, 9, () => false);
    clients.push(...fresh);
    assert.deepEqual([...reached].sort(), [FIXED, IPS[3], IPS[4]].sort(), 'new tunnels to the fixed backend and the addresses DNS gives now');
  });

  void it('discovery with tls: true: every address is a wss:// backend, verified against the pool\'s CA under the service name', async (t) => {
    const certs = certificateDir();
    const ca = makeCa(certs.dir, 'discovery-ca');
    // The certificate names the service, not the address: SNI and verification must use the name.
    const cert = makeSignedCertificate(certs.dir, 'secure-chat', ca, { altNames: 'DNS:secure.test' });
    const dns = await startDnsServer();
    const backend = await startEchoBackend({ name: 'secure', host: '127.0.0.30', tls: { cert: cert.cert, key: cert.key } });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(backend);
      await dns.close();
      certs.cleanup();
    });
    dns.set('_chat._tcp.secure.test', { srv: [{ target: 'node1.secure.test', port: backend.port, priority: 10, weight: 1 }], ttl: 1 });
    dns.set('node1.secure.test', { a: ['127.0.0.30'], ttl: 1 });
    const balancer = await startBalancer({
      workers: 1,
      config: {
        clientLimits: NO_CLIENT_LIMITS,
        pools: { chat: { tls: { ca: ca.cert }, discovery: { dns: '_chat._tcp.secure.test', resolver: dns.address, tls: true } } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    t.after(() => balancer.stop());
    assert.deepEqual(await poolView(balancer, 'chat'), { [`127.0.0.30:${backend.port}`]: 'ready' });
    const c = await connect(balancer.url('/'));
    clients.push(c);
    assert.equal(await c.whoami(), 'secure', 'the tunnel reached the TLS backend through the discovered address');
    assert.equal(backend.tlsErrors.length, 0);
  });

  void it('SRV: only the lowest priority with addresses, shared by the records\' weights; the next priority when its targets vanish', async (t) => {
    const dns = await startDnsServer();
    const heavy = await startEchoBackend({ name: 'heavy', host: '127.0.0.27' });
    const light = await startEchoBackend({ name: 'light', host: '127.0.0.28' });
    const spare = await startEchoBackend({ name: 'spare', host: '127.0.0.29' });
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const c of clients) c.terminate();
      await closeAll(heavy, light, spare);
      await dns.close();
    });
    dns.set('_chat._tcp.prio.test', {
      srv: [
        { target: 'heavy.prio.test', port: heavy.port, priority: 10, weight: 30 },
        { target: 'light.prio.test', port: light.port, priority: 10, weight: 10 },
        { target: 'spare.prio.test', port: spare.port, priority: 20, weight: 10 },
      ],
      ttl: 1,
    });
    dns.set('heavy.prio.test', { a: ['127.0.0.27'], ttl: 1 });
    dns.set('light.prio.test', { a: ['127.0.0.28'], ttl: 1 });
    dns.set('spare.prio.test', { a: ['127.0.0.29'], ttl: 1 });
    const balancer = await startBalancer({
      workers: 1,
      config: {
        clientLimits: NO_CLIENT_LIMITS,
        pools: { srv: { algorithm: 'round-robin', discovery: { dns: '_chat._tcp.prio.test', resolver: dns.address, timeout: '200ms', drainTimeout: '1s' } } },
        routes: [{ path: '/', pool: 'srv' }],
      },
    });
    t.after(() => balancer.stop());
    assert.deepEqual(Object.keys(await poolView(balancer, 'srv')).sort(), [`127.0.0.27:${heavy.port}`, `127.0.0.28:${light.port}`], 'priority 20 unused');

    // Weights 30 and 10: about 3 tunnels in 4 to heavy (a loose bound: the count, not a timing).
    const counts = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const c = await connect(balancer.url(`/?i=${i}`));
      clients.push(c);
      const who = await c.whoami();
      counts.set(who, (counts.get(who) ?? 0) + 1);
    }
    assert.equal(counts.get('spare'), undefined, 'no tunnel to the higher priority value');
    const share = (counts.get('heavy') ?? 0) / 40;
    assert.ok(share >= 0.6 && share <= 0.9, `heavy got ${share} of the tunnels (weights 3:1)`);

    // The priority-10 targets vanish (no address): priority 20 is used.
    dns.set('heavy.prio.test', { ttl: 1 });
    dns.set('light.prio.test', { ttl: 1 });
    await waitFor(async () => (await poolView(balancer, 'srv'))[`127.0.0.29:${spare.port}`] === 'ready', 10_000, 'the priority-20 target in the pool');
    const fresh: TestClient[] = [];
    const reached = await tunnelsUntil(balancer, '/', fresh, 4, () => false);
    clients.push(...fresh);
    assert.deepEqual([...reached], ['spare'], 'new tunnels to the next priority');
  });

  void it('check looks each DNS source up once: its addresses, or a warning naming the pool (exit 0)', async (t) => {
    const dns = await startDnsServer();
    t.after(() => dns.close());
    dns.set('ok.test', { a: ['127.0.0.31', '127.0.0.32'], ttl: 30 });
    dns.set('_s._tcp.ok.test', { srv: [{ target: 'ok.test', port: 9100, priority: 1, weight: 5 }], ttl: 30 });
    const { file, cleanup } = writeConfig(
      {
        pools: {
          good: { backends: [{ url: 'ws://ok.test:9001', resolve: { resolver: dns.address, timeout: '200ms' } }] },
          srv: { discovery: { dns: '_s._tcp.ok.test', resolver: dns.address, timeout: '200ms' } },
          bad: { backends: [{ url: 'ws://missing.test:9001', resolve: { resolver: dns.address, timeout: '200ms' } }] },
        },
        routes: [{ path: '/', pool: 'good' }, { path: '/s', pool: 'srv' }, { path: '/b', pool: 'bad' }],
      },
      'dns-resolve-check.yaml',
    );
    t.after(cleanup);
    const check = await runCli(['check', '--config', file]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /^pool good: DNS ok\.test gives 127\.0\.0\.31:9001, 127\.0\.0\.32:9001$/m);
    assert.match(check.stdout, /^pool srv: DNS _s\._tcp\.ok\.test gives 127\.0\.0\.31:9100 weight 5, 127\.0\.0\.32:9100 weight 5$/m);
    assert.match(check.stdout, /^warning: pool bad: DNS lookup of missing\.test failed here \(ENOTFOUND\)/m);
    assert.match(check.stdout, /^pool good: .*backends found by DNS \(A\/AAAA ok\.test port 9001/m);
  });
});
