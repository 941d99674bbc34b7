// docs/configuration.md is what the schema says now: every key, its default and its description.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { validateConfig } from '../../src/config/load';
import { EXAMPLE_CONFIG, REFERENCE_FILE, describeSchema, renderReference, undocumentedKeys } from '../../src/config/reference';

void describe('configuration reference', () => {
  void it('docs/configuration.md is what the schema generates now (regenerate with `npm run docs:config`)', () => {
    assert.equal(readFileSync(REFERENCE_FILE, 'utf8'), renderReference());
  });

  void it('every key of the schema has a description', () => {
    assert.deepEqual(undocumentedKeys(), []);
  });

  void it('a key without a description, or a changed default, shows', () => {
    const schema = z.strictObject({
      port: z.number().int().min(1).max(65535).default(8080).describe('Where to listen.'),
      pool: z.strictObject({ retries: z.number().int().default(2) }).optional().describe('A pool.'),
    });
    assert.deepEqual(undocumentedKeys(schema), ['pool.retries']);
    const changed = z.strictObject({ port: z.number().int().min(1).max(65535).default(9000).describe('Where to listen.') });
    assert.notEqual(renderReference(schema), renderReference(changed));
    assert.match(renderReference(changed), /\| `port` \| integer 1–65535 \| `9000` \| Where to listen\. \|/);
  });

  void it('durations and sizes are shown as an operator writes them, with the bounds the schema checks', () => {
    const keys = new Map(describeSchema().flatMap((s) => s.keys.map((k) => [k.path, k] as const)));
    assert.deepEqual(
      ['drainTimeout', 'retireTimeout', 'routes[].maxPayload', 'pools.<name>.healthCheck.interval', 'redis.syncInterval', 'pools.<name>.backends[].url'].map((p) => {
        const k = keys.get(p);
        return k && `${k.type} = ${k.default}`;
      }),
      ['duration = `10s`', 'duration = `10m`', 'size = `1MiB`', 'duration ≥ 50ms = `5s`', 'duration ≥ 10ms = `100ms`', 'string = required'],
    );
  });

  void it("the README's minimal config is valid", () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    const yaml = /## A minimal config\n\n```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(yaml, 'README.md has a "A minimal config" section with a yaml block');
    const config = validateConfig(parse(yaml));
    assert.deepEqual(Object.keys(config.pools), ['chat']);
  });

  void it("the page's example config is valid", () => {
    const config = validateConfig(parse(EXAMPLE_CONFIG));
    assert.equal(config.pools.chat.backends.length, 4);
    assert.equal(config.retireTimeout, 600_000);
  });
});
