// pools.*.discovery and a backend's `resolve`: their defaults, and one line naming the key for every bad value.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/load';
import { checkBackendTlsFiles } from '../../src/config/tls-files';
import { sourcesOf } from '../../src/discovery/discovery';

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

  void it('a backend with resolve is a DNS source of its pool, with the lookup defaults or its own; refused on an IP address', () => {
    const c = validateConfig(config({ backends: [{ url: 'ws://chat.internal:9001', resolve: true, weight: 3 }, { url: 'ws://10.0.0.9:9001' }, { url: 'ws://b.internal:9002', resolve: { resolver: '10.0.0.2', minTtl: '5s' } }] }));
    const [a, b] = sourcesOf(c.pools.chat);
    assert.deepEqual([a.dns, a.port, a.minTtl, a.maxTtl, a.resolver, a.template.weight, a.template.resolve], ['chat.internal', 9001, 1000, 300_000, undefined, 3, false]);
    assert.deepEqual([b.dns, b.port, b.minTtl, b.resolver], ['b.internal', 9002, 5000, ['10.0.0.2']]);
    assert.equal(sourcesOf(c.pools.chat).length, 2, 'the fixed backend is no source');
    const tls = validateConfig(config({ tls: { verify: false }, backends: [{ url: 'wss://secure.internal', resolve: true, tls: { ca: 'ca.pem' } }] }));
    const [w] = sourcesOf(tls.pools.chat);
    assert.deepEqual([w.port, w.template.url, w.template.tls], [443, 'wss://secure.internal', { ca: 'ca.pem', serverName: 'secure.internal' }], 'over TLS each address is asked for the written name');
    const pooled = validateConfig(config({ tls: { ca: 'ca.pem' }, discovery: { dns: '_chat._tcp.chat.internal', tls: true } }));
    const [p] = sourcesOf(pooled.pools.chat);
    assert.deepEqual([p.template.url, p.template.tls], ['wss://0.0.0.0:1', { serverName: 'chat.internal' }], 'discovery.tls: wss:// backends, the service name for SNI, the pool\'s tls for the rest');
    assert.equal(sourcesOf(validateConfig(config({ discovery: { dns: 'chat.internal', port: 9001 } })).pools.chat)[0].template.url, 'ws://0.0.0.0:1', 'plain by default');
    assert.throws(() => checkBackendTlsFiles(pooled.pools), /config error: pools\.chat\.tls\.ca: cannot read \S*ca\.pem/, 'the pool\'s TLS files are checked at start for discovered TLS backends too');
    assert.match(errorOf(config({ backends: [{ url: 'ws://10.0.0.9:9001', resolve: true }] })), /^config error: pools\.chat\.backends\[0\]\.resolve: 10\.0\.0\.9 is an IP address: nothing to resolve/);
    assert.match(errorOf(config({ backends: [{ url: 'ws://[fd00::9]:9001', resolve: true }] })), /pools\.chat\.backends\[0\]\.resolve: fd00::9 is an IP address/);
    assert.match(errorOf(config({ backends: [{ url: 'ws://chat.internal:9001', resolve: { minTtl: '0s' } }] })), /pools\.chat\.backends\[0\]\.resolve\.minTtl: must be at least 1s/);
  });
});
