// Deterministic simulation (bench/fleet-sim.ts) of many balancers deciding on fleet-wide counts
// that are one sync interval old (plus each balancer's own exact tunnels), hit by a burst. Reports
// max/mean load of plain least-connections and of the p2c herding guard, and holds p2c to being better.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FleetSim, SIM_EPOCH } from '../../bench/fleet-sim';

interface Scenario {
  balancers: number;
  /** Tunnels already on each backend (a 0 among loaded ones is a backend that just joined or returned). */
  initial: number[];
  /** Sync interval, ms. */
  syncMs: number;
  /** New tunnels per ms, for burstMs. */
  perMs: number;
  burstMs: number;
}

interface Outcome {
  maxOverMean: number;
  counts: number[];
}

function simulate(s: Scenario, twoChoices: boolean, seed = 42): Outcome {
  const sim = new FleetSim({
    balancers: s.balancers,
    syncMs: s.syncMs,
    pool: { algorithm: 'least-connections', herdingGuard: twoChoices ? 'p2c' : 'off', balanceFactor: 0, slowStart: 0 },
    backends: s.initial.map((_, i) => `b${i}`),
    seed,
  });
  s.initial.forEach((n, i) => sim.preload(i, n));
  for (let t = 0; t < s.burstMs; t++) {
    for (let k = 0; k < s.perMs; k++) sim.schedule(SIM_EPOCH + t, () => sim.connect({ key: undefined, backend: -1, balancer: -1 }));
  }
  sim.run(SIM_EPOCH + s.burstMs);
  return { maxOverMean: sim.imbalance(), counts: sim.loads() };
}

const report = (name: string, plain: Outcome, p2c: Outcome): string =>
  `${name}: max/mean plain ${plain.maxOverMean.toFixed(2)}, p2c ${p2c.maxOverMean.toFixed(2)}`;

void describe('herding under stale fleet counts (simulation)', () => {
  void it('a backend that joins a loaded pool: plain least-connections herds onto it, p2c does not', (t) => {
    const s: Scenario = { balancers: 20, initial: [...new Array<number>(19).fill(100), 0], syncMs: 100, perMs: 10, burstMs: 300 };
    const plain = simulate(s, false);
    const p2c = simulate(s, true);
    t.diagnostic(report('join', plain, p2c));
    t.diagnostic(`join: newcomer got plain ${plain.counts[19]}, p2c ${p2c.counts[19]} of ${s.perMs * s.burstMs}`);
    assert.ok(p2c.maxOverMean < plain.maxOverMean, report('join', plain, p2c));
    assert.ok(plain.maxOverMean > 2, 'the simulation must show the herd it guards against');
    assert.ok(p2c.maxOverMean < 1.5, report('join', plain, p2c));
  });

  void it('a cold burst on an empty pool: p2c spreads it at least as well', (t) => {
    const s: Scenario = { balancers: 50, initial: new Array<number>(10).fill(0), syncMs: 100, perMs: 20, burstMs: 100 };
    const plain = simulate(s, false);
    const p2c = simulate(s, true);
    t.diagnostic(report('cold burst', plain, p2c));
    assert.ok(p2c.maxOverMean <= plain.maxOverMean, report('cold burst', plain, p2c));
  });

  void it('with fresh counts (1 ms sync) plain least-connections is already even: staleness is the cause', (t) => {
    const s: Scenario = { balancers: 20, initial: [...new Array<number>(19).fill(100), 0], syncMs: 1, perMs: 10, burstMs: 300 };
    const plain = simulate(s, false);
    t.diagnostic(`fresh counts: max/mean plain ${plain.maxOverMean.toFixed(2)}`);
    assert.ok(plain.maxOverMean < 1.1);
  });
});
