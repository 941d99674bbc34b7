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
