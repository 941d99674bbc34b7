// A named group of backends behind one balancing policy.
import type { PoolConfig } from '../config/schema';
import { createLoadBalancer } from '../load-balancer';
import type { LoadBalancer } from '../load-balancer/load-balancer';
import { Backend } from './backend';

function available(backends: readonly Backend[], tried: ReadonlySet<Backend> | undefined, maxConnecting: number): Backend[] {
  return backends.filter((b) => b.eligible && b.hasRoom && b.connecting < maxConnecting && !tried?.has(b));
}

export class Pool {
  readonly backends: readonly Backend[];
  /** The backends that are not backups, and those that are (tried only when no primary can be picked). */
  private readonly primaries: readonly Backend[];
  private readonly backups: readonly Backend[];
  readonly connectTimeout: number;
  readonly responseTimeout: number;
  readonly retries: number;
  /** A backend with this many connects in flight from this worker is skipped. */
  readonly maxConnectsInFlight: number;
  private readonly balancer: LoadBalancer;

  constructor(
    readonly name: string,
    config: PoolConfig,
  ) {
    this.backends = config.backends.map((b) => new Backend(b, name));
    this.primaries = this.backends.filter((b) => !b.backup);
    this.backups = this.backends.filter((b) => b.backup);
    this.connectTimeout = config.connectTimeout;
    this.responseTimeout = config.responseTimeout;
    this.retries = config.retries;
    this.maxConnectsInFlight = config.maxConnectsInFlight;
    this.balancer = createLoadBalancer(config.algorithm, config.herdingGuard);
  }

  /**
   * An eligible backend with room (below maxConnections, and below maxConnectsInFlight connects
   * under way), not in `tried`; a backup only when no primary is left (down, drained, full or
   * tried), as NGINX's and HAProxy's `backup`; undefined when none is left.
   */
  pick(clientIp: string, tried?: ReadonlySet<Backend>): Backend | undefined {
    let candidates = available(this.primaries, tried, this.maxConnectsInFlight);
    if (candidates.length === 0 && this.backups.length !== 0) candidates = available(this.backups, tried, this.maxConnectsInFlight);
    if (candidates.length === 0) return undefined;
    return candidates.length === 1 ? candidates[0] : this.balancer.pick(candidates, clientIp);
  }
}
