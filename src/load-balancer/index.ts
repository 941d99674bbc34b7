// Policy name (as written in the config) -> implementation, with the pool's balancing settings.
import type { PoolConfig } from '../config/schema';
import { Hash } from './hash';
import { LeastConnections } from './least-connections';
import type { LoadBalancer } from './load-balancer';
import { RoundRobin } from './round-robin';

/** The pool keys a policy is built from (as the schema fills them in: every one is given, no defaults here). */
export type BalancingConfig = Pick<PoolConfig, 'algorithm' | 'herdingGuard' | 'balanceFactor' | 'slowStart'>;

/** `random`: [0, 1) for least-connections' p2c (also hash's fallback); injectable for the simulation. */
export function createLoadBalancer(config: BalancingConfig, random: () => number = Math.random): LoadBalancer {
  const leastConnections = (): LeastConnections => new LeastConnections({ twoChoices: config.herdingGuard === 'p2c', random, slowStart: config.slowStart });
  switch (config.algorithm) {
    case 'least-connections':
      return leastConnections();
    case 'round-robin':
      return new RoundRobin(config.slowStart);
    case 'hash':
    case 'ip-hash':
      return new Hash({ fallback: leastConnections(), balanceFactor: config.balanceFactor, slowStart: config.slowStart });
  }
}

/** The hashKey a pool hashes on: its own, `ip` for ip-hash, none for the others. */
export function hashKeyOf(config: Pick<PoolConfig, 'algorithm' | 'hashKey'>): string | undefined {
  if (config.algorithm === 'ip-hash') return 'ip';
  return config.algorithm === 'hash' ? config.hashKey : undefined;
}
