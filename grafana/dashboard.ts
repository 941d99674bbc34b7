// The Switchyard Grafana dashboard, built with Grafana's typed SDK so that a wrong field is a
// compile error. `npm run grafana` writes grafana/dashboards/switchyard.json; a test checks that
// the committed JSON is this output and that every query runs against a real Prometheus.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import {
  DashboardBuilder,
  DatasourceVariableBuilder,
  MappingType,
  QueryVariableBuilder,
  RowBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  VariableRefresh,
  VariableSort,
  type Dashboard,
  type Panel,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatPanel } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as StateTimelinePanel } from '@grafana/grafana-foundation-sdk/statetimeline';
import { PanelBuilder as TimeseriesPanel } from '@grafana/grafana-foundation-sdk/timeseries';

/** Every panel queries the Prometheus picked in the dashboard's datasource variable. */
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
const POOL = 'pool=~"$pool"';

function query(expr: string, legend: string): DataqueryBuilder {
  return new DataqueryBuilder().datasource(DATASOURCE).expr(expr).legendFormat(legend);
}

/** Queries A, B, C... of one panel. */
function refIds(targets: DataqueryBuilder[]): DataqueryBuilder[] {
  return targets.map((t, i) => t.refId(String.fromCharCode(65 + i)));
}

function timeseries(title: string, description: string, unit: string, targets: DataqueryBuilder[]): TimeseriesPanel {
  return new TimeseriesPanel().title(title).description(description).datasource(DATASOURCE).unit(unit).min(0).height(8).span(12).targets(refIds(targets));
}

const upDown = [
  {
    type: MappingType.ValueToText as const,
    options: { '0': { text: 'down', color: 'red', index: 0 }, '1': { text: 'up', color: 'green', index: 1 } },
  },
];

const panels: { row: string; panels: cog.Builder<Panel>[] }[] = [
  {
    row: 'Traffic',
    panels: [
      timeseries('Tunnels by backend', 'Open tunnels (and those being opened), summed over workers.', 'short', [
        query(`sum by (pool, backend) (switchyard_tunnels_active{${POOL}})`, '{{pool}} / {{backend}}'),
      ]),
      timeseries('Upgrades/s by outcome', 'WebSocket upgrade attempts: ok, or why they were refused (errors.ts labels).', 'reqps', [
        query('sum by (outcome) (rate(switchyard_upgrades_total[$__rate_interval]))', '{{outcome}}'),
      ]),
      timeseries('Upgrade latency', 'Client upgrade request to client 101, backend connect and handshake included.', 's', [
        query(`histogram_quantile(0.5, sum by (le) (rate(switchyard_upgrade_duration_seconds_bucket{${POOL}}[$__rate_interval])))`, 'p50'),
        query(`histogram_quantile(0.9, sum by (le) (rate(switchyard_upgrade_duration_seconds_bucket{${POOL}}[$__rate_interval])))`, 'p90'),
        query(`histogram_quantile(0.99, sum by (le) (rate(switchyard_upgrade_duration_seconds_bucket{${POOL}}[$__rate_interval])))`, 'p99'),
      ]),
      timeseries('Messages/s by direction', 'WebSocket messages relayed to backends and to clients.', 'short', [
        query('sum by (direction) (rate(switchyard_messages_total[$__rate_interval]))', '{{direction}}'),
      ]),
      timeseries('Bytes/s by direction', 'WebSocket payload bytes relayed to backends and to clients.', 'Bps', [
        query('sum by (direction) (rate(switchyard_bytes_total[$__rate_interval]))', '{{direction}}'),
      ]),
      timeseries('Closes/s by code', 'Tunnels closed, by who closed first (client, backend, balancer) and the close code; 1006 = connection lost.', 'short', [
        query('sum by (side, code) (rate(switchyard_tunnels_closed_total[$__rate_interval]))', '{{side}} {{code}}'),
      ]),
      timeseries('Backpressure and timeouts', 'Backend reads paused for a slow client; tunnels closed for a slow peer or an idle timeout.', 'short', [
        query('sum(rate(switchyard_backpressure_events_total[$__rate_interval]))', 'backend reads paused'),
        query('sum by (peer) (rate(switchyard_slow_peer_closes_total[$__rate_interval]))', 'slow {{peer}} closed'),
        query('sum by (side) (rate(switchyard_idle_closes_total[$__rate_interval]))', 'idle {{side}} closed'),
      ]),
    ],
  },
  {
    row: 'HTTP',
    panels: [
      timeseries('HTTP requests/s by outcome', "Plain HTTP requests: ok (a backend's response relayed), client_gone, or the balancer's own answer (errors.ts labels).", 'reqps', [
        query('sum by (outcome) (rate(switchyard_http_requests_total[$__rate_interval]))', '{{outcome}}'),
      ]),
      timeseries('HTTP responses/s by status class', "Responses clients got to plain HTTP requests, from backends and the balancer's own (502, 503, 504, 404, 408...).", 'reqps', [
        query('sum by (code) (rate(switchyard_http_responses_total[$__rate_interval]))', '{{code}}'),
      ]),
    ],
  },
  {
    row: 'Backends',
    panels: [
      new StateTimelinePanel()
        .title('Backend health')
        .description('1 up, 0 down (down when any worker sees it down).')
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .mappings(upDown)
        .targets(refIds([query(`min by (pool, backend) (switchyard_backend_up{${POOL}})`, '{{pool}} / {{backend}}')])),
      timeseries(
        'Backend fill',
        'Tunnels over maxConnections, for backends that have one (Prometheus sums the tunnels of every balancer it scrapes).',
        'percentunit',
        [
          query(
            `sum by (pool, backend) (switchyard_tunnels_active{${POOL}}) / on (pool, backend) max by (pool, backend) (switchyard_backend_max_connections{${POOL}} > 0)`,
            '{{pool}} / {{backend}}',
          ),
        ],
      ),
      timeseries(
        'Balancer decisions/s',
        'Picks that were more than plain balancing: hashed (a key on its own backend), spilled (its backend at balanceFactor), fallback (no key), slow_start (a ramping backend changed the pick), paced (an upgrade waited for its backend\'s turn under maxUpgradesPerSecond).',
        'reqps',
        [query(`sum by (pool, decision) (rate(switchyard_balancer_decisions_total{${POOL}}[$__rate_interval]))`, '{{pool}} {{decision}}')],
      ),
      timeseries('Ejections', 'Backends ejected by outlier detection, per interval.', 'short', [
        query(`sum by (pool, backend) (increase(switchyard_backend_ejections_total{${POOL}}[$__rate_interval]))`, '{{pool}} / {{backend}}'),
      ]),
      timeseries('Health check latency', 'p99 duration of active health checks.', 's', [
        query(`histogram_quantile(0.99, sum by (le, pool, backend) (rate(switchyard_health_check_duration_seconds_bucket{${POOL}}[$__rate_interval])))`, '{{pool}} / {{backend}}'),
      ]),
    ],
  },
  {
    row: 'Processes',
    panels: [
      new StatPanel()
        .title('Worker restarts')
        .description('Workers the primary restarted after they died, in the selected time range.')
        .datasource(DATASOURCE)
        .height(8)
        .span(3)
        .targets(refIds([query('sum(increase(switchyard_worker_restarts_total[$__range]))', 'restarts')])),
      new StatPanel()
        .title('Config reloads')
        .description('Reloads (SIGHUP, switchyard reload) that took, in the selected time range; refused ones are in switchyard_config_reloads_total{result="refused"} and the log.')
        .datasource(DATASOURCE)
        .height(8)
        .span(3)
        .targets(refIds([query('sum(increase(switchyard_config_reloads_total{result="ok"}[$__range]))', 'reloads')])),
      new StatPanel()
        .title('TLS certificate')
        .description('Time left before the soonest-expiring certificate a public listener serves (listen.tls); no data without TLS. Orange under 14 days, red under 7.')
        .datasource(DATASOURCE)
        .height(8)
        .span(3)
        .unit('dtdurations')
        .thresholds(
          new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps([
            { value: null, color: 'red' },
            { value: 7 * 86_400, color: 'orange' },
            { value: 14 * 86_400, color: 'green' },
          ]),
        )
        .targets(refIds([query('min(switchyard_tls_certificate_expiry_timestamp_seconds) - time()', 'time left')])),
      new StatPanel()
        .title('Redis')
        .description('Shared-state connection: connected, disconnected (some process lost it), or not configured (in-memory state).')
        .datasource(DATASOURCE)
        .height(8)
        .span(3)
        .mappings([
          {
            type: MappingType.ValueToText,
            options: {
              '0': { text: 'not configured', color: 'blue', index: 0 },
              '1': { text: 'disconnected', color: 'red', index: 1 },
              '2': { text: 'connected', color: 'green', index: 2 },
            },
          },
        ])
        .targets(refIds([query('max(switchyard_redis_configured) + min(switchyard_redis_connected)', 'redis')])),
      timeseries('Event-loop lag by worker', 'p99 event-loop delay of each worker over ~10 s: a busy worker shows here first.', 's', [
        query('max by (worker) (switchyard_worker_event_loop_lag_seconds)', 'worker {{worker}}'),
      ]),
      timeseries('Memory by worker', 'Resident memory of each worker.', 'bytes', [query('max by (worker) (switchyard_worker_resident_memory_bytes)', 'worker {{worker}}')]),
    ],
  },
];

export function buildDashboard(): Dashboard {
  const builder = new DashboardBuilder('Switchyard')
    .uid('switchyard')
    .description('Switchyard WebSocket load balancer: tunnels, upgrades, messages, plain HTTP, backends, workers.')
    .tags(['switchyard', 'websocket', 'load-balancer'])
    .refresh('10s')
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    .withVariable(new DatasourceVariableBuilder('datasource').label('Prometheus').type('prometheus'))
    .withVariable(
      new QueryVariableBuilder('pool')
        .label('Pool')
        .datasource(DATASOURCE)
        .query('label_values(switchyard_tunnels_active, pool)')
        .definition('label_values(switchyard_tunnels_active, pool)')
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc)
        .multi(true)
        .includeAll(true)
        .allValue('.*'),
    );
  for (const section of panels) {
    builder.withRow(new RowBuilder(section.row));
    for (const panel of section.panels) builder.withPanel(panel);
  }
  const dashboard = builder.build();
  // Stable panel ids, as Grafana itself would assign them.
  let id = 1;
  for (const panel of dashboard.panels ?? []) {
    panel.id = id++;
  }
  return dashboard;
}

export const DASHBOARD_FILE = join(__dirname, 'dashboards', 'switchyard.json');

export function dashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}

if (require.main === module) {
  writeFileSync(DASHBOARD_FILE, dashboardJson());
  process.stdout.write(`wrote ${DASHBOARD_FILE}\n`);
}
