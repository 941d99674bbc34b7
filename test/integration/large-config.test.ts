// A config larger than one environment string may be (Linux: 128 KiB) reaches every worker: the
// workers get it over IPC, so a pool of thousands of backends starts and serves.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBalancer } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { connectMany, closeClients } from '../helpers/ws-client';

/** Linux's MAX_ARG_STRLEN: the most one environment variable (name=value) may hold. */
const ENV_STRING_MAX = 128 * 1024;

void describe('a large config', { timeout: 120_000 }, () => {
  void it('3,000 backends (config JSON past 128 KiB): every worker starts and serves', async (t) => {
    const backend = await startEchoBackend({ name: 'real' });
    t.after(() => closeAll(backend));
    // 2,999 backends in maintenance (never contacted; TEST-NET-1 addresses) beside one real one.
    const parked = Array.from({ length: 2999 }, (_, i) => ({ url: `ws://192.0.2.${1 + (i % 250)}:${10_000 + i}`, admin: 'maintenance' }));
    const config = {
      pools: { big: { backends: [...parked, { url: backend.url }] } },
      routes: [{ path: '/', pool: 'big' }],
    };
    assert.ok(JSON.stringify(config).length > ENV_STRING_MAX, `the config's JSON is past 128 KiB (${JSON.stringify(config).length} bytes)`);

    const balancer = await startBalancer({ config, readyTimeoutMs: 60_000 });
    t.after(() => balancer.stop());
    assert.equal(balancer.initialPids.length, 2, 'both workers listen');

    // Enough tunnels that both workers take some (SO_REUSEPORT spreads them); each reaches the real backend.
    const clients = await connectMany(20, (i) => balancer.url(`/big?i=${i}`));
    t.after(() => closeClients(clients));
    for (const [i, c] of clients.entries()) assert.equal((await c.request(`m${i}`)).text, `m${i}`);
    assert.equal(backend.connections.length, 20, 'every tunnel went to the one backend not in maintenance');
  });
});
