// The Grafana dashboard against a real Prometheus: a real `prometheus` binary scrapes Switchyard's
// admin listener every second, and every PromQL expression of grafana/dashboards/switchyard.json
// must parse and return data, first on a fresh balancer with no traffic (labelled counters start
// at 0, so panels show flat lines, not "No data"), then under traffic. Every metric the dashboard
// names must exist in /metrics. The balancer terminates TLS, so the certificate panel has data too.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, startBalancer, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { freePort } from '../helpers/ports';
import { certificateDir, makeCertificate } from '../helpers/tls';
import { connect, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';

const PROMETHEUS = process.env.PROMETHEUS_PATH ?? 'prometheus';


interface Target {
  panel: string;
  expr: string;
}

function dashboardTargets(): Target[] {
  const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'grafana', 'dashboards', 'switchyard.json'), 'utf8')) as {
    panels: { title: string; targets?: { expr?: string }[] }[];
  };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr ?? '' })));
}

/** Grafana's variables, as Grafana would fill them for a short time range and 1 s scrapes. */
function substitute(expr: string): string {
  const out = expr.replaceAll('$__rate_interval', '10s').replaceAll('$__range', '1m').replaceAll('$pool', '.*');
  assert.doesNotMatch(out, /\$/, `an unknown variable is left in ${out}`);
  return out;
}

interface QueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: unknown[] };
}

void describe('Grafana dashboard against a real Prometheus', { timeout: 120_000 }, () => {
  let backend: EchoBackend | undefined;
  let balancer: Balancer | undefined;
  let prometheus: ChildProcess | undefined;
  let promLog = '';
  let promPort = 0;
  let dataDir = '';
  let trafficDone: Promise<void> | undefined;
  let stopTraffic = false;
  const certs = certificateDir();
  let cert: ReturnType<typeof makeCertificate>;

  before(async () => {
    const probe = spawnSync(PROMETHEUS, ['--version'], { encoding: 'utf8' });
    assert.ok(
      probe.status === 0,
      `the \`${PROMETHEUS}\` binary is missing (${probe.error?.message ?? probe.stderr}): install it with "apt-get install -y prometheus" (.ci/run does), or set PROMETHEUS_PATH`,
    );
    backend = await startEchoBackend({ name: 'prom' });
    // Active tcp checks every 200 ms, so the health-check latency panel has data too; a
    // maxConnections for the backend-fill panel.
    cert = makeCertificate(certs.dir, 'prometheus');
    balancer = await startBalancer({
      config: {
        listen: { tls: { cert: cert.cert, key: cert.key } },
        admin: { port: 0 },
        pools: { chat: { backends: [{ url: backend.url, maxConnections: 1000 }], healthCheck: { type: 'tcp', interval: '200ms' } } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });

    dataDir = mkdtempSync(join(tmpdir(), 'switchyard-prometheus-'));
    const configFile = join(dataDir, 'prometheus.yml');
    writeFileSync(
      configFile,
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'scrape_configs:',
        '  - job_name: switchyard',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${balancer.adminPort}']`,
        '',
      ].join('\n'),
    );
    promPort = await freePort();
    prometheus = spawn(
      PROMETHEUS,
      [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dataDir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prometheus.stderr!.setEncoding('utf8').on('data', (d: string) => (promLog += d));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`)).ok, 20_000, `prometheus to be ready (log: ${promLog.slice(-500)})`, 200);
  });

  /**
   * Traffic for the rest of the file (bounded): a few long tunnels exchanging messages, and tunnels
   * opened and closed (by either side) so that upgrades and closes have rates too.
   */
  async function startTraffic(): Promise<void> {
    const steady: TestClient[] = [];
    const url = (path: string): string => `wss://127.0.0.1:${balancer!.port}${path}`;
    for (let i = 0; i < 4; i++) steady.push(await connect(url(`/steady?i=${i}`), { ca: cert.pem }));
    trafficDone = (async () => {
      const deadline = Date.now() + 100_000;
      for (let round = 0; !stopTraffic && Date.now() < deadline; round++) {
        for (const c of steady) await c.request(`m${round}`);
        if (round % 5 === 0) {
          const c = await connect(url(`/short?r=${round}`), { ca: cert.pem });
          await c.request('hello');
          await c.close(round % 2 === 0 ? 1000 : 4000);
        }
        await delay(20);
      }
      for (const c of steady) await c.close();
    })();
  }

  after(async () => {
    stopTraffic = true;
    await trafficDone?.catch(() => undefined);
    if (prometheus?.exitCode === null) {
      prometheus.kill('SIGTERM');
      await new Promise((r) => prometheus!.once('exit', r));
    }
    await balancer?.stop();
    await closeAll(backend);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    certs.cleanup();
  });

  const query = async (expr: string): Promise<QueryResult> => {
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as QueryResult;
  };

  /** Every dashboard query, as Grafana sends it: those Prometheus rejected, and those that returned no data. */
  const runDashboardQueries = async (): Promise<{ failures: Map<string, string>; empty: Set<string> }> => {
    const failures = new Map<string, string>();
    const empty = new Set<string>();
    for (const t of dashboardTargets()) {
      const r = await query(substitute(t.expr));
      if (r.status !== 'success') failures.set(`${t.panel}: ${t.expr}`, r.error ?? 'failed');
      else if ((r.data?.result.length ?? 0) === 0) empty.add(`${t.panel}: ${t.expr}`);
    }
    return { failures, empty };
  };

  /** One number from an instant query that returns one series. */
  const scalar = async (expr: string): Promise<number> => {
    const r = await query(expr);
    assert.equal(r.data?.result.length, 1, `${expr}: ${JSON.stringify(r)}`);
    return Number((r.data?.result[0] as { value: [number, string] }).value[1]);
  };

  // Runs first, before any traffic: a fresh balancer.
  void it('every metric the dashboard names exists in /metrics, before any traffic', async () => {
    const families = (await scrape(balancer!.adminUrl('/metrics'))).families();
    const named = new Set(dashboardTargets().flatMap((t) => [...t.expr.matchAll(/\b(switchyard_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+)/g)].map((m) => m[1])));
    assert.ok(named.size >= 10, `the dashboard names ${named.size} metrics`);
    const missing = [...named].filter((n) => !families.has(n) && !families.has(n.replace(/_(bucket|count|sum)$/, '')));
    assert.deepEqual(missing, [], 'metrics named in the dashboard but absent from /metrics');
  });

  void it('on a fresh balancer with no traffic, every dashboard query returns data (zeros, not "No data")', async () => {
    // Scraped, with enough samples for rate() over 10 s.
    await waitFor(async () => {
      const r = await query('count_over_time(switchyard_workers[1m]) >= 8');
      return r.data?.result.length === 1;
    }, 40_000, `prometheus to have scraped switchyard for a while (log: ${promLog.slice(-500)})`, 500);
    assert.equal((await query('up{job="switchyard"}')).data?.result.length, 1);
    assert.equal(await scalar('sum(switchyard_upgrades_total) + sum(switchyard_http_requests_total)'), 0, 'no traffic yet');

    const targets = dashboardTargets();
    assert.ok(targets.length >= 12, `the dashboard has ${targets.length} queries`);
    const { failures, empty } = await runDashboardQueries();
    assert.deepEqual([...failures], [], 'queries Prometheus rejected');
    assert.deepEqual([...empty], [], 'queries that returned no data on a fresh balancer');

    // The labelled counters have every known series, at 0; the zeros leave min/max gauges alone.
    assert.equal(await scalar('count(switchyard_tunnels_closed_total)'), 3 * 19, 'every side x close code');
    assert.equal(await scalar(substitute('sum(rate(switchyard_tunnels_closed_total[$__rate_interval]))')), 0);
    for (const [metric, label, want] of [
      ['switchyard_messages_total', 'direction', 2],
      ['switchyard_slow_peer_closes_total', 'peer', 2],
      ['switchyard_idle_closes_total', 'side', 2],
      ['switchyard_http_responses_total', 'code', 6],
      ['switchyard_config_reloads_total', 'result', 2],
      ['switchyard_admin_requests_refused_total', 'reason', 4],
      ['switchyard_worker_restarts_total', 'worker', 2],
    ] as const) {
      assert.equal(await scalar(`count(count by (${label}) (${metric}))`), want, `${metric}: one series per ${label}`);
      assert.equal(await scalar(`sum(${metric})`), 0, `${metric} at 0`);
    }
    assert.equal(await scalar('min(switchyard_backend_up)'), 1, 'the backend is up (min over workers; the zeros of other metrics do not pull it down)');
    assert.equal(await scalar('count(switchyard_health_check_duration_seconds_count)'), 1, 'the checked backend has its health-check series');
  });

  void it('under traffic, every PromQL expression of the dashboard parses and returns data, and the rates move', async () => {
    await startTraffic();
    // The traffic reaches Prometheus: tunnels, messages both ways, upgrades and closes have rates.
    const moving = [
      'sum(switchyard_tunnels_active) >= 4',
      'sum(rate(switchyard_messages_total{direction="to_backend"}[$__rate_interval])) > 0',
      'sum(rate(switchyard_messages_total{direction="to_client"}[$__rate_interval])) > 0',
      'sum(rate(switchyard_upgrades_total{outcome="ok"}[$__rate_interval])) > 0',
      'sum(rate(switchyard_tunnels_closed_total{side="client",code="4xxx"}[$__rate_interval])) > 0',
    ].map(substitute);
    const still = new Set<string>();
    await waitFor(async () => {
      still.clear();
      for (const expr of moving) if ((await query(expr)).data?.result.length !== 1) still.add(expr);
      return still.size === 0;
    }, 30_000, 'the traffic to show in Prometheus', 1000).catch(() => undefined);
    assert.deepEqual([...still], [], 'what traffic did not move');

    const { failures, empty } = await runDashboardQueries();
    assert.deepEqual([...failures], [], 'queries Prometheus rejected');
    assert.deepEqual([...empty], [], 'queries that returned no data');
  });
});
