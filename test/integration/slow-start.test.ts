// slowStart with real clients through a real balancer (2 workers): a backend taken out of
// maintenance with `switchyard admin … ready` ramps, as switchyard_tunnels_opened_total{backend}
// shows window by window. Under round-robin its share of new tunnels grows linearly to its full
// third; under least-connections it fills to its ramp's share of the others' load, instead of taking
// every new tunnel until level with them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adminStatus } from '../helpers/admin';
import { NO_CLIENT_LIMITS, runCli, startBalancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, startEchoBackends, type EchoBackend } from '../helpers/backends';
import { scrape, type Scrape } from '../helpers/metrics';
import { connect, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';

const SLOW_START_MS = 10_000;
/** New tunnels per second per pool while the ramp is measured. */
const RATE = 20;

interface Sample {
  at: number;
  /** Tunnels opened per pool and backend name. */
  opened: Record<string, Record<string, number>>;
}

void describe('slow start', { timeout: 120_000 }, () => {
  void it('a backend back from maintenance ramps: round-robin share grows linearly, least-connections fills to its ramp\'s share', async (t) => {
    const backends = await startEchoBackends(3, 'ss');
    const [a, b, c] = backends;
    const clients: TestClient[] = [];
    t.after(async () => {
      for (const cl of clients) cl.terminate();
      await closeAll(...backends);
    });
    const list = [{ url: a.url }, { url: b.url }, { url: c.url, admin: 'maintenance' }];
    const balancer = await startBalancer({
      workers: 2,
      config: {
        clientLimits: NO_CLIENT_LIMITS,
        pools: {
          lc: { algorithm: 'least-connections', slowStart: `${SLOW_START_MS}ms`, backends: list },
          rr: { algorithm: 'round-robin', slowStart: `${SLOW_START_MS}ms`, backends: list },
        },
        routes: [
          { path: '/lc', pool: 'lc' },
          { path: '/rr', pool: 'rr' },
        ],
      },
    });
    t.after(() => balancer.stop());
    const name = (url: string): string => new URL(url).host;

    // Load a and b of the least-connections pool: 60 tunnels, c is in maintenance.
    for (let i = 0; i < 60; i++) clients.push(await connect(balancer.url(`/lc/pre?i=${i}`)));

    // RATE new tunnels a second in each pool, scraping every 2 s. After 2 s, c comes back in both
    // pools (the primary stamps when: status slowStartUntil); the load goes on for the ramp and 3 s more.
    const samples: Sample[] = [];
    const read = async (): Promise<Sample> => {
      const before = Date.now();
      const m: Scrape = await scrape(balancer.adminUrl('/metrics'));
      const opened: Sample['opened'] = {};
      for (const s of m.select('switchyard_tunnels_opened_total')) (opened[s.labels.pool] ??= {})[s.labels.backend] = s.value;
      return { at: (before + Date.now()) / 2, opened };
    };
    samples.push(await read());
    const start = Date.now();
    let done = false;
    const scraper = (async () => {
      while (!done) {
        await delay(2000);
        samples.push(await read());
      }
    })();
    const since: Record<string, number> = {};
    const comeBack = (async () => {
      await delay(2000);
      // (The CLI starts a node process: seconds on a busy machine; the ramp is measured from when the primary took it.)
      const ready = await Promise.all(['lc', 'rr'].map((pool) => runCli(['admin', ...balancer.adminArgs(), pool, name(c.url), 'ready'], 60_000)));
      for (const r of ready) assert.equal(r.code, 0, r.stderr);
      const status = await adminStatus(balancer.adminPort!);
      for (const pool of ['lc', 'rr']) {
        const until = status.pools[pool].find((x) => x.backend === name(c.url))!.slowStartUntil;
        assert.ok(until > Date.now(), `${pool}: ${name(c.url)} ramping (slowStartUntil ${until})`);
        since[pool] = until - SLOW_START_MS;
      }
    })();
    let failed: unknown;
    void comeBack.catch((err: unknown) => (failed = err));
    try {
      for (let i = 0; failed === undefined && (since.lc === undefined || Date.now() < Math.max(since.lc, since.rr) + SLOW_START_MS + 3000); i++) {
        const wait = start + (i * 1000) / RATE - Date.now();
        if (wait > 0) await delay(wait);
        clients.push(...(await Promise.all([connect(balancer.url(`/lc/ramp?i=${i}`)), connect(balancer.url(`/rr/ramp?i=${i}`))])));
      }
      await comeBack;
    } finally {
      done = true;
      await scraper;
    }
    samples.push(await read());

    // c's ramp at `at`; 0 before it came back.
    const ramp = (pool: string, at: number): number => (at < since[pool] ? 0 : Math.min(1, Math.max(0.01, (at - since[pool]) / SLOW_START_MS)));
    const [an, bn, cn] = [a, b, c].map((x) => name(x.url));

    // Round-robin: c's share of the tunnels opened in each window, against f / (2 + f) at its middle.
    const rr: { share: number; expected: number; at: number; total: number }[] = [];
    for (let i = 1; i < samples.length; i++) {
      const [p, q] = [samples[i - 1].opened.rr ?? {}, samples[i].opened.rr ?? {}];
      const delta = (n: string): number => (q[n] ?? 0) - (p[n] ?? 0);
      const total = delta(an) + delta(bn) + delta(cn);
      if (total < 10) continue;
      const f = ramp('rr', (samples[i - 1].at + samples[i].at) / 2);
      rr.push({ share: delta(cn) / total, expected: f / (2 + f), at: (samples[i].at - since.rr) / 1000, total });
    }
    t.diagnostic(`round-robin: c's share per window: ${rr.map((w) => `${w.share.toFixed(2)} (expected ${w.expected.toFixed(2)}, to ${w.at.toFixed(1)} s)`).join(', ')}`);
    assert.ok(rr.length >= 4, `${rr.length} windows measured`);
    // Each worker's smooth round-robin may be a pick off at a window's edge: 2 / total on top of 0.1.
    for (const w of rr) {
      assert.ok(Math.abs(w.share - w.expected) < 0.1 + 2 / w.total, `round-robin window to ${w.at.toFixed(1)} s: share ${w.share.toFixed(2)} of ${w.total}, expected ${w.expected.toFixed(2)}`);
    }
    const first = rr.find((w) => w.at > 0)!;
    assert.ok(first.share < 0.2, `first window of the ramp: share ${first.share.toFixed(2)}; at full weight it would be 0.33`);
    // The last whole window (the one after the loop stops may hold a few tunnels only).
    const lastWhole = rr.filter((w) => w.total >= RATE).at(-1)!;
    assert.ok(lastWhole.share - first.share > 0.1, 'the share grows');
    assert.ok(lastWhole.share > 0.25, 'after the ramp: its full third');

    // Least-connections: at every sample c holds no more than its ramp's share of what a and b hold
    // (give or take what the other worker opened since the last count sync), and after the ramp it
    // is level with them.
    const lc = samples.map((s) => {
      const o = s.opened.lc ?? {};
      return { at: s.at, c: o[cn] ?? 0, others: ((o[an] ?? 0) + (o[bn] ?? 0)) / 2, f: ramp('lc', s.at) };
    });
    t.diagnostic(`least-connections: c / mean(a, b) at each sample: ${lc.map((s) => `${s.c}/${s.others} (f ${s.f.toFixed(2)})`).join(', ')}`);
    for (const s of lc) assert.ok(s.c <= s.f * (s.others + 1) + 4, `at ${((s.at - since.lc) / 1000).toFixed(1)} s c holds ${s.c}, more than ${s.f.toFixed(2)} x ${s.others}`);
    const early = lc.find((s) => s.at - since.lc > 1000 && s.at - since.lc < 0.5 * SLOW_START_MS);
    assert.ok(early !== undefined && early.c > 0, 'c takes tunnels early in the ramp');
    const last = lc.at(-1)!;
    assert.ok(last.c >= 0.8 * last.others, `after the ramp c (${last.c}) is about level with a and b (${last.others})`);

    const m = await scrape(balancer.adminUrl('/metrics'));
    for (const pool of ['lc', 'rr']) assert.ok(m.sum('switchyard_balancer_decisions_total', { pool, decision: 'slow_start' }) > 0, `${pool}: slow_start decisions counted`);
  });

  void it('ramps a backend that comes back up (health) or joins (reload), not one there at the start or kept by the reload', async (t) => {
    const [a, first] = await startEchoBackends(2, 'ramp');
    let b = first;
    const joiner = await startEchoBackend({ name: 'joiner' });
    t.after(() => closeAll(a, b, joiner));
    const pool = (list: EchoBackend[]): Record<string, unknown> => ({
      pools: { chat: { algorithm: 'round-robin', slowStart: '30s', healthCheck: { type: 'tcp', interval: '100ms', timeout: '500ms', rise: 1, fall: 1 }, backends: list.map((x) => ({ url: x.url })) } },
      routes: [{ path: '/', pool: 'chat' }],
    });
    const balancer = await startBalancer({ workers: 2, config: pool([a, b]) });
    t.after(() => balancer.stop());
    const until = async (x: EchoBackend): Promise<number> => (await adminStatus(balancer.adminPort!)).pools.chat.find((s) => s.backend === new URL(x.url).host)!.slowStartUntil;
    const health = async (x: EchoBackend): Promise<string> => (await adminStatus(balancer.adminPort!)).pools.chat.find((s) => s.backend === new URL(x.url).host)!.health;

    assert.deepEqual([await until(a), await until(b)], [0, 0], 'backends there at the start have their full weight');

    // b goes down, then comes back on the same port: it ramps from then.
    const port = b.port;
    await b.close();
    await waitFor(async () => (await health(b)) === 'down', 10_000, 'b down');
    b = await startEchoBackend({ name: 'ramp1', port });
    const back = Date.now();
    await waitFor(async () => (await health(b)) === 'up', 10_000, 'b up again');
    const bUntil = await until(b);
    assert.ok(bUntil >= back + 30_000 - 1000 && bUntil <= Date.now() + 30_000, `b ramps until ${bUntil - back} ms after it came back`);
    assert.equal(await until(a), 0);

    // A reload adds a backend: it joins, and ramps; a and b keep what they had.
    balancer.rewriteConfig(pool([a, b, joiner]));
    const reloaded = Date.now();
    process.kill(balancer.pid, 'SIGHUP');
    await balancer.waitForLog((l) => l.msg === 'reloaded', 15_000, '"reloaded"');
    const joinerUntil = await until(joiner);
    assert.ok(joinerUntil >= reloaded + 30_000 - 1000 && joinerUntil <= Date.now() + 30_000, `the joiner ramps until ${joinerUntil - reloaded} ms after the reload`);
    assert.equal(await until(a), 0, 'a kept by the reload: full weight');
    assert.equal(await until(b), bUntil, 'b kept by the reload: its ramp goes on');
  });
});
