// The hash policy, pure: weighted rendezvous consistency, bounded loads (spill order, the bound
// itself, coming back), the fallback for keyless requests, and what each pick is counted as.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seeded, zipf } from '../../bench/fleet-sim';
import { createLoadBalancer } from '../../src/load-balancer';
import { Hash, rendezvousScore } from '../../src/load-balancer/hash';
import { compileHashKey } from '../../src/load-balancer/hash-key';
import { LeastConnections } from '../../src/load-balancer/least-connections';
import { Decision } from '../../src/load-balancer/load-balancer';
import type { ClientRequest } from '../../src/client-request';

interface C {
  name: string;
  weight: number;
  active: number;
  connections?: number;
}
const backends = (n: number, weight = 1): C[] => Array.from({ length: n }, (_, i) => ({ name: `10.0.0.${i + 1}:9000`, weight, active: 0 }));
const ips = (n: number): string[] => Array.from({ length: n }, (_, i) => `192.168.${(i >> 8) & 0xff}.${i & 0xff}`);
const rooms = (n: number): string[] => Array.from({ length: n }, (_, i) => `room-${i}`);
const hash = (balanceFactor = 0): Hash => new Hash({ fallback: new LeastConnections(), balanceFactor });

/** Each key's backend, every backend at 0 tunnels (no bound in play). */
function mapping(lb: Hash, pool: readonly C[], keys: readonly string[]): string[] {
  return keys.map((k) => lb.pick(pool, k, 0).name);
}

void describe('hash (weighted rendezvous)', () => {
  void it('maps the same key to the same backend every time, whatever the order of candidates', () => {
    const pool = backends(5);
    const lb = hash();
    for (const key of rooms(200)) assert.equal(lb.pick([...pool].reverse(), key, 0).name, lb.pick(pool, key, 0).name);
  });

  void it('spreads keys roughly evenly and honours weights', () => {
    const counts = new Map<string, number>();
    for (const name of mapping(hash(), backends(4), rooms(4000))) counts.set(name, (counts.get(name) ?? 0) + 1);
    for (const n of counts.values()) assert.ok(n > 800 && n < 1200, `uneven spread ${[...counts.values()].join(',')}`);
    const weighted = [{ name: 'heavy', weight: 3, active: 0 }, { name: 'light', weight: 1, active: 0 }];
    const heavy = mapping(hash(), weighted, rooms(4000)).filter((n) => n === 'heavy').length;
    assert.ok(heavy > 2800 && heavy < 3200, `heavy got ${heavy} of 4000`);
  });

  void it('removing one of N backends moves only its own keys (~1/N), each to its second choice', (t) => {
    const n = 5;
    const pool = backends(n);
    const keys = rooms(5000);
    const lb = hash();
    const before = mapping(lb, pool, keys);
    const removed = pool[2].name;
    const after = mapping(lb, pool.filter((b) => b.name !== removed), keys);
    let moved = 0;
    keys.forEach((key, i) => {
      if (before[i] === after[i]) return;
      moved++;
      assert.equal(before[i], removed, `${key} was on ${before[i]}, which stayed, yet moved`);
      // Its second choice: the best of the others by its own score.
      const second = pool.filter((b) => b.name !== removed).sort((a, b) => rendezvousScore(key, b.name, b.weight) - rendezvousScore(key, a.name, a.weight))[0];
      assert.equal(after[i], second.name);
    });
    t.diagnostic(`removing 1 of ${n}: ${((moved / keys.length) * 100).toFixed(1)}% of keys moved`);
    assert.ok(moved / keys.length > 0.15 && moved / keys.length < 0.25, `moved ${moved}`);
  });

  void it('adding a backend takes ~1/(N+1) of the keys, all of them to the newcomer', () => {
    const pool = backends(4);
    const keys = rooms(5000);
    const lb = hash();
    const before = mapping(lb, pool, keys);
    const grown = [...pool, { name: '10.0.0.99:9000', weight: 1, active: 0 }];
    const after = mapping(lb, grown, keys);
    const moved = keys.filter((_, i) => before[i] !== after[i]);
    for (const key of moved) assert.equal(after[keys.indexOf(key)], '10.0.0.99:9000', `${key} moved between two old backends`);
    assert.ok(moved.length / keys.length > 0.15 && moved.length / keys.length < 0.25, `moved ${moved.length} of 5000`);
  });

  void it('a request without a key is balanced by least-connections and counted as fallback', () => {
    const pool = backends(3);
    pool[0].active = 5;
    pool[1].active = 5;
    const lb = hash();
    assert.equal(lb.pick(pool, undefined, 0).name, pool[2].name);
    assert.equal(lb.decision, Decision.Fallback);
    lb.pick(pool, 'room-1', 0);
    assert.equal(lb.decision, Decision.Hashed);
  });
});

/**
 * The server NGINX's ip_hash picks for an IPv4 client among `servers` of weight 1 that are all up
 * (ngx_http_upstream_ip_hash_module.c, ngx_http_upstream_get_ip_hash_peer: the hash starts at 89
 * and takes the first three octets, `hash = (hash * 113 + octet) % 6271`; then hash % total weight).
 */
function nginxIpHash(ip: string, servers: number): number {
  let hash = 89;
  for (const octet of ip.split('.').slice(0, 3)) hash = (hash * 113 + Number(octet)) % 6271;
  return hash % servers;
}

void describe('hash with ip/24 against NGINX ip_hash', () => {
  const request = (ip: string): ClientRequest => ({ method: 'GET', url: '/', peerIp: ip, headers: [], secure: false });
  const key24 = compileHashKey('ip/24');
  const clients = ips(5000);

  void it('keys on the /24 as NGINX ip_hash does: a /24 shares one backend', () => {
    const lb = hash();
    const pool = backends(5);
    const byNetwork = new Map<string, Set<string>>();
    for (const ip of clients) {
      const network = ip.slice(0, ip.lastIndexOf('.'));
      const set = byNetwork.get(network) ?? new Set<string>();
      set.add(lb.pick(pool, key24(request(ip), ip), 0).name);
      byNetwork.set(network, set);
    }
    assert.ok(byNetwork.size >= 10);
    for (const [network, names] of byNetwork) assert.equal(names.size, 1, `${network}.0/24 spread over ${[...names].join(', ')}`);
    // NGINX keeps a /24 together too (the model below is its algorithm, not ours).
    for (const network of byNetwork.keys()) assert.equal(nginxIpHash(`${network}.1`, 5), nginxIpHash(`${network}.254`, 5));
  });

  void it('removing one of 5 backends moves ~1/5 of the /24 networks; NGINX\'s /24 modulo the server count moves most', (t) => {
    const addresses = Array.from({ length: 3000 }, (_, i) => `10.${(i >> 8) & 0xff}.${i & 0xff}.7`);
    const n = 5;
    const pool = backends(n);
    const survivors = pool.filter((_, i) => i !== 2);
    const lb = hash();
    const networks = addresses.map((ip) => key24(request(ip), ip)!);
    const moved = networks.filter((k) => lb.pick(pool, k, 0).name !== lb.pick(survivors, k, 0).name).length / networks.length;
    // NGINX's own choice for the same clients, equal weights, the server removed from the config.
    const survivorIndex = pool.map((_, i) => i).filter((i) => i !== 2);
    const movedModulo = addresses.filter((ip) => nginxIpHash(ip, n) !== survivorIndex[nginxIpHash(ip, n - 1)]).length / addresses.length;
    t.diagnostic(`removing 1 of ${n}: hash ip/24 moved ${(moved * 100).toFixed(1)}% of networks, NGINX ip_hash ${(movedModulo * 100).toFixed(1)}%`);
    assert.ok(moved > 0.15 && moved < 0.25, `moved ${moved}`);
    assert.ok(movedModulo > 0.6, `NGINX ip_hash moved ${movedModulo}`);
  });
});

void describe('hash with bounded loads (balanceFactor)', () => {
  void it('a key whose backend is full goes to the next backend of its own order, and comes back when the load falls', () => {
    const pool: C[] = backends(4);
    const key = 'room-hot';
    const order = [...pool].sort((a, b) => rendezvousScore(key, b.name, 1) - rendezvousScore(key, a.name, 1)).map((b) => b.name);
    const lb = hash(1.25);
    const at = (name: string): C => pool.find((b) => b.name === name)!;
    for (const b of pool) b.connections = 5;
    assert.equal(lb.pick(pool, key, 0).name, order[0]);
    assert.equal(lb.decision, Decision.Hashed);
    // 20 on its own backend, 5 on each other: capacity ceil(1.25 x 36 / 4) = 12 is exceeded.
    at(order[0]).connections = 20;
    assert.equal(lb.pick(pool, key, 0).name, order[1]);
    assert.equal(lb.decision, Decision.Spilled);
    // Its second is over too (capacity ceil(1.25 x 51 / 4) = 16): the third.
    at(order[1]).connections = 20;
    assert.equal(lb.pick(pool, key, 0).name, order[2]);
    // The load falls: home again.
    at(order[0]).connections = 5;
    at(order[1]).connections = 5;
    assert.equal(lb.pick(pool, key, 0).name, order[0]);
    assert.equal(lb.decision, Decision.Hashed);
  });

  void it('holds every backend to ceil(balanceFactor x mean) on a Zipf room load; unbounded, the hot room piles up', (t) => {
    const draw = zipf(300, 1.1, seeded(7));
    const keys = Array.from({ length: 3000 }, () => `room-${draw()}`);
    const place = (balanceFactor: number): number[] => {
      const pool: C[] = backends(10).map((b) => ({ ...b, connections: 0 }));
      const lb = hash(balanceFactor);
      for (const key of keys) {
        const b = lb.pick(pool, key, 0);
        b.connections!++;
        b.active++;
      }
      return pool.map((b) => b.connections!);
    };
    const bounded = place(1.25);
    const unbounded = place(0);
    const mean = 300;
    t.diagnostic(`max/mean unbounded ${(Math.max(...unbounded) / mean).toFixed(2)}, bounded 1.25: ${(Math.max(...bounded) / mean).toFixed(2)}`);
    assert.ok(Math.max(...bounded) <= Math.ceil(1.25 * mean), `bounded loads ${bounded.join(',')}`);
    assert.ok(Math.max(...unbounded) > 1.5 * mean, `the Zipf load must pile up without the bound: ${unbounded.join(',')}`);
  });

  void it('the spill is deterministic: every balancer sends a full key to the same next backend', () => {
    const pool: C[] = backends(5).map((b) => ({ ...b, connections: 3 }));
    const key = 'room-7';
    const home = hash().pick(pool, key, 0);
    home.connections = 40;
    const picks = new Set(Array.from({ length: 10 }, () => createLoadBalancer({ algorithm: 'hash', herdingGuard: 'p2c', balanceFactor: 1.5, slowStart: 0 }).pick(pool, key, 0).name));
    assert.equal(picks.size, 1);
    assert.notEqual([...picks][0], home.name);
  });
});
