// The balancing policies are pure: tested with plain candidate objects, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IpHash, hash32 } from '../../src/load-balancer/ip-hash';
import { LeastConnections } from '../../src/load-balancer/least-connections';
import { RoundRobin } from '../../src/load-balancer/round-robin';

interface C {
  name: string;
  weight: number;
  active: number;
}
const backends = (n: number, weight = 1): C[] => Array.from({ length: n }, (_, i) => ({ name: `10.0.0.${i + 1}:9000`, weight, active: 0 }));
const ips = (n: number): string[] => Array.from({ length: n }, (_, i) => `192.168.${(i >> 8) & 0xff}.${i & 0xff}`);

describe('least-connections', () => {
  it('spreads a burst evenly when every backend starts at zero', () => {
    const pool = backends(4);
    const lb = new LeastConnections();
    for (let i = 0; i < 40; i++) lb.pick(pool, '').active++;
    assert.deepEqual(pool.map((b) => b.active), [10, 10, 10, 10]);
  });

  it('sends new tunnels to the least loaded backend (rebalance after closes)', () => {
    const pool = backends(3);
    pool[0].active = 10;
    pool[1].active = 10;
    pool[2].active = 2;
    const lb = new LeastConnections();
    for (let i = 0; i < 8; i++) lb.pick(pool, '').active++;
    assert.deepEqual(pool.map((b) => b.active), [10, 10, 10]);
  });

  it('is weight-aware: weight 3 gets three times the tunnels', () => {
    const pool = [{ name: 'a', weight: 3, active: 0 }, { name: 'b', weight: 1, active: 0 }];
    const lb = new LeastConnections();
    for (let i = 0; i < 40; i++) lb.pick(pool, '').active++;
    assert.deepEqual(pool.map((b) => b.active), [30, 10]);
  });

  it('breaks ties by rotating, not by always taking the first', () => {
    const pool = backends(3);
    const lb = new LeastConnections();
    const picked = new Set<string>();
    for (let i = 0; i < 3; i++) picked.add(lb.pick(pool, '').name); // counts never change: all tie
    assert.equal(picked.size, 3);
  });
});

describe('round-robin', () => {
  it('cycles through equal backends', () => {
    const pool = backends(3);
    const lb = new RoundRobin();
    assert.deepEqual(Array.from({ length: 6 }, () => lb.pick(pool, '').name.split(':')[0]), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3']);
  });

  it('interleaves weights smoothly (NGINX order for 5,1,1)', () => {
    const pool = [{ name: 'a', weight: 5, active: 0 }, { name: 'b', weight: 1, active: 0 }, { name: 'c', weight: 1, active: 0 }];
    const lb = new RoundRobin();
    assert.equal(Array.from({ length: 7 }, () => lb.pick(pool, '').name).join(''), 'aabacaa');
  });
});

describe('ip-hash (weighted rendezvous)', () => {
  it('maps the same IP to the same backend every time, whatever the order of candidates', () => {
    const pool = backends(5);
    const lb = new IpHash();
    for (const ip of ips(200)) {
      const first = lb.pick(pool, ip).name;
      assert.equal(lb.pick([...pool].reverse(), ip).name, first);
    }
  });

  it('spreads clients roughly evenly', () => {
    const pool = backends(4);
    const lb = new IpHash();
    const counts = new Map<string, number>();
    for (const ip of ips(4000)) {
      const name = lb.pick(pool, ip).name;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    for (const n of counts.values()) assert.ok(n > 800 && n < 1200, `uneven spread ${[...counts.values()].join(',')}`);
  });

  it('removing one of N backends moves only its own clients (~1/N); NGINX-style modulo moves most', (t) => {
    const n = 5;
    const pool = backends(n);
    const clients = ips(5000);
    const lb = new IpHash();
    const before = clients.map((ip) => lb.pick(pool, ip).name);
    const removed = pool[2].name;
    const after = clients.map((ip) => lb.pick(pool.filter((b) => b.name !== removed), ip).name);
    let moved = 0;
    clients.forEach((_, i) => {
      if (before[i] !== after[i]) {
        moved++;
        assert.equal(before[i], removed, 'a client not on the removed backend moved');
      }
    });
    // NGINX ip_hash model: hash of the client's /24 modulo the number of servers.
    const modulo = (ip: string, servers: number): number => hash32(ip.split('.').slice(0, 3).join('.') + '.' + ip.split('.')[3]) % servers;
    const movedModulo = clients.filter((ip) => {
      const b = modulo(ip, n);
      const survivors = pool.map((_, i) => i).filter((i) => i !== 2);
      return b !== survivors[modulo(ip, n - 1)];
    }).length;
    const share = moved / clients.length;
    const shareModulo = movedModulo / clients.length;
    t.diagnostic(`removing 1 of ${n}: rendezvous moved ${(share * 100).toFixed(1)}% of clients, modulo hashing ${(shareModulo * 100).toFixed(1)}%`);
    assert.ok(share > 0.15 && share < 0.25, `moved ${share}`);
    assert.ok(shareModulo > 0.6, `modulo moved ${shareModulo}`);
  });

  it('honours weights', () => {
    const pool = [{ name: 'heavy', weight: 3, active: 0 }, { name: 'light', weight: 1, active: 0 }];
    const lb = new IpHash();
    const heavy = ips(4000).filter((ip) => lb.pick(pool, ip).name === 'heavy').length;
    assert.ok(heavy > 2800 && heavy < 3200, `heavy got ${heavy} of 4000`);
  });
});
