// The Grafana dashboard against a real Prometheus: Switchyard runs with traffic, a real
// `prometheus` binary scrapes its admin listener every second, and every PromQL expression of
// grafana/dashboards/switchyard.json must parse and return data. Every metric the dashboard names
// must exist in /metrics. The balancer terminates TLS, so the certificate panel has data too.
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

  before(async () => {
    const probe = spawnSync(PROMETHEUS, ['--version'], { encoding: 'utf8' });
    assert.ok(
      probe.status === 0,
      `the \`${PROMETHEUS}\` binary is missing (${probe.error?.message ?? probe.stderr}): install it with "apt-get install -y prometheus" (.ci/run does), or set PROMETHEUS_PATH`,
    );
    backend = await startEchoBackend({ name: 'prom' });
    // Active tcp checks every 200 ms, so the health-check latency panel has data too; a
    // maxConnections for the backend-fill panel.
    const cert = makeCertificate(certs.dir, 'prometheus');
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

    // Traffic for the whole test (bounded): a few long tunnels exchanging messages, and tunnels
    // opened and closed (by either side) so that upgrades and closes have rates too.
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
  });

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

  void it('every metric the dashboard names exists in /metrics', async () => {
    const families = (await scrape(balancer!.adminUrl('/metrics'))).families();
    const named = new Set(dashboardTargets().flatMap((t) => [...t.expr.matchAll(/\b(switchyard_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+)/g)].map((m) => m[1])));
    assert.ok(named.size >= 10, `the dashboard names ${named.size} metrics`);
    const missing = [...named].filter((n) => !families.has(n) && !families.has(n.replace(/_(bucket|count|sum)$/, '')));
    assert.deepEqual(missing, [], 'metrics named in the dashboard but absent from /metrics');
  });

  void it('every PromQL expression of the dashboard parses and returns data', async () => {
    // Scraped, with enough samples for rate() over 10 s.
    await waitFor(async () => {
      const r = await query('count_over_time(switchyard_workers[1m]) >= 8');
      return r.data?.result.length === 1;
    }, 40_000, `prometheus to have scraped switchyard for a while (log: ${promLog.slice(-500)})`, 500);
    assert.equal((await query('up{job="switchyard"}')).data?.result.length, 1);

    const targets = dashboardTargets();
    assert.ok(targets.length >= 12, `the dashboard has ${targets.length} queries`);
    const failures = new Map<string, string>();
    const empty = new Set<string>();
    // Rates need traffic in the window: a target that is empty now may fill on the next scrape.
    await waitFor(async () => {
      failures.clear();
      empty.clear();
      for (const t of targets) {
        const r = await query(substitute(t.expr));
        if (r.status !== 'success') failures.set(`${t.panel}: ${t.expr}`, r.error ?? 'failed');
        else if ((r.data?.result.length ?? 0) === 0) empty.add(`${t.panel}: ${t.expr}`);
      }
      return failures.size > 0 || empty.size === 0;
    }, 30_000, 'every dashboard query to return data', 1000).catch(() => undefined);
    assert.deepEqual([...failures], [], 'queries Prometheus rejected');
    assert.deepEqual([...empty], [], 'queries that returned no data');

    // Spot-check values: the steady tunnels are counted, and messages flow both ways.
    const tunnels = await query('sum(switchyard_tunnels_active)');
    assert.ok(Number((tunnels.data?.result[0] as { value: [number, string] }).value[1]) >= 4, 'at least the 4 steady tunnels');
    const rates = await query(substitute('sum by (direction) (rate(switchyard_messages_total[$__rate_interval]))'));
    assert.equal(rates.data?.result.length, 2);
    for (const r of (rates.data?.result ?? []) as { metric: { direction: string }; value: [number, string] }[]) {
      assert.ok(Number(r.value[1]) > 0, `messages/s ${r.metric.direction} is ${r.value[1]}`);
    }
  });
});
