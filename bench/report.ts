// Turns a benchmark run into medians, ratios to NGINX, the targets, a Markdown table and an SVG
// chart; and keeps bench/README.md's copy of the latest table current.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface Sample {
  messagesPerSecond?: number;
  latencyP50Ms?: number;
  latencyP99Ms?: number;
  latencyP999Ms?: number;
  proxyCpuMicrosPerMessage?: number;
  rssBytesPerConnection?: number;
  connected?: number;
  upgradesPerSecond?: number;
  upgradeLatencyP99Ms?: number;
  proxyCpuMicrosPerUpgrade?: number;
  requestsPerSecond?: number;
  proxyCpuMicrosPerRequest?: number;
  errors: number;
  errorSamples?: string[];
}

export interface ScenarioResult {
  title: string;
  workers: number;
  samples: Record<string, Sample[]>;
  medians?: Record<string, Record<string, number>>;
}

export interface Figure {
  scenario: string;
  key: keyof Sample;
  label: string;
  better: 'lower' | 'higher';
  values: Record<string, number | undefined>;
  /** Switchyard (on each runtime measured) and HAProxy over NGINX. */
  ratios: Record<string, number | undefined>;
}

export interface Target {
  text: string;
  met: boolean | undefined;
  detail: string;
}

export interface RunResult {
  label?: string;
  date: string;
  quick: boolean;
  rounds: number;
  machine: Record<string, unknown>;
  versions: Record<string, string>;
  command: string;
  scenarios: Record<string, ScenarioResult>;
  figures?: Figure[];
  targets?: Target[];
  /** What a feature costs: a Switchyard variant against plain Switchyard in the same run. */
  costs?: Target[];
}

interface CostCheck {
  text: string;
  variant: string;
  base: string;
  scenario: string;
  key: keyof Sample;
  /** ratio: variant / base must stay within [.., limit] (or [limit, ..] when higher is better); diff: variant - base <= limit. */
  kind: 'ratio' | 'diff';
  limit: number;
  better: 'lower' | 'higher';
}

const COSTS: CostCheck[] = [
  { text: 'Metrics on (scraped every second): chat CPU per message within 3% of metrics off', variant: 'switchyard', base: 'switchyard-metrics-off', scenario: 'chat', key: 'proxyCpuMicrosPerMessage', kind: 'ratio', limit: 1.03, better: 'lower' },
  { text: 'Redis on: chat CPU per message within 5% of in-memory', variant: 'switchyard-redis', base: 'switchyard', scenario: 'chat', key: 'proxyCpuMicrosPerMessage', kind: 'ratio', limit: 1.05, better: 'lower' },
  { text: 'Redis on: churn upgrades/s within 10% of in-memory', variant: 'switchyard-redis', base: 'switchyard', scenario: 'churn', key: 'upgradesPerSecond', kind: 'ratio', limit: 0.9, better: 'higher' },
  { text: 'Redis stopped: churn upgrade p99 at most 5 ms above Redis up', variant: 'switchyard-redis-down', base: 'switchyard-redis', scenario: 'churn', key: 'upgradeLatencyP99Ms', kind: 'diff', limit: 5, better: 'lower' },
];

const FIGURES: Array<Omit<Figure, 'values' | 'ratios'>> = [
  { scenario: 'chat', key: 'proxyCpuMicrosPerMessage', label: 'chat: proxy CPU per message (µs)', better: 'lower' },
  { scenario: 'chat', key: 'messagesPerSecond', label: 'chat: messages/s', better: 'higher' },
  { scenario: 'chat', key: 'latencyP99Ms', label: 'chat: p99 latency (ms)', better: 'lower' },
  { scenario: 'throughput', key: 'proxyCpuMicrosPerMessage', label: 'throughput: proxy CPU per message (µs)', better: 'lower' },
  { scenario: 'throughput', key: 'messagesPerSecond', label: 'throughput: messages/s', better: 'higher' },
  { scenario: 'throughput', key: 'latencyP99Ms', label: 'throughput: p99 latency (ms)', better: 'lower' },
  { scenario: 'idle', key: 'rssBytesPerConnection', label: 'idle: proxy RSS per tunnel (bytes)', better: 'lower' },
  { scenario: 'churn', key: 'upgradesPerSecond', label: 'churn: upgrades/s', better: 'higher' },
  { scenario: 'churn', key: 'upgradeLatencyP99Ms', label: 'churn: upgrade p99 (ms)', better: 'lower' },
  { scenario: 'churn', key: 'proxyCpuMicrosPerUpgrade', label: 'churn: proxy CPU per upgrade cycle (µs)', better: 'lower' },
  { scenario: 'http', key: 'requestsPerSecond', label: 'HTTP: requests/s', better: 'higher' },
  { scenario: 'http', key: 'proxyCpuMicrosPerRequest', label: 'HTTP: proxy CPU per request (µs)', better: 'lower' },
];

const COLUMNS = ['direct', 'nginx', 'haproxy', 'switchyard'] as const;
/** Switchyard on the other runtime (bench/rootfs.ts): a column, ratios and targets of its own when it ran. */
const OTHER_RUNTIME = 'switchyard-trixie';
const NAMES: Record<string, string> = { direct: 'direct', nginx: 'NGINX', haproxy: 'HAProxy', switchyard: 'Switchyard', [OTHER_RUNTIME]: 'Switchyard (Debian 13, Node 24)' };

/** The columns of this run's table: the four, and Switchyard on the other runtime if it ran. */
function columns(run: RunResult): string[] {
  const other = Object.values(run.scenarios).some((s) => s.samples[OTHER_RUNTIME]);
  return other ? [...COLUMNS, OTHER_RUNTIME] : [...COLUMNS];
}

/** Over NGINX in the table and chart: every Switchyard, then HAProxy. */
function compared(run: RunResult): string[] {
  return [...columns(run).filter((c) => c.startsWith('switchyard')), 'haproxy'];
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b !== 0 ? Math.round((a / b) * 100) / 100 : undefined);

/** Fills in medians, figures and targets. */
export function summarise(run: RunResult): void {
  for (const scenario of Object.values(run.scenarios)) {
    scenario.medians = {};
    for (const [proxy, samples] of Object.entries(scenario.samples)) {
      const m: Record<string, number> = {};
      const keys = new Set(samples.flatMap((s) => Object.keys(s)).filter((k) => k !== 'errorSamples'));
      for (const key of keys) {
        const v = median(samples.map((s) => s[key as keyof Sample]).filter((x): x is number => typeof x === 'number'));
        if (v !== undefined) m[key] = v;
      }
      scenario.medians[proxy] = m;
    }
  }
  run.figures = FIGURES.filter((f) => run.scenarios[f.scenario]).map((f) => {
    const medians = run.scenarios[f.scenario].medians!;
    const values = Object.fromEntries(columns(run).map((p) => [p, medians[p]?.[f.key]]));
    return { ...f, values, ratios: Object.fromEntries(compared(run).map((p) => [p, ratio(values[p], values.nginx)])) };
  });
  const fig = (scenario: string, key: keyof Sample) => run.figures!.find((f) => f.scenario === scenario && f.key === key);
  const target = (text: string, f: Figure | undefined, versus: 'nginx' | 'haproxy', better: 'lower' | 'higher', switchyard = 'switchyard'): Target => {
    const mine = f?.values[switchyard];
    const theirs = f?.values[versus];
    const met = mine === undefined || theirs === undefined ? undefined : better === 'lower' ? mine <= theirs : mine >= theirs;
    return { text, met, detail: mine === undefined || theirs === undefined ? 'not measured' : `${fmt(mine)} vs ${fmt(theirs)} (${ratio(mine, theirs)}x)` };
  };
  // A check runs when both of its Switchyards ran (plain `switchyard` is one check's variant, so it alone is not enough).
  run.costs = COSTS.filter((c) => run.scenarios[c.scenario]?.medians?.[c.variant] && run.scenarios[c.scenario]?.medians?.[c.base]).map((c) => {
    const medians = run.scenarios[c.scenario].medians!;
    const v = medians[c.variant]?.[c.key];
    const b = medians[c.base]?.[c.key];
    if (v === undefined || b === undefined) return { text: c.text, met: undefined, detail: 'not measured' };
    if (c.kind === 'diff') {
      const d = Math.round((v - b) * 100) / 100;
      return { text: c.text, met: d <= c.limit, detail: `${fmt(v)} vs ${fmt(b)} (${d >= 0 ? '+' : ''}${d})` };
    }
    const r = ratio(v, b)!;
    return { text: c.text, met: c.better === 'lower' ? r <= c.limit : r >= c.limit, detail: `${fmt(v)} vs ${fmt(b)} (${r}x)` };
  });
  run.targets = columns(run)
    .filter((c) => c.startsWith('switchyard'))
    .flatMap((s) => {
      const name = NAMES[s];
      return [
        target(`chat: ${name} CPU per message ≤ NGINX`, fig('chat', 'proxyCpuMicrosPerMessage'), 'nginx', 'lower', s),
        target(`idle: ${name} RSS per tunnel ≤ HAProxy`, fig('idle', 'rssBytesPerConnection'), 'haproxy', 'lower', s),
        target(`churn: ${name} upgrades/s ≥ NGINX`, fig('churn', 'upgradesPerSecond'), 'nginx', 'higher', s),
        target(`HTTP: ${name} requests/s ≥ NGINX`, fig('http', 'requestsPerSecond'), 'nginx', 'higher', s),
      ];
    });
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '–';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en');
  return String(Math.round(v * 100) / 100);
}

export function renderMarkdown(run: RunResult): string {
  const lines: string[] = [];
  lines.push(`Run ${run.date.slice(0, 16).replace('T', ' ')} UTC${run.label ? ` (${run.label})` : ''}${run.quick ? ' (quick: harness check, not for reporting)' : ''}, ${run.rounds} round(s), medians; ` +
    `${String(run.machine.cpus)} cores, Node ${String(run.machine.node)}; ${Object.entries(run.versions).map(([k, v]) => `${k}: ${v}`).join('; ')}.`);
  lines.push(`Command: \`${run.command}\``);
  lines.push('');
  const shown = columns(run);
  const over = compared(run);
  lines.push(`| figure | ${shown.map((c) => NAMES[c]).join(' | ')} | ${over.map((c) => `${NAMES[c]} ÷ NGINX`).join(' | ')} |`);
  lines.push(`|---|${[...shown, ...over].map(() => '---:').join('|')}|`);
  for (const f of run.figures ?? []) {
    lines.push(`| ${f.label} (${f.better} is better) | ${shown.map((c) => fmt(f.values[c])).join(' | ')} | ${over.map((c) => fmt(f.ratios[c])).join(' | ')} |`);
  }
  lines.push('');
  lines.push('Workers per proxy: ' + Object.entries(run.scenarios).map(([name, s]) => `${name} ${s.workers}`).join(', ') + ' (HAProxy: threads).');
  const errors = Object.entries(run.scenarios).flatMap(([name, s]) =>
    Object.entries(s.samples).filter(([, samples]) => samples.some((x) => x.errors > 0)).map(([p, samples]) => `${name}/${NAMES[p]}: ${samples.map((x) => x.errors).join('+')}`),
  );
  lines.push(errors.length ? `Errors (connect failures, unexpected closes): ${errors.join(', ')}.` : 'No connection errors in any run.');
  lines.push('');
  lines.push('Targets:');
  const verdict = (t: Target) => `- ${t.met === undefined ? '?' : t.met ? 'met' : 'missed'}: ${t.text}: ${t.detail}`;
  for (const t of run.targets ?? []) lines.push(verdict(t));
  if (run.costs && run.costs.length > 0) {
    lines.push('');
    lines.push('Feature cost (Switchyard variants in the same run):');
    for (const t of run.costs) lines.push(verdict(t));
  }
  return lines.join('\n') + '\n';
}

const COLOURS: Record<string, string> = { switchyard: '#2b6cb0', [OTHER_RUNTIME]: '#6b46c1', haproxy: '#b7791f' };

/** Bar chart of Switchyard's and HAProxy's figures as ratios to NGINX (1.0 = NGINX). */
export function renderSvg(run: RunResult): string {
  const bars = compared(run);
  const figures = (run.figures ?? []).filter((f) => bars.some((p) => f.ratios[p] !== undefined));
  const rowHeight = 8 + bars.length * 13;
  const left = 300;
  const width = 820;
  const top = 50;
  const height = top + figures.length * rowHeight + 40;
  const max = Math.max(2, ...figures.flatMap((f) => bars.map((p) => f.ratios[p] ?? 0)));
  const x = (r: number) => left + (r / max) * (width - left - 60);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="10" y="20" font-size="14" font-weight="bold">${esc(`Ratio to NGINX (1.0 = NGINX), medians of ${run.rounds} round(s), ${run.date.slice(0, 10)}`)}</text>`);
  let legend = left;
  for (const p of bars) {
    parts.push(`<rect x="${legend}" y="28" width="10" height="10" fill="${COLOURS[p]}"/><text x="${legend + 14}" y="37">${esc(NAMES[p])}</text>`);
    legend += 30 + NAMES[p].length * 7;
  }
  figures.forEach((f, i) => {
    const y = top + i * rowHeight;
    parts.push(`<text x="10" y="${y + 16}">${esc(f.label)}</text><text x="10" y="${y + 28}" fill="#666">${f.better} is better</text>`);
    bars.forEach((p, j) => {
      const r = f.ratios[p];
      if (r === undefined) return;
      const good = f.better === 'lower' ? r <= 1 : r >= 1;
      const mine = p.startsWith('switchyard');
      parts.push(`<rect x="${left}" y="${y + 4 + j * 13}" width="${Math.max(1, x(r) - left)}" height="11" fill="${COLOURS[p]}"/>`);
      parts.push(`<text x="${x(r) + 4}" y="${y + 13 + j * 13}" fill="${mine ? (good ? '#276749' : '#c53030') : '#444'}">${r.toFixed(2)}</text>`);
    });
  });
  parts.push(`<line x1="${x(1)}" y1="${top - 4}" x2="${x(1)}" y2="${height - 30}" stroke="black" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${x(1) - 14}" y="${height - 14}">1.0</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

const START = '<!-- bench:latest:start -->';
const END = '<!-- bench:latest:end -->';

/** The page whose "Latest full run" block a full run rewrites. */
export const LATEST_RUN_FILE = join(__dirname, 'README.md');

/** Replaces the latest-results block (between the bench:latest markers) of `file`, the chart linked relative to it. */
export function updateLatestRun(file: string, markdown: string, svgPath: string): void {
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${file}: no ${START} … ${END} block to rewrite`);
  const chart = relative(join(file, '..'), svgPath);
  writeFileSync(file, text.slice(0, a + START.length) + `\n${markdown}\n![ratios to NGINX](${chart})\n` + text.slice(b));
}
