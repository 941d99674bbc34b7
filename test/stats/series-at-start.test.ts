// Every labelled metric whose label values are known in advance has all its series from the start,
// at 0, so that a fresh dashboard shows flat lines rather than "No data" (src/stats/metrics.ts). The
// process plays both roles here: a worker (bindWorker) and the primary (bindPrimary).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AggregatorRegistry } from 'prom-client';
import { validateConfig } from '../../src/config/load';
import { AdminRefusals, LOCAL_RESOURCE_ERRORS, Outcomes } from '../../src/errors';
import { DECISION_LABELS } from '../../src/load-balancer/load-balancer';
import { LOCAL_FAILURE_OPS } from '../../src/local-failures';
import { CLOSE_CODE_LABELS, CLOSE_SIDES, STATUS_CLASS_LABELS } from '../../src/stats/counters';
import { bindConnections, bindDiscovery, bindPrimary, bindWorker, registry, type MetricsJson } from '../../src/stats/metrics';
import { Pool } from '../../src/upstream/pool';

const config = validateConfig({
  workers: 2,
  pools: {
    chat: { backends: [{ url: 'ws://127.0.0.1:9001' }, { url: 'ws://127.0.0.1:9002' }], healthCheck: { type: 'tcp' }, maxUpgradesPerSecond: 100 },
    rooms: { algorithm: 'hash', hashKey: 'path:2', backends: [{ url: 'ws://10.0.0.1:9003' }] },
    // Backends found by DNS: none until the first answer, but the pool's discovery series exist.
    found: { discovery: { dns: 'chat.internal', port: 9001 } },
  },
  routes: [{ path: '/', pool: 'chat' }],
});
bindWorker(
  Object.entries(config.pools).map(([name, pc]) => new Pool(name, pc)),
  '0',
);
bindConnections(() => ({ open: 0, limit: 1000, accepting: true }));
bindDiscovery(['found'], () => [{ pool: 'found', live: 0, draining: 0 }]);
bindPrimary(() => [0, 1].map((slot) => ({ slot, pid: 1000 + slot, listening: true, restarts: 0, startedAt: 0, retiring: false })), config.pools);

/**
 * Absent by design until there is something to say: the served certificate (only with TLS), and the
 * fleet totals repaired (only with Redis: the supervisor starts each pool's at 0 when it has Redis).
 */
const ABSENT_AT_START = new Set(['switchyard_tls_certificate_expiry_timestamp_seconds', 'switchyard_redis_totals_repaired_total']);

type Values = MetricsJson[number]['values'];

/** The distinct label sets of a metric's series, as sorted `k=v,k=v` strings (histogram `le` left out). */
function labelSets(values: Values): string[] {
  const sets = values.map((v) =>
    Object.entries(v.labels)
      .filter(([k]) => k !== 'le')
      .map(([k, l]) => `${k}=${l}`)
      .sort()
      .join(','),
  );
  return [...new Set(sets)].sort();
}

const cross = (a: readonly string[], b: readonly string[], ka: string, kb: string): string[] => a.flatMap((x) => b.map((y) => [`${ka}=${x}`, `${kb}=${y}`].sort().join(','))).sort();
const one = (key: string, values: readonly string[]): string[] => [...new Set(values)].map((v) => `${key}=${v}`).sort();
const BACKENDS = ['backend=127.0.0.1:9001,pool=chat', 'backend=127.0.0.1:9002,pool=chat', 'backend=10.0.0.1:9003,pool=rooms'].sort();

/** Each labelled metric's known series. */
const EXPECTED: Record<string, string[]> = {
  switchyard_tunnels_closed_total: cross(CLOSE_SIDES, CLOSE_CODE_LABELS, 'side', 'code'),
  switchyard_upgrades_total: one('outcome', ['ok', ...Object.values(Outcomes).map((o) => o.label)]),
  switchyard_http_requests_total: one('outcome', ['ok', 'client_gone', ...Object.values(Outcomes).map((o) => o.label)]),
  switchyard_http_responses_total: one('code', STATUS_CLASS_LABELS),
  switchyard_messages_total: one('direction', ['to_backend', 'to_client']),
  switchyard_bytes_total: one('direction', ['to_backend', 'to_client']),
  switchyard_slow_peer_closes_total: one('peer', ['backend', 'client']),
  switchyard_idle_closes_total: one('side', ['backend', 'client']),
  switchyard_local_resource_failures_total: cross(LOCAL_RESOURCE_ERRORS, LOCAL_FAILURE_OPS, 'cause', 'op'),
  switchyard_messages_too_big_total: ['from=backend,limit=assembly', 'from=backend,limit=max_payload', 'from=client,limit=max_payload'],
  // Every pick decision of a hashing pool; only slow_start for the others (they never hash); paced
  // for a pool with maxUpgradesPerSecond only; rebalanced for every pool (any can be rebalanced by command).
  switchyard_balancer_decisions_total: [
    ...cross(['rooms'], DECISION_LABELS.filter((d) => d !== 'paced'), 'pool', 'decision'),
    'decision=slow_start,pool=chat',
    'decision=slow_start,pool=found',
    'decision=paced,pool=chat',
    'decision=rebalanced,pool=chat',
    'decision=rebalanced,pool=found',
  ].sort(),
  switchyard_config_reloads_total: one('result', ['ok', 'refused']),
  switchyard_admin_requests_refused_total: one('reason', Object.values(AdminRefusals).map((r) => r.label)),
  switchyard_worker_restarts_total: one('worker', ['0', '1']),
  switchyard_tunnels_active: BACKENDS,
  switchyard_tunnels_opened_total: BACKENDS,
  switchyard_backend_ejections_total: BACKENDS,
  switchyard_backend_up: BACKENDS,
  switchyard_backend_max_connections: BACKENDS,
  switchyard_backend_connects_in_flight: BACKENDS,
  // Only the pool with active checks.
  switchyard_health_check_duration_seconds: BACKENDS.filter((s) => s.includes('pool=chat')),
  switchyard_upgrade_duration_seconds: one('pool', ['chat', 'found', 'rooms']),
  switchyard_discovery_lookups_total: cross(['found'], ['ok', 'failed'], 'pool', 'result'),
  switchyard_discovery_backends: cross(['found'], ['live', 'draining'], 'pool', 'state'),
};

void describe('metric series at start', () => {
  void it('each labelled counter and histogram has its known series, at 0, before any event', async () => {
    const json = await registry.getMetricsAsJSON();
    const byName = new Map(json.map((m) => [m.name, m]));
    for (const [name, want] of Object.entries(EXPECTED)) {
      const metric = byName.get(name);
      assert.ok(metric, `${name} is registered`);
      assert.deepEqual(labelSets(metric.values), want, `${name}'s series`);
      if ((metric.type as unknown as string) !== 'gauge') {
        for (const v of metric.values) assert.equal(v.value, 0, `${name}${JSON.stringify(v.labels)} starts at 0`);
      }
    }
  });

  void it('no labelled switchyard metric is left without series (a metric added later is held to this too)', async () => {
    const json = await registry.getMetricsAsJSON();
    const byName = new Map(json.map((m) => [m.name, m]));
    const labelled = registry
      .getMetricsAsArray()
      .map((m) => m as unknown as { name: string; labelNames?: string[] })
      .filter((m) => m.name.startsWith('switchyard_') && (m.labelNames ?? []).length > 0 && !ABSENT_AT_START.has(m.name));
    assert.ok(labelled.length >= 15, `${labelled.length} labelled metrics`);
    const empty = labelled.filter((m) => (byName.get(m.name)?.values.length ?? 0) === 0).map((m) => m.name);
    assert.deepEqual(empty, [], 'labelled metrics with no series at start: give their known label values a 0 (src/stats/metrics.ts)');
  });

  void it('the zeros keep the aggregation over workers right: sums stay 0, min/max gauges keep the workers\' values', async () => {
    const worker = await registry.getMetricsAsJSON();
    const summed = await AggregatorRegistry.aggregate([worker, worker, worker]).getMetricsAsJSON();
    const get = (name: string): Values => summed.find((m) => m.name === name)?.values ?? [];
    assert.equal(get('switchyard_tunnels_closed_total').length, CLOSE_SIDES.length * CLOSE_CODE_LABELS.length);
    for (const v of get('switchyard_tunnels_closed_total')) assert.equal(v.value, 0);
    for (const v of get('switchyard_backend_up')) assert.equal(v.value, 1, 'up on every worker: min 1');
    for (const v of get('switchyard_backend_max_connections')) assert.equal(v.value, 0, 'no limit: max 0');
  });
});
