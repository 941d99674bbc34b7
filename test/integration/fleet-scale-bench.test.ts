// The fleet-state harness must not rot: `bench/fleet-scale.ts --quick` runs 10 simulated machines
// (real RedisState instances) against a real redis-server, and this test checks that it measured
// every column and wrote its JSON and Markdown; `bench/sync-cost.ts --quick` counts a sync's Redis
// instructions. No speed is asserted here; numbers live in bench/README.md.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FleetRun } from '../../bench/fleet-scale';

const ROOT = join(__dirname, '../..');

test('bench/fleet-scale.ts --quick measures a small fleet against a real redis-server', { timeout: 180_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-fleet-scale-test-'));
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', 'bench/fleet-scale.ts', '--quick', '--out', out], { cwd: ROOT, timeout: 150_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve(stdout),
      );
    });
    assert.match(stdout, /\| current \| single \| 10 \| 1 \|/);
    const files = readdirSync(out);
    const json = files.find((f) => f.endsWith('-quick.json'));
    assert.ok(json, `no results JSON in ${files.join(', ')}`);
    assert.ok(files.includes(json.replace(/\.json$/, '.md')), 'Markdown written next to the JSON');
    const { runs } = JSON.parse(readFileSync(join(out, json), 'utf8')) as { runs: FleetRun[] };
    assert.equal(runs.length, 1);
    const [run] = runs;
    assert.ok(run.syncsPerSecond > 0 && run.redisCores > 0, `syncs and Redis CPU measured: ${JSON.stringify(run)}`);
    assert.ok(run.syncMs.p99 > 0 && run.ageMs.p99 > 0 && run.changedPerSync > 0);
    assert.ok(run.leaveMs !== null && run.leaveMs > 0, 'a killed machine\'s tunnels left the view');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

// `bench/sync-cost.ts --quick`: a redis-server under callgrind, instructions per sync of the sync
// script. No cost is asserted beyond "counted": the figures live in bench/README.md.
test('bench/sync-cost.ts --quick counts the Redis instructions of a sync', { timeout: 240_000 }, async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/sync-cost.ts', '--quick'], { cwd: ROOT, timeout: 220_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve(stdout),
    );
  });
  const m = /\| current \| 10 \| 100 \| 8 \| (\d+) k \|/.exec(stdout);
  assert.ok(m, stdout);
  assert.ok(Number(m[1]) > 10, `a sync runs thousands of instructions: ${stdout}`);
});
