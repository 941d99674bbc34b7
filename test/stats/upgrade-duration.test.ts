// switchyard_upgrade_duration_seconds is kept as plain counts per pool (src/stats/metrics.ts) and
// published in prom-client's histogram shape: cumulative buckets, +Inf, sum and count, per pool, in
// the text format and summed across workers the way the primary sums them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AggregatorRegistry } from 'prom-client';
import { LatencyCounts, observeUpgrade, registry } from '../../src/stats/metrics';

const NAME = 'switchyard_upgrade_duration_seconds';

/** `name{labels} value` lines of the text format for this metric. */
async function lines(text?: string): Promise<string[]> {
  return (text ?? (await registry.metrics())).split('\n').filter((l) => l.startsWith(NAME));
}

describe('upgrade duration histogram', () => {
  it('puts each observation in the first bucket whose bound it does not exceed', () => {
    const counts = new LatencyCounts();
    for (const s of [0.0005, 0.001, 0.0011, 0.3, 10, 11]) counts.observe(s);
    assert.deepEqual(counts.buckets, [2, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]);
    assert.equal(counts.count, 6);
    assert.ok(Math.abs(counts.sum - 21.3026) < 1e-9);
  });

  it('publishes cumulative buckets, sum and count per pool in the text format', async () => {
    observeUpgrade('a', 0.002);
    observeUpgrade('a', 0.002);
    observeUpgrade('a', 0.7);
    observeUpgrade('b', 20);
    const text = await lines();
    assert.ok(text.includes(`${NAME}_bucket{le="0.001",pool="a"} 0`), text.join('\n'));
    assert.ok(text.includes(`${NAME}_bucket{le="0.0025",pool="a"} 2`));
    assert.ok(text.includes(`${NAME}_bucket{le="0.5",pool="a"} 2`));
    assert.ok(text.includes(`${NAME}_bucket{le="1",pool="a"} 3`));
    assert.ok(text.includes(`${NAME}_bucket{le="+Inf",pool="a"} 3`));
    assert.ok(text.includes(`${NAME}_sum{pool="a"} 0.704`));
    assert.ok(text.includes(`${NAME}_count{pool="a"} 3`));
    assert.ok(text.includes(`${NAME}_bucket{le="10",pool="b"} 0`));
    assert.ok(text.includes(`${NAME}_bucket{le="+Inf",pool="b"} 1`));
    assert.ok(text.includes(`${NAME}_count{pool="b"} 1`));
    assert.ok((await registry.metrics()).includes(`# TYPE ${NAME} histogram`));
  });

  it('sums across workers as the primary aggregates them', async () => {
    const worker = await registry.getMetricsAsJSON();
    const text = await lines(await AggregatorRegistry.aggregate([worker, worker]).metrics());
    assert.ok(text.includes(`${NAME}_bucket{le="0.0025",pool="a"} 4`), text.join('\n'));
    assert.ok(text.includes(`${NAME}_bucket{le="+Inf",pool="a"} 6`));
    assert.ok(text.includes(`${NAME}_count{pool="b"} 2`));
  });
});
