// Reading the admin listener's /metrics (Prometheus text format) in tests.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class Scrape {
  constructor(
    readonly samples: readonly Sample[],
    readonly text: string,
  ) {}

  /** Samples of `name` whose labels include `labels`. */
  select(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** Sum over the matching samples; throws when there is none (a missing series is a failure, not a 0). */
  sum(name: string, labels: Record<string, string> = {}): number {
    const hits = this.select(name, labels);
    if (hits.length === 0) throw new Error(`no sample ${name}${JSON.stringify(labels)} in /metrics`);
    return hits.reduce((n, s) => n + s.value, 0);
  }

  /** Metric family names (from the # TYPE lines). */
  families(): Set<string> {
    return new Set([...this.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
  }
}

export function parseMetrics(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return new Scrape(samples, text);
}

export async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}
