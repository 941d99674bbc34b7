// Backends found by DNS, in the primary (the control path): each pool with `discovery` is looked up
// again when its TTL runs out, and its set of backends (backend-set.ts) follows the answers. Each
// balancer machine resolves for itself; Coordination turns the set into backends, health checks and
// worker updates. A failed lookup keeps the last good set.
import { EventEmitter } from 'node:events';
import type { Resolver } from 'node:dns/promises';
import { parseBackend, type BackendConfig, type DiscoveryConfig, type PoolConfig } from '../config/schema';
import type { DiscoveryStatus } from '../admin/admin-api';
import type { Logger } from '../log';
import { countDiscoveryLookup } from '../stats/metrics';
import { BackendSet, namesOf, nextLookupIn, type SetChange } from './backend-set';
import { createResolver, lookup } from './dns-lookup';

interface Watch {
  pool: string;
  config: DiscoveryConfig;
  resolver: Resolver;
  set: BackendSet;
  timer: NodeJS.Timeout | undefined;
  lastAnswer: number;
  failing: string | undefined;
  nextLookup: number;
  /** Answers taken since the start: the first one is no change to slow-start or log about. */
  answers: number;
}

export interface DiscoveryEvents {
  /** The pool's set changed (joined, vanished, returned or removed backends). */
  changed: [pool: string, change: SetChange & { removed: string[] }];
}

export class Discovery extends EventEmitter<DiscoveryEvents> {
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

  /** The pools' discovery settings; a pool that keeps its name keeps its set (a reload does not forget what DNS said). */
  configure(pools: Readonly<Record<string, PoolConfig>>): void {
    const previous = this.watches;
    this.watches = new Map();
    for (const [pool, pc] of Object.entries(pools)) {
      if (pc.discovery === undefined) continue;
      const old = previous.get(pool);
      const kept = old !== undefined && old.config.dns === pc.discovery.dns && old.config.port === pc.discovery.port;
      this.watches.set(pool, {
        pool,
        config: pc.discovery,
        resolver: createResolver(pc.discovery),
        set: kept ? old.set : new BackendSet(),
        timer: undefined,
        lastAnswer: kept ? old.lastAnswer : 0,
        failing: undefined,
        nextLookup: 0,
        answers: kept ? old.answers : 0,
      });
    }
    for (const w of previous.values()) {
      clearTimeout(w.timer);
      w.resolver.cancel();
    }
    if (this.running) for (const w of this.watches.values()) void this.lookUp(w);
  }

  /** Looks every name up once (waiting at most each pool's timeout x 2), then keeps them up to date. */
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

  /** The backends discovery gives `pool` (draining ones included), with the pool's discovery defaults. */
  backendsOf(pool: string): BackendConfig[] {
    const w = this.watches.get(pool);
    if (w === undefined) return [];
    return w.set.names().map((name) => parseBackend({ url: `ws://${name}`, weight: w.config.weight, maxConnections: w.config.maxConnections }));
  }

  /** Has this backend left the pool's DNS answer (and so drains)? */
  isDraining(pool: string, name: string): boolean {
    return this.watches.get(pool)?.set.isDraining(name) ?? false;
  }

  /** Takes out the vanished backends whose drain is over (no tunnel left on this machine, or drainTimeout passed). */
  sweep(settle: number, tunnels: (pool: string, name: string) => number): void {
    const now = this.now();
    for (const w of this.watches.values()) {
      const removed = w.set.removeDrained(now, w.config.drainTimeout, settle, (name) => tunnels(w.pool, name));
      if (removed.length === 0) continue;
      for (const r of removed) {
        if (r.timedOut) this.log.warn({ pool: w.pool, backend: r.name, drainTimeoutMs: w.config.drainTimeout }, 'discovery: drain deadline passed: closing the tunnels of a backend DNS no longer gives (1001)');
        else this.log.info({ pool: w.pool, backend: r.name }, 'discovery: drained backend removed');
      }
      this.emit('changed', w.pool, { joined: [], vanished: [], returned: [], removed: removed.map((r) => r.name) });
    }
  }

  status(): Record<string, DiscoveryStatus> {
    const out: Record<string, DiscoveryStatus> = {};
    for (const [pool, w] of this.watches) {
      const names = w.set.names();
      out[pool] = { dns: w.config.dns, backends: w.set.live, draining: names.length - w.set.live, lastAnswer: w.lastAnswer, failing: w.failing, nextLookup: w.nextLookup };
    }
    return out;
  }

  private async lookUp(w: Watch): Promise<void> {
    let wait: number;
    try {
      const answer = await lookup(w.resolver, w.config);
      if (this.watches.get(w.pool) !== w) return; // reconfigured meanwhile
      countDiscoveryLookup(w.pool, 'ok');
      if (w.failing !== undefined) this.log.info({ pool: w.pool, dns: w.config.dns }, 'discovery: lookups answer again');
      w.failing = undefined;
      w.lastAnswer = this.now();
      wait = nextLookupIn(answer.ttl, w.config);
      const { names, left } = namesOf(answer, w.config.maxBackends);
      if (left > 0) this.log.warn({ pool: w.pool, dns: w.config.dns, left, maxBackends: w.config.maxBackends }, 'discovery: more addresses than maxBackends: some left out');
      const change = w.set.apply(names, this.now());
      const first = w.answers++ === 0;
      if (change.joined.length + change.vanished.length + change.returned.length !== 0) {
        if (!first || change.vanished.length !== 0) this.log.info({ pool: w.pool, dns: w.config.dns, ...change }, 'discovery: backends changed');
        else this.log.info({ pool: w.pool, dns: w.config.dns, backends: names }, 'discovery: backends found');
        this.emit('changed', w.pool, { ...change, removed: [] });
      }
    } catch (err) {
      if (!this.running || this.watches.get(w.pool) !== w) return; // stopped or reconfigured meanwhile (the resolver was cancelled)
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
