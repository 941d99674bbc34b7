// The balancing policies are pure: tested with plain candidate objects, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seeded } from '../../bench/fleet-sim';
import { configSchema } from '../../src/config/schema';
import { createLoadBalancer } from '../../src/load-balancer';
import { LeastConnections } from '../../src/load-balancer/least-connections';
import { RoundRobin } from '../../src/load-balancer/round-robin';

interface C {
  name: string;
  weight: number;
  active: number;
}
const backends = (n: number, weight = 1): C[] => Array.from({ length: n }, (_, i) => ({ name: `10.0.0.${i + 1}:9000`, weight, active: 0 }));

describe('least-connections', () => {
  it('spreads a burst evenly when every backend starts at zero', () => {
    const pool = backends(4);
    const lb = new LeastConnections();
    for (let i = 0; i < 40; i++) lb.pick(pool, undefined, 0).active++;
    assert.deepEqual(pool.map((b) => b.active), [10, 10, 10, 10]);
  });

  it('sends new tunnels to the least loaded backend (rebalance after closes)', () => {
    const pool = backends(3);
    pool[0].active = 10;
    pool[1].active = 10;
    pool[2].active = 2;
    const lb = new LeastConnections();
    for (let i = 0; i < 8; i++) lb.pick(pool, undefined, 0).active++;
    assert.deepEqual(pool.map((b) => b.active), [10, 10, 10]);
  });

  it('is weight-aware: weight 3 gets three times the tunnels', () => {
    const pool = [{ name: 'a', weight: 3, active: 0 }, { name: 'b', weight: 1, active: 0 }];
    const lb = new LeastConnections();
    for (let i = 0; i < 40; i++) lb.pick(pool, undefined, 0).active++;
    assert.deepEqual(pool.map((b) => b.active), [30, 10]);
  });

  it('breaks ties by rotating, not by always taking the first', () => {
    const pool = backends(3);
    const lb = new LeastConnections();
    const picked = new Set<string>();
    for (let i = 0; i < 3; i++) picked.add(lb.pick(pool, undefined, 0).name); // counts never change: all tie
    assert.equal(picked.size, 3);
  });
});

describe('round-robin', () => {
  it('cycles through equal backends', () => {
    const pool = backends(3);
    const lb = new RoundRobin();
    assert.deepEqual(Array.from({ length: 6 }, () => lb.pick(pool, undefined, 0).name.split(':')[0]), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3']);
  });

  it('interleaves weights smoothly (NGINX order for 5,1,1)', () => {
    const pool = [{ name: 'a', weight: 5, active: 0 }, { name: 'b', weight: 1, active: 0 }, { name: 'c', weight: 1, active: 0 }];
    const lb = new RoundRobin();
    assert.equal(Array.from({ length: 7 }, () => lb.pick(pool, undefined, 0).name).join(''), 'aabacaa');
  });
});

describe('createLoadBalancer', () => {
  it('builds what the schema\'s defaults say: least-connections with the p2c herding guard', () => {
    const config = configSchema.parse({ pools: { chat: { backends: [{ url: 'ws://127.0.0.1:9000' }] } }, routes: [{ pool: 'chat' }] });
    const pool = backends(4);
    pool[0].active = 10;
    pool[1].active = 10;
    pool[2].active = 10; // the last one is the emptiest: a full scan always takes it, p2c only when it is drawn
    const lb = createLoadBalancer(config.pools.chat, seeded(3));
    const picks = new Set(Array.from({ length: 20 }, () => lb.pick(pool, undefined, 0).name));
    assert.ok(picks.size > 1, `every pick went to ${[...picks].join(',')}: not p2c`);
  });
});
