// A full benchmark run rewrites the "Latest full run" table of bench/README.md, and only that block.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LATEST_RUN_FILE, updateLatestRun } from '../../bench/report';

const START = '<!-- bench:latest:start -->';
const END = '<!-- bench:latest:end -->';

void describe('the latest-run table', () => {
  void it('lives in bench/README.md, once, and nowhere in the top-level README', () => {
    assert.equal(LATEST_RUN_FILE, join(__dirname, '../../bench/README.md'));
    const bench = readFileSync(LATEST_RUN_FILE, 'utf8');
    assert.equal(bench.split(START).length, 2, 'one start marker');
    assert.equal(bench.split(END).length, 2, 'one end marker');
    assert.ok(bench.indexOf(START) < bench.indexOf(END));
    assert.ok(!readFileSync(join(__dirname, '../../README.md'), 'utf8').includes(START));
  });

  void it('replaces what is between the markers, with the chart linked relative to the page', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-latest-run-'));
    try {
      const page = join(dir, 'README.md');
      writeFileSync(page, `# Benchmarks\nbefore\n${START}\nold table\n${END}\nafter\n`);
      updateLatestRun(page, '| new | table |', join(dir, 'results/2026-12-04.svg'));
      assert.equal(readFileSync(page, 'utf8'), `# Benchmarks\nbefore\n${START}\n| new | table |\n![ratios to NGINX](results/2026-12-04.svg)\n${END}\nafter\n`);
      writeFileSync(page, '# no markers\n');
      assert.throws(() => updateLatestRun(page, 'x', join(dir, 'x.svg')), /no <!-- bench:latest:start -->/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
