// Pool.pick() and what makes a backend unavailable: here, connects in flight (maxConnectsInFlight).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig } from '../../src/config/load';
import { Pool } from '../../src/upstream/pool';

const config = validateConfig({
  pools: { p: { algorithm: 'round-robin', maxConnectsInFlight: 2, backends: [{ url: 'ws://127.0.0.1:1' }, { url: 'ws://127.0.0.1:2' }, { url: 'ws://127.0.0.1:3', backup: true }] } },
  routes: [{ pool: 'p' }],
});

void describe('Pool maxConnectsInFlight', () => {
  void it('skips a backend with that many connects under way, then the backup, then gives none', () => {
    const pool = new Pool('p', config.pools.p);
    const [a, b, backup] = pool.backends;
    a.connecting = 2;
    for (let i = 0; i < 10; i++) assert.equal(pool.pick('10.0.0.1'), b, 'a is skipped while two connects are under way');
    b.connecting = 2;
    assert.equal(pool.pick('10.0.0.1'), backup, 'the backup takes over when no primary can connect');
    backup.connecting = 2;
    assert.equal(pool.pick('10.0.0.1'), undefined);
    a.connecting = 1;
    assert.equal(pool.pick('10.0.0.1'), a, 'one connect done: a is back');
  });
});

void describe('Pool.pick: backups and tried backends', () => {
  const pools = validateConfig({
    pools: {
      lc: { backends: [{ url: 'ws://127.0.0.1:1' }, { url: 'ws://127.0.0.1:2' }, { url: 'ws://127.0.0.1:3', backup: true }, { url: 'ws://127.0.0.1:4', backup: true }] },
      room: { algorithm: 'hash', hashKey: 'query:room', slowStart: '10s', backends: [{ url: 'ws://127.0.0.1:1' }, { url: 'ws://127.0.0.1:2' }] },
    },
    routes: [{ pool: 'lc' }],
  }).pools;

  void it('never picks a backup while a primary can take the tunnel, whatever the load', () => {
    const pool = new Pool('lc', pools.lc);
    const [a, b] = pool.backends;
    a.active = 1000;
    b.active = 1000;
    for (let i = 0; i < 20; i++) assert.ok(!pool.pick(undefined)!.backup);
  });

  void it('goes to the backups when every primary is down, drained, in maintenance, full or tried; back when one returns', () => {
    const pool = new Pool('lc', pools.lc);
    const [a, b, c, d] = pool.backends;
    a.health = 'down';
    b.admin = 'drain';
    assert.ok([c, d].includes(pool.pick(undefined)!), 'both primaries out: a backup');
    b.admin = 'maintenance';
    assert.ok([c, d].includes(pool.pick(undefined)!));
    b.admin = 'ready';
    assert.equal(pool.pick(undefined), b, 'b ready again: it, not a backup');
    assert.ok([c, d].includes(pool.pick(undefined, new Set([b]))!), 'b already tried for this request: a backup');
    (b as { maxConnections: number }).maxConnections = 1;
    b.elsewhere = 1;
    assert.ok([c, d].includes(pool.pick(undefined)!), 'b full fleet-wide: a backup');
  });

  void it('a retry skips every backend tried, backups included, and then there is none', () => {
    const pool = new Pool('lc', pools.lc);
    const tried = new Set<(typeof pool.backends)[number]>();
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      const b = pool.pick(undefined, tried)!;
      assert.ok(!tried.has(b));
      tried.add(b);
      order.push(b.backup ? 'backup' : 'primary');
    }
    assert.deepEqual(order, ['primary', 'primary', 'backup', 'backup']);
    assert.equal(pool.pick(undefined, tried), undefined);
  });

  void it('with one candidate left it is taken without asking the policy (no decision counted)', () => {
    const pool = new Pool('room', pools.room);
    const [a, b] = pool.backends;
    assert.equal(pool.pick('lobby', new Set([a])), b);
    assert.deepEqual(pool.decisions, [0, 0, 0, 0]);
    pool.pick('lobby');
    assert.equal(pool.decisions.reduce((x, y) => x + y), 1, 'two candidates: the policy decided, and it was counted');
  });

  void it('passes its clock to slow start: a backend that just joined gets a share of the keys that grows with time', () => {
    let clock = 1_000_000;
    const pool = new Pool('room', pools.room, { now: () => clock });
    const [a, b] = pool.backends;
    const share = (): number => {
      let onB = 0;
      for (let i = 0; i < 2000; i++) if (pool.pick(`room-${i}`) === b) onB++;
      return onB / 2000;
    };
    const settled = share();
    b.eligibleSince = clock; // b just came back
    const early = share();
    clock += 9000;
    const late = share();
    assert.ok(early < 0.1, `right after joining b gets few keys (${early})`);
    assert.ok(late > early && late <= settled + 0.01, `more as its ramp goes on (${early} -> ${late}, settled ${settled})`);
    assert.equal(a.eligibleSince, 0);
  });
});
