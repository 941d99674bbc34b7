// pools.*.discovery: its defaults, and one line naming the key for every bad value.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/load';

function config(pool: Record<string, unknown>): unknown {
  return { pools: { chat: pool }, routes: [{ pool: 'chat' }] };
}

function errorOf(raw: unknown): string {
  try {
    validateConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'one line');
    return err.message;
  }
  assert.fail('expected a config error');
}

void describe('discovery config', () => {
  void it('a pool may have no written backends when DNS finds them; defaults as documented', () => {
    const c = validateConfig(config({ discovery: { dns: 'chat.internal', port: 9001, resolver: '10.0.0.2:53' } }));
    const d = c.pools.chat.discovery!;
    assert.deepEqual(c.pools.chat.backends, []);
    assert.deepEqual(d.resolver, ['10.0.0.2:53'], 'one server becomes a list');
    assert.deepEqual([d.minTtl, d.maxTtl, d.timeout, d.drainTimeout, d.maxBackends, d.weight], [1000, 300_000, 2000, 300_000, 256, 1]);
    assert.equal(validateConfig(config({ discovery: { dns: '_chat._tcp.chat.internal', resolver: ['[fd00::2]:53', '10.0.0.3'] } })).pools.chat.discovery?.port, undefined);
  });

  void it('refuses what cannot work, naming the key', () => {
    assert.match(errorOf(config({})), /pools\.chat\.backends: needs at least one backend \(or discovery\)/);
    assert.match(errorOf(config({ discovery: { dns: 'chat.internal' } })), /pools\.chat\.discovery\.port: is required with an A\/AAAA name/);
    assert.match(errorOf(config({ discovery: { dns: '_chat._tcp.chat.internal', port: 9001 } })), /pools\.chat\.discovery\.port: not with an SRV name/);
    assert.match(errorOf(config({ discovery: { dns: 'chat.internal', port: 9001, resolver: 'dns.example:53' } })), /pools\.chat\.discovery\.resolver\[0\]: must be an IP address/);
    assert.match(errorOf(config({ discovery: { dns: 'chat internal', port: 9001 } })), /pools\.chat\.discovery\.dns: must be a DNS name/);
    assert.match(errorOf(config({ discovery: { dns: 'chat.internal', port: 9001, minTtl: '10s', maxTtl: '5s' } })), /pools\.chat\.discovery\.maxTtl: must be at least minTtl/);
    assert.match(errorOf(config({ discovery: { dns: 'chat.internal', port: 9001, minTtl: '0s' } })), /pools\.chat\.discovery\.minTtl: must be at least 1s/);
  });
});
