// Active health checks against real backends on loopback: each probe type, and rise/fall counting.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { HealthCheckConfig } from '../../src/config/schema';
import { ActiveChecker, probe, type ProbeResult } from '../../src/health/active-check';
import { Backend } from '../../src/upstream/backend';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { deadPort } from '../helpers/ports';
import { waitFor } from '../helpers/wait';

const base: HealthCheckConfig = { type: 'http', path: '/health', expectStatus: '200-299', interval: 50, timeout: 1000, rise: 3, fall: 2, jitter: 10 };
const backendAt = (port: number): Backend => new Backend({ url: `ws://127.0.0.1:${port}`, weight: 1, admin: 'ready', maxConnections: 0, backup: false }, 'p');

const started: EchoBackend[] = [];
after(() => closeAll(...started));

async function healthBackend(status = 200, body = 'ok'): Promise<EchoBackend> {
  const b = await startEchoBackend({
    onRequest: (req, res) => {
      if (req.url !== '/health') return false;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
      return true;
    },
  });
  started.push(b);
  return b;
}

void describe('probes', () => {
  void it('http: passes on a status in range, fails outside it or without the body text', async () => {
    const good = await healthBackend(200, 'status: ok');
    const bad = await healthBackend(503, 'ok');
    assert.equal((await probe(backendAt(good.port), base)).ok, true);
    assert.equal((await probe(backendAt(good.port), { ...base, bodyContains: 'status: ok' })).ok, true);
    const noText = await probe(backendAt(good.port), { ...base, bodyContains: 'ready' });
    assert.deepEqual([noText.ok, noText.detail], [false, 'body lacks "ready"']);
    const wrong = await probe(backendAt(bad.port), base);
    assert.deepEqual([wrong.ok, wrong.detail], [false, 'status 503']);
    assert.equal((await probe(backendAt(bad.port), { ...base, expectStatus: '503' })).ok, true);
    const dead = await probe(backendAt(await deadPort()), base);
    assert.deepEqual([dead.ok, dead.detail], [false, 'ECONNREFUSED']);
  });

  void it('tcp: passes on connect, fails when refused', async () => {
    const b = await healthBackend();
    assert.equal((await probe(backendAt(b.port), { ...base, type: 'tcp' })).ok, true);
    assert.equal((await probe(backendAt(await deadPort()), { ...base, type: 'tcp' })).ok, false);
  });

  void it('websocket: completes an upgrade and closes it with 1000; a refused upgrade fails', async () => {
    const b = await healthBackend();
    const r = await probe(backendAt(b.port), { ...base, type: 'websocket', path: '/ws-health' });
    assert.equal(r.ok, true);
    const conn = await b.waitForConnection((c) => c.url === '/ws-health', 2000);
    assert.equal((await conn.closed).code, 1000);
    const refusing = await startEchoBackend({ refuse: () => 503 });
    started.push(refusing);
    const refused = await probe(backendAt(refusing.port), { ...base, type: 'websocket' });
    assert.deepEqual([refused.ok, refused.detail], [false, 'upgrade refused with 503']);
  });
});

void describe('active checker', () => {
  void it('takes a backend down after `fall` failures and up after `rise` passes', { timeout: 30_000 }, async () => {
    let b = await healthBackend();
    const port = b.port;
    const checker = new ActiveChecker({ ...base, type: 'tcp' }, [{ key: 'p/x', backend: backendAt(port) }]);
    const log: string[] = [];
    checker.on('checked', (_k, r: ProbeResult) => log.push(r.ok ? 'pass' : 'fail'));
    checker.on('change', (_k, h) => log.push(h));
    checker.start();
    try {
      await waitFor(() => log.filter((l) => l === 'pass').length >= 2, 5000, 'two passes');
      await b.close();
      await waitFor(() => log.includes('down'), 5000, 'down');
      const down = log.indexOf('down');
      assert.deepEqual(log.slice(down - 2, down + 1), ['fail', 'fail', 'down']);
      assert.equal(log.slice(0, down - 2).includes('fail'), false, 'one failure is not enough');
      b = await startEchoBackend({ port });
      started.push(b);
      await waitFor(() => log.includes('up'), 5000, 'up');
      const up = log.indexOf('up');
      assert.deepEqual(log.slice(up - 3, up + 1), ['pass', 'pass', 'pass', 'up']);
      assert.equal(checker.health('p/x'), 'up');
    } finally {
      checker.stop();
    }
  });

  void it('does not probe backends whose lease another machine holds', { timeout: 10_000 }, async () => {
    const b = await healthBackend();
    let allowed = false;
    const checker = new ActiveChecker({ ...base, type: 'http' }, [{ key: 'p/x', backend: backendAt(b.port) }], { shouldCheck: () => allowed });
    checker.start();
    try {
      // Wait on the checker's own ticks (it asks shouldCheck on every one) before asserting nothing went out.
      let asked = 0;
      const counting = new ActiveChecker({ ...base, type: 'http' }, [{ key: 'p/y', backend: backendAt(b.port) }], { shouldCheck: () => (asked++, false) });
      counting.start();
      await waitFor(() => asked >= 5, 5000, 'five skipped ticks');
      counting.stop();
      assert.equal(b.httpRequests.length, 0);
      allowed = true;
      await waitFor(() => b.httpRequests.length > 0, 5000, 'a probe once the lease is ours');
    } finally {
      checker.stop();
    }
  });
});
