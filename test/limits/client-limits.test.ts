// The per-client limit policy (src/client-limits.ts): tunnels per IP, the upgrade bucket kept as
// debt, counts held elsewhere, the hot-IP report and the forgetting that bounds its memory.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClientLimits, MAX_REPORTED_CLIENTS } from '../../src/client-limits';

const limits = (maxTunnels: number, upgradesPerSecond: number, upgradeBurst: number): ClientLimits => new ClientLimits({ maxTunnels, upgradesPerSecond, upgradeBurst });
const label = (r: ReturnType<ClientLimits['admit']>): string => r?.outcome.label ?? 'ok';

describe('client limits', () => {
  it('caps the tunnels one IP holds; a released tunnel makes room; other IPs are not affected', () => {
    const l = limits(3, 0, 1);
    assert.deepEqual([1, 2, 3, 4].map(() => label(l.admit('10.0.0.1', 0))), ['ok', 'ok', 'ok', 'client_tunnel_limit']);
    assert.equal(l.admit('10.0.0.1', 0)?.retryAfter, 10);
    assert.equal(label(l.admit('10.0.0.2', 0)), 'ok');
    l.release('10.0.0.1');
    assert.equal(label(l.admit('10.0.0.1', 1)), 'ok');
    assert.equal(l.admit('10.0.0.1', 1)?.outcome.status, 429);
  });

  it('lets a burst through, then upgradesPerSecond; Retry-After says when the next one would pass', () => {
    const l = limits(0, 2, 3);
    const at0 = [1, 2, 3, 4].map(() => label(l.admit('10.0.0.1', 0)));
    assert.deepEqual(at0, ['ok', 'ok', 'ok', 'client_rate_limit']);
    assert.equal(l.admit('10.0.0.1', 0)?.retryAfter, 1);
    assert.equal(label(l.admit('10.0.0.1', 400)), 'client_rate_limit', '0.8 of an upgrade paid back');
    assert.equal(label(l.admit('10.0.0.1', 500)), 'ok', 'one paid back at 2/s');
    assert.equal(label(l.admit('10.0.0.1', 500)), 'client_rate_limit');
    // A refused upgrade takes nothing: asking harder does not push the next one back.
    for (let i = 0; i < 100; i++) l.admit('10.0.0.1', 600);
    assert.equal(label(l.admit('10.0.0.1', 1000)), 'ok');
    // Long idle: the whole burst again, no more.
    assert.deepEqual([1, 2, 3, 4].map(() => label(l.admit('10.0.0.1', 60_000))), ['ok', 'ok', 'ok', 'client_rate_limit']);
    assert.equal(l.admit('10.0.0.1', 60_000)?.retryAfter, 1);
    const slow = limits(0, 0.1, 1);
    slow.admit('10.0.0.9', 0);
    assert.equal(slow.admit('10.0.0.9', 0)?.retryAfter, 10, 'ten seconds at 0.1/s');
  });

  it('counts what other workers and machines hold against the same limits', () => {
    const tunnels = limits(4, 0, 1);
    tunnels.setElsewhere([['10.0.0.1', 3, 0]]);
    assert.deepEqual([1, 2].map(() => label(tunnels.admit('10.0.0.1', 0))), ['ok', 'client_tunnel_limit']);
    // Left out of the next report: nothing held elsewhere any more.
    tunnels.setElsewhere([]);
    assert.deepEqual([1, 2, 3, 4].map(() => label(tunnels.admit('10.0.0.1', 0))), ['ok', 'ok', 'ok', 'client_tunnel_limit']);

    const rate = limits(0, 10, 10);
    rate.setElsewhere([['10.0.0.2', 0, 8]]);
    assert.deepEqual([1, 2, 3].map(() => label(rate.admit('10.0.0.2', 0))), ['ok', 'ok', 'client_rate_limit']);
    // This worker holds 2 of the 10 of debt: it pays back its fifth of 10/s, 1 in half a second ...
    assert.equal(label(rate.admit('10.0.0.2', 499)), 'client_rate_limit');
    // ... and the other worker the rest, which its next report says.
    rate.setElsewhere([['10.0.0.2', 0, 4]]);
    const after = Array.from({ length: 8 }, () => label(rate.admit('10.0.0.2', 500)));
    // About 1 here and 4 there: room for about 5 more, not the 8 a worker alone would allow.
    assert.ok(after.indexOf('client_rate_limit') >= 4 && after.indexOf('client_rate_limit') <= 5, after.join());
  });

  it('reports the IPs near a limit only, the most tunnels first, bounded', () => {
    // Thresholds: 1/64 of maxTunnels, 1/8 of upgradeBurst.
    const byDebt = limits(6400, 20, 80);
    for (let t = 0; t < 10; t++) byDebt.admit('10.0.0.1', 0);
    for (let t = 0; t < 9; t++) byDebt.admit('10.0.0.2', 0);
    assert.deepEqual(byDebt.report(0), [['10.0.0.1', 10, 10]]);
    const byTunnels = limits(640, 0, 1);
    for (let t = 0; t < 10; t++) byTunnels.admit('10.0.0.1', 0);
    for (let t = 0; t < 9; t++) byTunnels.admit('10.0.0.2', 0);
    assert.deepEqual(byTunnels.report(0), [['10.0.0.1', 10, 0]]);
    const many = limits(64, 0, 1);
    for (let i = 0; i < MAX_REPORTED_CLIENTS + 500; i++) for (let t = 0; t <= i % 3; t++) many.admit(`10.1.${i >> 8}.${i & 255}`, 0);
    const report = many.report(0);
    assert.equal(report.length, MAX_REPORTED_CLIENTS);
    assert.ok(report.every(([, tunnels]) => tunnels === 3) || report[report.length - 1][1] <= report[0][1]);
  });

  it('forgets an IP once it holds no tunnel and its upgrades are paid back: many IPs do not grow it without bound', () => {
    const l = limits(1024, 20, 100);
    for (let i = 0; i < 100_000; i++) {
      const ip = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
      assert.equal(l.admit(ip, i / 100), null);
      l.release(ip);
    }
    assert.equal(l.size, 100_000);
    l.report(1050); // the last upgrade is 50 ms old: paid back at 20/s
    assert.equal(l.size, 0);
    // One that still holds a tunnel stays.
    l.admit('10.9.9.9', 2000);
    l.report(10_000);
    assert.equal(l.size, 1);
  });

  it('is off when both limits are 0', () => {
    const l = limits(0, 0, 1);
    assert.equal(l.enabled, false);
    for (let i = 0; i < 1000; i++) assert.equal(l.admit('10.0.0.1', 0), null);
    assert.equal(l.size, 0);
  });
});
