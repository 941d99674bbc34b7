// docs/configuration.md is generated here from the schema, so the reference cannot drift from the
// code: every key with its type, default and description, under a hand-written introduction.
// `npm run docs:config` writes it; test/config/reference.test.ts fails when the file is stale or a
// key has no description.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { configSchema } from './schema';

/** One key that holds a value (a row of a table). */
export interface KeyDoc {
  path: string;
  type: string;
  default: string;
  description: string | undefined;
}

/** One object of the config (a table): the top level, `listen`, `pools.<name>`, `routes[]` … */
export interface SectionDoc {
  path: string;
  /** How the object itself is given: the top level, required, optional, or filled with defaults when absent. */
  presence: 'top' | 'required' | 'optional' | 'defaulted';
  description: string | undefined;
  keys: KeyDoc[];
}

type Schema = z.core.$ZodType;

/** What wrappers (default, optional, pipe, preprocess) say about a key, and the schema under them. */
interface Unwrapped {
  core: Schema;
  description?: string;
  typeName?: string;
  defaultValue?: unknown;
  hasDefault: boolean;
  optional: boolean;
  /** Lower bounds added by a `.pipe(z.number().min(n))` on top of a duration. */
  min?: number;
}

function unwrap(schema: Schema): Unwrapped {
  const out: Unwrapped = { core: schema, hasDefault: false, optional: false };
  let s = schema;
  for (;;) {
    const meta = z.globalRegistry.get(s);
    out.description ??= meta?.description;
    if (typeof meta?.typeName === 'string') out.typeName ??= meta.typeName;
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    if (def.type === 'default' || def.type === 'prefault') {
      if (!out.hasDefault) out.defaultValue = def.defaultValue;
      out.hasDefault = true;
      s = def.innerType as Schema;
    } else if (def.type === 'optional' || def.type === 'nullable' || def.type === 'readonly') {
      out.optional = true;
      s = def.innerType as Schema;
    } else if (def.type === 'pipe') {
      const [from, to] = [def.in as Schema, def.out as Schema];
      if (from._zod.def.type === 'transform') {
        s = to; // z.preprocess: what it accepts is what the output schema checks
      } else {
        out.min ??= bounds(to).min; // a refinement piped after the value was parsed
        s = from;
      }
    } else {
      out.core = s;
      return out;
    }
  }
}

function bounds(schema: Schema): { min?: number; max?: number; int: boolean } {
  const r: { min?: number; max?: number; int: boolean } = { int: false };
  const checks = (schema._zod.def as { checks?: { _zod: { def: Record<string, unknown> } }[] }).checks ?? [];
  for (const c of checks) {
    const d = c._zod.def;
    if (d.check === 'number_format' && typeof d.format === 'string' && /int/.test(d.format)) r.int = true;
    if (d.check === 'greater_than' && typeof d.value === 'number') r.min = d.value;
    if (d.check === 'less_than' && typeof d.value === 'number') r.max = d.value;
  }
  return r;
}

function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, n] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms % n === 0) return `${ms / n}${unit}`;
  return `${ms}ms`;
}

function formatSize(bytes: number): string {
  for (const [unit, n] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (bytes % n === 0) return `${bytes / n}${unit}`;
  return `${bytes}`;
}

function formatValue(value: unknown, typeName: string | undefined): string {
  if (typeof value === 'number' && typeName === 'duration') return formatDuration(value);
  if (typeof value === 'number' && typeName === 'size') return formatSize(value);
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function typeOf(u: Unwrapped): string {
  if (u.typeName) return u.min !== undefined && u.min > 0 ? `${u.typeName} ≥ ${formatValue(u.min, u.typeName)}` : u.typeName;
  return describeType(u.core);
}

function describeType(schema: Schema): string {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  switch (def.type) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'number': {
      const { min, max, int } = bounds(schema);
      const name = int ? 'integer' : 'number';
      if (min !== undefined && max !== undefined) return `${name} ${min}–${max}`;
      return min !== undefined ? `${name} ≥ ${min}` : name;
    }
    case 'enum':
      return orList(Object.values(def.entries as Record<string, string>).map((v) => `\`${v}\``));
    case 'literal':
      return orList((def.values as unknown[]).map((v) => `\`${String(v)}\``));
    case 'union':
      return orList((def.options as Schema[]).map((o) => typeOf(unwrap(o))));
    case 'array':
      return `list of ${typeOf(unwrap(def.element as Schema))}s`;
    case 'record':
      return 'map';
    case 'unknown':
    case 'any':
      return 'any';
    default:
      return def.type;
  }
}

function orList(items: string[]): string {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/** The object schema a key leads to, and how its path is written, when it is one; else undefined. */
function objectUnder(u: Unwrapped, path: string): { schema: Schema; path: string } | undefined {
  const def = u.core._zod.def as unknown as Record<string, unknown> & { type: string };
  if (def.type === 'object') return { schema: u.core, path };
  if (def.type === 'array') {
    const element = unwrap(def.element as Schema).core;
    if (element._zod.def.type === 'object') return { schema: element, path: `${path}[]` };
  }
  if (def.type === 'record') {
    const value = unwrap(def.valueType as Schema).core;
    if (value._zod.def.type === 'object') return { schema: value, path: `${path}.<name>` };
  }
  return undefined;
}

/** Every object of a config schema as a section of keys, top level first, then depth-first in key order. */
export function describeSchema(schema: Schema = configSchema): SectionDoc[] {
  const sections: SectionDoc[] = [];
  const visit = (object: Schema, section: SectionDoc): void => {
    sections.push(section);
    const children: (() => void)[] = [];
    const shape = (object._zod.def as unknown as { shape: Record<string, Schema> }).shape;
    for (const [key, child] of Object.entries(shape)) {
      const path = section.path === '' ? key : `${section.path}.${key}`;
      const u = unwrap(child);
      const nested = objectUnder(u, path);
      if (nested) {
        const presence = u.hasDefault ? 'defaulted' : u.optional ? 'optional' : 'required';
        children.push(() => visit(nested.schema, { path: nested.path, presence, description: u.description, keys: [] }));
        continue;
      }
      const fallback = u.optional ? 'none' : 'required';
      section.keys.push({ path, type: typeOf(u), default: u.hasDefault ? `\`${formatValue(u.defaultValue, u.typeName)}\`` : fallback, description: u.description });
    }
    for (const child of children) child();
  };
  visit(unwrap(schema).core, { path: '', presence: 'top', description: undefined, keys: [] });
  return sections;
}

/** Paths of the keys and sections that have no description (the top level needs none). */
export function undocumentedKeys(schema: Schema = configSchema): string[] {
  const missing: string[] = [];
  for (const section of describeSchema(schema)) {
    if (section.presence !== 'top' && !section.description) missing.push(section.path);
    for (const key of section.keys) if (!key.description) missing.push(key.path);
  }
  return missing;
}

/** A config showing most keys; the reference test checks that it validates. */
export const EXAMPLE_CONFIG = `listen: { host: 0.0.0.0, port: 8080 }   # tls: { cert: fullchain.pem, key: privkey.pem } for wss:// and https://
workers: auto                  # one per core
drainTimeout: 10s
retireTimeout: 10m             # after a reload, how long old workers keep their tunnels
maxRetiringGenerations: 2      # older generations finishing their tunnels at once; past it the oldest closes them now
trustedProxies: [10.0.0.0/8]   # peers whose X-Forwarded-For is appended to and used as the client IP
logLevel: info
accessLog: false               # true: a JSON line per tunnel when it ends and per request
admin:                         # metrics, probes, status page, writes; never the public port
  host: 127.0.0.1
  port: 8405
  tokenFile: /etc/switchyard/admin-token   # writes need it (Authorization: Bearer); or token:, or SWITCHYARD_ADMIN_TOKEN
  allowedHosts: [lb1.example.com]          # Host names it answers to besides localhost, loopback and its own address
  # socket: /run/switchyard/admin.sock     # a 0600 Unix socket: writes without a token, its mode is the credential
pools:
  chat:
    algorithm: least-connections   # or round-robin, hash, ip-hash
    connectTimeout: 5s             # TCP connect + the backend's answer to the upgrade
    responseTimeout: 60s           # plain HTTP: wait for the backend's response head
    retries: 2                     # further backends tried after a failed connect
    healthCheck: { type: http, path: /health, expectStatus: 200-399, interval: 5s, timeout: 2s, rise: 2, fall: 3 }
    outlierDetection: { consecutiveFailures: 5, baseEjectionTime: 30s, maxEjectionPercent: 50 }
    backends:
      - { url: ws://10.0.1.1:9001, weight: 1 }
      - { url: ws://10.0.1.2:9001, weight: 2, admin: drain }   # ready | drain | maintenance
      - { url: ws://10.0.1.3:9001, maxConnections: 5000 }      # holds at most 5,000 tunnels fleet-wide
      - { url: ws://10.0.9.1:9001, backup: true }              # only while no other backend can take a tunnel
  rooms:
    algorithm: hash                # every member of a room on the room's backend
    hashKey: path:2                # /rooms/42/ws -> 42; or ip, ip/24, header:X-Room, cookie:room, query:room
    balanceFactor: 1.25            # no backend above 1.25 x the mean: a hot room spills to its next backend
    slowStart: 30s                 # a backend that joins or comes back ramps up over 30 s
    backends: [{ url: ws://10.0.3.1:9001 }, { url: ws://10.0.3.2:9001 }, { url: ws://10.0.3.3:9001 }]
  notify:
    backends: [{ url: ws://10.0.2.1:9100 }]
routes:                          # most specific first: a route naming a host, then the longest path
  - path: /chat                  # prefix on segment boundaries: /chat, /chat/x, /chat?x; not /chatroom
    pool: chat
    mode: both                   # websocket | http | both
    idleTimeout: 120s
  - { path: /rooms, pool: rooms }
  - { host: notify.example.com, path: /, pool: notify, mode: websocket }
redis:                           # optional: share health, drains and counts across machines
  url: redis://10.0.0.5:6379     # or set REDIS_URL
  clusterName: chat-eu           # key namespace: fleets with different names can share one Redis
`;

const INTRO = `<!-- Generated by src/config/reference.ts from src/config/schema.ts: edit those, then run \`npm run docs:config\`. -->
# Configuration

Switchyard reads one YAML or JSON file (\`switchyard start --config FILE\`); flags given beside
\`--config\` override it ([operations.md, "Running it"](operations.md#running-it)). Every key has a default except
the pools and routes. This page is generated from the schema, \`src/config/schema.ts\`, which holds
each key's type, default and description.

- The file is validated once, at start and at each reload, then frozen and sent to the workers.
  Unknown keys are rejected.
- A bad value fails with one line naming the key, and nothing starts (a reload changes nothing):
  \`config error: pools.chat.backends[0].url: must be ws://host:port or http://host:port …\`.
  \`switchyard check --config FILE\` runs the same checks: exit 0 when valid, 1 with that line.
- Durations are \`500ms\`, \`30s\`, \`2m\`, \`1h\` or a number of milliseconds. Sizes are \`64KiB\`,
  \`16MiB\` (or \`k\`, \`m\`, \`g\`; \`kb\`, \`mb\`, \`gb\` count in thousands) or a number of bytes.
- Relative paths in the file (\`listen.tls.cert\`, \`listen.tls.key\`, \`admin.tokenFile\`,
  \`admin.socket\`) are taken from its directory; those of flags (\`--tls-cert\`, \`--tls-key\`,
  \`--admin-token-file\`) from the working directory.
- \`REDIS_URL\` in the environment turns on shared state in Redis when the file names no
  \`redis.url\`; the file's value wins.
- \`SWITCHYARD_ADMIN_TOKEN\` gives the admin token when the file names neither \`admin.token\` nor
  \`admin.tokenFile\`.
- A reload cannot change \`listen\` (except the files and settings of \`listen.tls\`), \`admin\`
  (except its token and \`allowedHosts\`) or \`redis\` ([operations.md](operations.md#reload)).

In the tables, \`<name>\` stands for a name you choose and \`[]\` for each item of a list.

## Example

\`\`\`yaml
${EXAMPLE_CONFIG}\`\`\`
`;

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The whole of docs/configuration.md. */
export function renderReference(schema: Schema = configSchema): string {
  const parts = [INTRO];
  for (const section of describeSchema(schema)) {
    const heading = section.presence === 'top' ? 'Top level' : `\`${section.path}\``;
    parts.push(`\n## ${heading}\n`);
    const presence = { top: '', required: '**Required.** ', optional: '**Optional.** ', defaulted: '' }[section.presence];
    if (section.description) parts.push(`\n${presence}${section.description}\n`);
    if (section.keys.length === 0) continue;
    parts.push('\n| key | type | default | meaning |\n|---|---|---|---|\n');
    for (const key of section.keys) parts.push(`| \`${key.path}\` | ${cell(key.type)} | ${cell(key.default)} | ${cell(key.description ?? '')} |\n`);
  }
  return parts.join('');
}

export const REFERENCE_FILE = join(__dirname, '../../docs/configuration.md');

if (require.main === module) {
  // A key without its description would make a row without an explanation: say which, write nothing.
  const missing = undocumentedKeys();
  if (missing.length > 0) {
    process.stderr.write(`keys without a .describe() in src/config/schema.ts: ${missing.join(', ')}\n`);
    process.exit(1);
  }
  writeFileSync(REFERENCE_FILE, renderReference());
  process.stdout.write(`wrote ${REFERENCE_FILE}\n`);
}
