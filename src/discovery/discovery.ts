// Backends found by DNS, in the primary (the control path): each DNS source of a pool (its
// `discovery`, and each backend written with `resolve`) is looked up again when its TTL runs out, and
// its set of backends (backend-set.ts) follows the answers. Each balancer machine resolves for itself;
// Coordination turns the sets into backends, health checks and worker updates. A failed lookup keeps
// the last good set.
import { EventEmitter } from 'node:events';
import type { Resolver } from 'node:dns/promises';
import { lookupDefaults, parseBackend, serviceName, type BackendConfig, type LookupSettings, type PoolConfig } from '../config/schema';
import type { DiscoveryStatus } from '../admin/admin-api';
import type { Logger } from '../log';
import { countDiscoveryLookup } from '../stats/metrics';
import { Backend } from '../upstream/backend';
import { BackendSet, namesOf, nextLookupIn, type SetChange } from './backend-set';
import { createResolver, lookup } from './dns-lookup';

/** One DNS name whose addresses are backends of a pool: the pool's `discovery`, or a backend written with `resolve`. */
export interface DnsSource extends LookupSettings {
  dns: string;
  /** The backends' port; undefined for an SRV name, whose records carry it. */
  port: number | undefined;
  /** The backend every address becomes (its URL's host and port replaced; an SRV record's weight replaces `weight`). */
  template: BackendConfig;
}

/** A pool's DNS sources, in config order: its `discovery`, then its backends with `resolve`. */
export function sourcesOf(pc: Pick<PoolConfig, 'backends' | 'discovery' | 'tls'>): DnsSource[] {
  const out: DnsSource[] = [];
  const d = pc.discovery;
  if (d !== undefined) {
    const { dns, port, weight, maxConnections, tls, ...settings } = d;
    // Over TLS, every address is asked for the service's certificate (SNI), not its IP's.
    const serverName = pc.tls?.serverName ?? serviceName(dns);
    const template = tls ? parseBackend({ url: 'wss://0.0.0.0:1', weight, maxConnections, tls: { serverName } }) : parseBackend({ url: 'ws://0.0.0.0:1', weight, maxConnections });
    out.push({ ...settings, dns, port, template });
  }
  for (const b of pc.backends) {
    if (b.resolve === false) continue;
    const { host, port, tls } = new Backend(b);
    // Over TLS, each address is asked for the written name's certificate (SNI), not its IP's.
    const template = tls === null ? { ...b, resolve: false } : { ...b, resolve: false, tls: { ...b.tls, serverName: b.tls?.serverName ?? pc.tls?.serverName ?? host } };
    out.push({ ...(b.resolve === true ? lookupDefaults() : b.resolve), dns: host, port, template });
  }
  return out;
}

interface Watch {
  pool: string;
  config: DnsSource;
  resolver: Resolver;
  set: BackendSet;
  /** SRV: each backend's weight from its record; empty for A/AAAA (the template's weight). */
  weights: Map<string, number>;
  timer: NodeJS.Timeout | undefined;
  lastAnswer: number;
  failing: string | undefined;
  nextLookup: number;
  /** Answers taken since the start: the first one is no change to slow-start or log about. */
  answers: number;
}

/** A source is the same across a reload when its pool, name and port are: it keeps its set. */
const sourceKey = (pool: string, s: DnsSource): string => `${pool} ${s.dns} ${s.port ?? 'srv'}`;

export interface DiscoveryEvents {
  /** The pool's set changed (joined, vanished, returned or removed backends, or SRV weights). */
  changed: [pool: string, change: SetChange & { removed: string[]; reweighted: string[] }];
}

export class Discovery extends EventEmitter<DiscoveryEvents> {
  /** By sourceKey, in config order. */
  private watches = new Map<string, Watch>();
  private running = false;

  constructor(
    pools: Readonly<Record<string, PoolConfig>>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.configure(pools);
  }

  /** The pools' DNS sources; a source a reload keeps (same pool, name and port) keeps its set (a reload does not forget what DNS said). */
  configure(pools: Readonly<Record<string, PoolConfig>>): void {
    const previous = this.watches;
    this.watches = new Map();
    for (const [pool, pc] of Object.entries(pools)) {
      for (const source of sourcesOf(pc)) {
        const key = sourceKey(pool, source);
        if (this.watches.has(key)) continue; // the same name twice in a pool: one source
        const old = previous.get(key);
        this.watches.set(key, {
          pool,
          config: source,
          resolver: createResolver(source),
          set: old?.set ?? new BackendSet(),
          weights: old?.weights ?? new Map<string, number>(),
          timer: undefined,
          lastAnswer: old?.lastAnswer ?? 0,
          failing: undefined,
          nextLookup: 0,
          answers: old?.answers ?? 0,
        });
      }
    }
    for (const w of previous.values()) {
      clearTimeout(w.timer);
      w.resolver.cancel();
    }
    if (this.running) for (const w of this.watches.values()) void this.lookUp(w);
  }

  /** Looks every name up once (waiting at most each source's timeout x 2), then keeps them up to date. */
  async start(): Promise<void> {
    this.running = true;
    await Promise.all([...this.watches.values()].map((w) => this.lookUp(w)));
  }

  stop(): void {
    this.running = false;
    for (const w of this.watches.values()) {
      clearTimeout(w.timer);
      w.resolver.cancel();
    }
  }

  private watchesOf(pool: string): Watch[] {
    return [...this.watches.values()].filter((w) => w.pool === pool);
  }

  /** The backends DNS gives `pool` (draining ones included), each from its source's template; an address two sources give comes from the first. */
  backendsOf(pool: string): BackendConfig[] {
    const seen = new Set<string>();
    const out: BackendConfig[] = [];
    for (const w of this.watchesOf(pool)) {
      const scheme = new URL(w.config.template.url).protocol;
      for (const name of w.set.names()) {
        if (seen.has(name)) continue;
        seen.add(name);
        out.push({ ...w.config.template, url: `${scheme}//${name}`, weight: w.weights.get(name) ?? w.config.template.weight });
      }
    }
    return out;
  }

  /** Has this backend left its pool's DNS answers (and so drains)? Not while another source of the pool still gives it. */
  isDraining(pool: string, name: string): boolean {
    const ws = this.watchesOf(pool);
    return ws.some((w) => w.set.isDraining(name)) && !ws.some((w) => w.set.isLive(name));
  }

  /** Takes out the vanished backends whose drain is over (no tunnel left on this machine, or drainTimeout passed). */
  sweep(settle: number, tunnels: (pool: string, name: string) => number): void {
    const now = this.now();
    for (const w of this.watches.values()) {
      const removed = w.set.removeDrained(now, w.config.drainTimeout, settle, (name) => tunnels(w.pool, name));
      if (removed.length === 0) continue;
      for (const r of removed) {
        if (this.watchesOf(w.pool).some((o) => o.set.isLive(r.name))) continue; // another source of the pool gives it: it stays
        if (r.timedOut) this.log.warn({ pool: w.pool, backend: r.name, drainTimeoutMs: w.config.drainTimeout }, 'discovery: drain deadline passed: closing the tunnels of a backend DNS no longer gives (1001)');
        else this.log.info({ pool: w.pool, backend: r.name }, 'discovery: drained backend removed');
      }
      for (const r of removed) w.weights.delete(r.name);
      this.emit('changed', w.pool, { joined: [], vanished: [], returned: [], removed: removed.map((r) => r.name), reweighted: [] });
    }
  }

  /** Each pool's DNS sources together: their names, backends, a failing lookup (named by its source when the pool has several), the next lookup. */
  status(): Record<string, DiscoveryStatus> {
    const out: Record<string, DiscoveryStatus> = {};
    const all = [...this.watches.values()];
    for (const w of all) {
      const several = all.filter((o) => o.pool === w.pool).length > 1;
      const failing = w.failing === undefined ? undefined : several ? `${w.config.dns}: ${w.failing}` : w.failing;
      const draining = w.set.names().length - w.set.live;
      const s = out[w.pool];
      if (s === undefined) out[w.pool] = { dns: w.config.dns, backends: w.set.live, draining, lastAnswer: w.lastAnswer, failing, nextLookup: w.nextLookup };
      else {
        s.dns += `, ${w.config.dns}`;
        s.backends += w.set.live;
        s.draining += draining;
        s.lastAnswer = Math.min(s.lastAnswer, w.lastAnswer);
        s.failing ??= failing;
        s.nextLookup = Math.min(s.nextLookup, w.nextLookup);
      }
    }
    return out;
  }

  private async lookUp(w: Watch): Promise<void> {
    let wait: number;
    const current = (): boolean => this.watches.get(sourceKey(w.pool, w.config)) === w;
    try {
      const answer = await lookup(w.resolver, w.config);
      if (!current()) return; // reconfigured meanwhile
      countDiscoveryLookup(w.pool, 'ok');
      if (w.failing !== undefined) this.log.info({ pool: w.pool, dns: w.config.dns }, 'discovery: lookups answer again');
      w.failing = undefined;
      w.lastAnswer = this.now();
      wait = nextLookupIn(answer.ttl, w.config);
      const { names, left, weights } = namesOf(answer, w.config.maxBackends);
      if (left > 0) this.log.warn({ pool: w.pool, dns: w.config.dns, left, maxBackends: w.config.maxBackends }, 'discovery: more addresses than maxBackends: some left out');
      const change = w.set.apply(names, this.now());
      const reweighted = [...weights].filter(([name, weight]) => !change.joined.includes(name) && (w.weights.get(name) ?? w.config.template.weight) !== weight).map(([name]) => name);
      for (const [name, weight] of weights) w.weights.set(name, weight);
      const first = w.answers++ === 0;
      if (change.joined.length + change.vanished.length + change.returned.length + reweighted.length !== 0) {
        if (!first || change.vanished.length !== 0) this.log.info({ pool: w.pool, dns: w.config.dns, ...change, reweighted }, 'discovery: backends changed');
        else this.log.info({ pool: w.pool, dns: w.config.dns, backends: names }, 'discovery: backends found');
        this.emit('changed', w.pool, { ...change, removed: [], reweighted });
      }
    } catch (err) {
      if (!this.running || !current()) return; // stopped or reconfigured meanwhile (the resolver was cancelled)
      const code = (err as NodeJS.ErrnoException).code;
      countDiscoveryLookup(w.pool, 'failed');
      const reason = code ?? (err as Error).message;
      // Once per failure streak (and when the reason changes), not once per attempt.
      if (w.failing !== reason) this.log.warn({ pool: w.pool, dns: w.config.dns, reason, backends: w.set.live }, 'discovery: lookup failed: keeping the last good set of backends');
      w.failing = reason;
      wait = w.config.minTtl;
    }
    if (!this.running) return;
    w.nextLookup = this.now() + wait;
    clearTimeout(w.timer);
    w.timer = setTimeout(() => void this.lookUp(w), wait);
    w.timer.unref();
  }
}
