// A named group of backends behind one balancing policy.
import { fixedBackends, type BackendConfig, type PoolConfig } from '../config/schema';
import { createLoadBalancer, hashKeyOf } from '../load-balancer';
import { compileHashKey, type HashKeyExtractor } from '../load-balancer/hash-key';
import { Decision, type LoadBalancer } from '../load-balancer/load-balancer';
import type { ClientRequest } from '../client-request';
import { Backend } from './backend';
import { UpgradePacer } from './upgrade-pacer';

function available(backends: readonly Backend[], tried: ReadonlySet<Backend> | undefined, maxConnecting: number): Backend[] {
  return backends.filter((b) => b.eligible && b.hasRoom && b.connecting < maxConnecting && !tried?.has(b));
}

export class Pool {
  /** Fixed by the config, or, with DNS sources (discovery, resolve), replaced by the primary's list (setBackends). */
  backends: readonly Backend[] = [];
  /** The backends that are not backups, and those that are (tried only when no primary can be picked). */
  private primaries: readonly Backend[] = [];
  private backups: readonly Backend[] = [];
  /** Each backend's share of maxUpgradesPerSecond in this worker; 0: not paced. */
  private readonly paceShare: number;
  readonly connectTimeout: number;
  /** Tunnels to its backends open with a PROXY protocol v2 header (sendProxyProtocol: v2). */
  readonly sendsProxyProtocol: boolean;
  readonly responseTimeout: number;
  readonly retries: number;
  readonly slowStart: number;
  /** A backend with this many connects in flight from this worker is skipped. */
  readonly maxConnectsInFlight: number;
  private readonly balancer: LoadBalancer;
  /** The request's hash key, for hash and ip-hash pools; null for the others. */
  private readonly extractKey: HashKeyExtractor | null;
  /**
   * The balancer's decisions, by Decision (hashed, spilled, fallback, slow_start, paced, rebalanced): plain
   * counts, published as switchyard_balancer_decisions_total at scrape time. The picks are counted
   * only when there was a choice (two or more backends could take the tunnel); paced when an
   * upgrade waited for its backend's turn (src/proxy/upgrade.ts); rebalanced when a rebalance
   * closed a tunnel (src/listener.ts).
   */
  readonly decisions = [0, 0, 0, 0, 0, 0];

  /** Epoch ms, for slow start (the primary stamps eligibleSince with the same clock). */
  private readonly now: () => number;

  /** `workers`: how many workers share the machine's maxUpgradesPerSecond (each paces at its share). */
  constructor(
    readonly name: string,
    readonly config: PoolConfig,
    options: { now?: () => number; workers?: number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.paceShare = config.maxUpgradesPerSecond > 0 ? config.maxUpgradesPerSecond / (options.workers ?? 1) : 0;
    this.connectTimeout = config.connectTimeout;
    this.sendsProxyProtocol = config.sendProxyProtocol === 'v2';
    this.responseTimeout = config.responseTimeout;
    this.retries = config.retries;
    this.slowStart = config.slowStart;
    this.balancer = createLoadBalancer(config);
    this.maxConnectsInFlight = config.maxConnectsInFlight;
    const hashKey = hashKeyOf(config);
    this.extractKey = hashKey === undefined ? null : compileHashKey(hashKey);
    this.setBackends(fixedBackends(config));
  }

  /**
   * The pool's backends become `configs`: a backend already there (same name) is kept with its
   * counts and state; the others are new. Returns the backends taken out (their tunnels are the
   * caller's to end). Not on the data path: when the primary's list changes (DNS discovery).
   */
  setBackends(configs: readonly BackendConfig[]): Backend[] {
    const old = new Map(this.backends.map((b) => [b.name, b]));
    this.backends = configs.map((c) => {
      const fresh = new Backend(c, this.name, this.config);
      const kept = old.get(fresh.name);
      if (kept !== undefined) {
        old.delete(fresh.name);
        kept.weight = fresh.weight; // an SRV record's weight may change
        return kept;
      }
      if (this.paceShare > 0) fresh.pacer = new UpgradePacer(this.paceShare, this.config.upgradeQueueTimeout);
      return fresh;
    });
    this.primaries = this.backends.filter((b) => !b.backup);
    this.backups = this.backends.filter((b) => b.backup);
    for (const b of old.values()) this.balancer.forget?.(b.name);
    return [...old.values()];
  }

  /** The request's hash key: undefined when the pool does not hash or the request lacks the key (once per upgrade or request). */
  keyOf(request: ClientRequest, clientIp: string): string | undefined {
    return this.extractKey === null ? undefined : this.extractKey(request, clientIp);
  }

  /**
   * An eligible backend with room (below maxConnections, and below maxConnectsInFlight connects
   * under way), not in `tried`; a backup only when no primary is left (down, drained, full or
   * tried), as NGINX's and HAProxy's `backup`; undefined when none is left.
   * `key`: from keyOf().
   */
  pick(key: string | undefined, tried?: ReadonlySet<Backend>): Backend | undefined {
    let candidates = available(this.primaries, tried, this.maxConnectsInFlight);
    if (candidates.length === 0 && this.backups.length !== 0) candidates = available(this.backups, tried, this.maxConnectsInFlight);
    if (candidates.length === 0) return undefined;
    if (candidates.length === 1) return candidates[0];
    const picked = this.balancer.pick(candidates, key, this.slowStart === 0 ? 0 : this.now());
    const decision = this.balancer.decision;
    if (decision !== Decision.Balanced) this.decisions[decision]++;
    return picked;
  }
}
