// A named group of backends behind one balancing policy.
import type { PoolConfig } from '../config/schema';
import { createLoadBalancer } from '../load-balancer';
import type { LoadBalancer } from '../load-balancer/load-balancer';
import { Backend } from './backend';

export class Pool {
  readonly backends: readonly Backend[];
  readonly connectTimeout: number;
  readonly responseTimeout: number;
  readonly retries: number;
  private readonly balancer: LoadBalancer;

  constructor(
    readonly name: string,
    config: PoolConfig,
  ) {
    this.backends = config.backends.map((b) => new Backend(b, name));
    this.connectTimeout = config.connectTimeout;
    this.responseTimeout = config.responseTimeout;
    this.retries = config.retries;
    this.balancer = createLoadBalancer(config.algorithm, config.herdingGuard);
  }

  /** An eligible backend not in `tried`, or undefined when none is left. */
  pick(clientIp: string, tried?: ReadonlySet<Backend>): Backend | undefined {
    const candidates = this.backends.filter((b) => b.eligible && b.hasRoom && !tried?.has(b));
    if (candidates.length === 0) return undefined;
    return candidates.length === 1 ? candidates[0] : this.balancer.pick(candidates, clientIp);
  }
}
