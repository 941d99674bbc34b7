// The reconnect-storm harness must not rot: `bench/storm.ts --quick` (300 tunnels, one of three
// backends killed, paced at 20/s and unpaced) must measure both rows of its table. No speed is
// asserted here; the numbers live in bench/README.md ("Reconnect storm").
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = join(__dirname, '../..');

test('bench/storm.ts --quick measures a paced and an unpaced reconnect storm', { timeout: 180_000 }, async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/storm.ts', '--quick'], { cwd: ROOT, timeout: 150_000 }, (err, out, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve(out),
    );
  });
  for (const mode of ['unpaced', 'maxUpgradesPerSecond 20']) {
    const row = stdout.split('\n').find((l) => l.startsWith(`| ${mode} |`));
    assert.ok(row, `no "${mode}" row in:\n${stdout}`);
    const [moved, perSecond] = row.split('|').slice(2, 4).map((c) => Number.parseInt(c.trim(), 10));
    assert.ok(moved >= 60 && moved <= 140, `${mode}: ${moved} clients moved (about a third of 300)`);
    assert.ok(perSecond > 0, `${mode}: upgrades counted at the survivors`);
  }
});
