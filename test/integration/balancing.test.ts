// Balancing algorithms: least-connections spread and rebalance, round-robin, ip-hash stickiness and
// the small reshuffle when a backend is removed.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { startBalancer, type Balancer, type StartOptions } from '../helpers/balancer';
import { closeAll, startEchoBackends, type EchoBackend } from '../helpers/backends';
import { closeClients, connect, connectMany, type TestClient } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';

async function setup(t: TestContext, backendCount: number, algorithm: string, extra: StartOptions = {}): Promise<{ backends: EchoBackend[]; balancer: Balancer; clients: TestClient[] }> {
  const backends = await startEchoBackends(backendCount);
  const clients: TestClient[] = [];
  t.after(async () => {
    for (const c of clients) c.terminate();
    await closeAll(...backends);
  });
  const balancer = await startBalancer({ args: [...backends.flatMap((b) => ['--backend', b.url]), '--algorithm', algorithm], ...extra });
  t.after(() => balancer.stop());
  return { backends, balancer, clients };
}

function countBy<T>(items: readonly T[]): Map<T, number> {
  const m = new Map<T, number>();
  for (const x of items) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

void describe('least-connections', { timeout: 60_000 }, () => {
  void it('spreads 40 connections over 2 backends (16..24 each) and sends new ones to the emptied backend', async (t) => {
    const { backends, balancer, clients } = await setup(t, 2, 'least-connections');
    const [a, b] = backends as [EchoBackend, EchoBackend];
    clients.push(...(await connectMany(40, (i) => balancer.url(`/lc?i=${i}`))));
    await waitFor(() => a.openCount() + b.openCount() === 40, 3000, 'all 40 tunnels on the backends');
    for (const backend of [a, b]) {
      const n = backend.openCount();
      assert.ok(n >= 16 && n <= 24, `${backend.name} has ${n} of 40 tunnels, expected 16..24`);
    }

    // Which client is on which backend (the backends answer "whoami" with their name).
    const names = await Promise.all(clients.map((c) => c.whoami()));
    const onA = clients.filter((_, i) => names[i] === a.name);
    assert.equal(onA.length, a.openCount());
    await closeClients(onA);
    await waitFor(() => a.openCount() === 0, 5000, `${a.name} to lose all its tunnels`);

    const fresh = await connectMany(8, (i) => balancer.url(`/lc-new?i=${i}`));
    clients.push(...fresh);
    const freshNames = await Promise.all(fresh.map((c) => c.whoami()));
    assert.deepEqual(freshNames, Array<string>(8).fill(a.name), `all 8 new tunnels go to the emptied backend ${a.name}`);
    assert.equal(b.openCount(), 40 - onA.length, `${b.name} kept its tunnels`);
  });
});

void describe('round-robin', { timeout: 60_000 }, () => {
  void it('alternates backends regardless of their open tunnel counts', async (t) => {
    const { backends, balancer, clients } = await setup(t, 2, 'round-robin');
    const [a, b] = backends as [EchoBackend, EchoBackend];
    const first = await connectMany(20, (i) => balancer.url(`/rr?i=${i}`));
    clients.push(...first);
    const names = await Promise.all(first.map((c) => c.whoami()));
    const counts = countBy(names);
    for (const backend of [a, b]) {
      const n = counts.get(backend.name) ?? 0;
      // Each worker alternates on its own, so the split is exact up to one per worker.
      assert.ok(n >= 9 && n <= 11, `${backend.name} got ${n} of 20 round-robin tunnels, expected 9..11`);
    }

    // Empty b; least-connections would now send everything to b, round-robin keeps alternating.
    await closeClients(first.filter((_, i) => names[i] === b.name));
    await waitFor(() => b.openCount() === 0, 5000, `${b.name} to lose its tunnels`);
    const second = await connectMany(10, (i) => balancer.url(`/rr2?i=${i}`));
    clients.push(...second);
    const secondCounts = countBy(await Promise.all(second.map((c) => c.whoami())));
    for (const backend of [a, b]) {
      const n = secondCounts.get(backend.name) ?? 0;
      assert.ok(n >= 4 && n <= 6, `${backend.name} got ${n} of 10 later round-robin tunnels, expected 4..6`);
    }
  });
});

const IPS = Array.from({ length: 40 }, (_, i) => `127.0.0.${i + 2}`);
/** More addresses for the removal test, so that "about a quarter moves" is not at the mercy of chance. */
const MANY_IPS = Array.from({ length: 100 }, (_, i) => `127.0.${1 + Math.floor(i / 50)}.${(i % 50) + 2}`);

/** ip -> backend name, one short tunnel per source address. */
async function mapIps(balancer: Balancer, path: string, ips: readonly string[] = IPS): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  for (const ip of ips) {
    const c = await connect(balancer.url(`${path}?ip=${ip}`), { localAddress: ip });
    try {
      map.set(ip, await c.whoami());
    } finally {
      await c.close();
    }
  }
  return map;
}

void describe('ip-hash', { timeout: 90_000 }, () => {
  void it('sends each client IP to the same backend on every reconnect', async (t) => {
    const { balancer, clients } = await setup(t, 4, 'ip-hash');
    const first = await mapIps(balancer, '/sticky');
    const second = await mapIps(balancer, '/sticky-again');
    for (const ip of IPS) assert.equal(second.get(ip), first.get(ip), `${ip} moved from ${first.get(ip)} to ${second.get(ip)}`);
    const used = new Set(first.values());
    assert.ok(used.size >= 2, `40 IPs all hashed to ${[...used].join(',')}; expected a spread`);

    // Several simultaneous tunnels from one IP share its backend (whichever worker accepts them).
    const ip = IPS[5];
    const same = await connectMany(6, (i) => balancer.url(`/same?i=${i}`), () => ({ localAddress: ip }));
    clients.push(...same);
    const names = await Promise.all(same.map((c) => c.whoami()));
    assert.deepEqual(names, Array<string>(6).fill(first.get(ip)!));
  });

  void it('moves only the IPs of a removed backend (about 1/N)', async (t) => {
    const backends = await startEchoBackends(4, 'h');
    t.after(() => closeAll(...backends));
    const args = (list: EchoBackend[]): string[] => [...list.flatMap((b) => ['--backend', b.url]), '--algorithm', 'ip-hash'];

    const before = await startBalancer({ args: args(backends) });
    t.after(() => before.stop());
    const map4 = await mapIps(before, '/map4', MANY_IPS);
    await before.stop();

    const removed = backends[1];
    const after = await startBalancer({ args: args(backends.filter((b) => b !== removed)) });
    t.after(() => after.stop());
    const map3 = await mapIps(after, '/map3', MANY_IPS);

    let moved = 0;
    const onRemoved = [...map4.values()].filter((n) => n === removed.name).length;
    for (const ip of MANY_IPS) {
      const was = map4.get(ip)!;
      const now = map3.get(ip)!;
      assert.notEqual(now, removed.name, 'nothing lands on the removed backend');
      if (was !== now) moved++;
      if (was !== removed.name) assert.equal(now, was, `${ip} was on ${was} (still present) but moved to ${now}`);
    }
    assert.equal(moved, onRemoved, 'exactly the IPs of the removed backend moved');
    // A fair hash puts about 25 of 100 on each backend (mod-N hashing would move about 75).
    assert.ok(moved <= 40, `${moved} of 100 IPs moved; expected about a quarter (those of the removed backend)`);
  });
});
