// The source's import graph has no cycles, and the control path is not imported back: a module
// below the primary (admin, stats, upstream ...) takes shared types from a module both can import.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseCircular, parseDependencyTree } from 'dpdm';

const ROOT = join(__dirname, '..', '..');

/** The import graph from the files `patterns` (relative to `context`) match, type-only imports included; ids relative to `context`. */
function imports(patterns: string[], context: string): ReturnType<typeof parseDependencyTree> {
  return parseDependencyTree(patterns.map((p) => join(context, p)), { context, transform: false });
}

async function cycles(patterns: string[], context: string): Promise<string[][]> {
  return parseCircular(await imports(patterns, context));
}

test('no import cycle under src/ and workers/', async () => {
  const found = await cycles(['src/**/*.ts', 'workers/**/*.ts'], ROOT);
  assert.deepEqual(found.map((c) => c.join(' -> ')), []);
});

test('the cycle check sees a cycle, type-only imports included', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-cycle-'));
  try {
    writeFileSync(join(dir, 'a.ts'), "import type { B } from './b';\nexport type A = { b?: B };\n");
    writeFileSync(join(dir, 'b.ts'), "import { c } from './c';\nexport type B = number;\nexport const b = c;\n");
    writeFileSync(join(dir, 'c.ts'), "import type { A } from './a';\nexport const c: A = {};\n");
    const found = await cycles(['a.ts'], dir);
    assert.equal(found.length, 1);
    assert.deepEqual([...found[0]].sort(), ['a.ts', 'b.ts', 'c.ts']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('only the CLI imports the primary (src/primary/)', async () => {
  const tree = await imports(['src/**/*.ts', 'workers/**/*.ts'], ROOT);
  const back: string[] = [];
  for (const [from, deps] of Object.entries(tree)) {
    if (from.startsWith('src/primary/') || from === 'src/cli.ts') continue;
    for (const dep of deps ?? []) if (dep.id?.startsWith('src/primary/')) back.push(`${from} -> ${dep.id}`);
  }
  assert.deepEqual(back, []);
});
