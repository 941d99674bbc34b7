// The committed dashboard JSON is exactly what grafana/dashboard.ts (typed by Grafana's SDK)
// generates, and it is wired to a Prometheus datasource variable.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DASHBOARD_FILE, buildDashboard, dashboardJson } from '../../grafana/dashboard';

void describe('grafana dashboard', () => {
  void it('grafana/dashboards/switchyard.json is up to date (regenerate with `npm run grafana`)', () => {
    assert.equal(readFileSync(DASHBOARD_FILE, 'utf8'), dashboardJson());
  });

  void it('every panel queries the Prometheus datasource variable; the panels the operators asked for are there', () => {
    const dashboard = buildDashboard();
    const variable = dashboard.templating?.list?.find((v) => v.name === 'datasource');
    assert.equal(variable?.type, 'datasource');
    assert.equal(variable?.query, 'prometheus');
    const panels = (dashboard.panels ?? []).filter((p) => p.type !== 'row') as { title?: string; datasource?: unknown; targets?: { datasource?: unknown }[] }[];
    for (const p of panels) {
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title} panel datasource`);
      for (const t of p.targets ?? []) assert.deepEqual(t.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title} query datasource`);
    }
    const titles = panels.map((p) => p.title);
    for (const want of ['Tunnels by backend', 'Upgrades/s by outcome', 'HTTP requests/s by outcome', 'HTTP responses/s by status class', 'Upgrade latency', 'Messages/s by direction', 'Bytes/s by direction', 'Backend health', 'Backend fill', 'Balancer decisions/s', 'Ejections', 'Closes/s by code', 'Worker restarts', 'Event-loop lag by worker']) {
      assert.ok(titles.includes(want), `panel "${want}" (have: ${titles.join(', ')})`);
    }
    const ids = (dashboard.panels ?? []).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  });
});
