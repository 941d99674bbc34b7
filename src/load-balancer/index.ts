// Policy name (as written in the config) -> implementation.
import type { Algorithm } from '../config/schema';
import { IpHash } from './ip-hash';
import { LeastConnections } from './least-connections';
import type { LoadBalancer } from './load-balancer';
import { RoundRobin } from './round-robin';

export function createLoadBalancer(algorithm: Algorithm, herdingGuard: 'p2c' | 'off' = 'off'): LoadBalancer {
  switch (algorithm) {
    case 'least-connections':
      return new LeastConnections({ twoChoices: herdingGuard === 'p2c' });
    case 'ip-hash':
      return new IpHash();
    case 'round-robin':
      return new RoundRobin();
  }
}
