// One interface to choose a backend, one implementation per policy (as Envoy and HAProxy do).
// Policies are pure: they see the candidates (already filtered to eligible ones), the request's hash
// key and the time, and do no I/O; the time comes from the caller, so a test or the simulation in
// bench/ drives the clock.

/** What a policy needs to know of a backend. */
export interface Candidate {
  readonly name: string;
  readonly weight: number;
  /** Live tunnels through this worker. */
  readonly active: number;
  /** Fleet-wide live tunnels (own + other workers and machines); least-connections and the hash bound use it when present. */
  readonly connections?: number;
  /**
   * When the backend last became eligible (joined the pool or came back up), epoch ms; 0 (or absent)
   * since before the balancer started. Slow start ramps its weight from then.
   */
  readonly eligibleSince?: number;
}

/**
 * What the last pick was, for switchyard_balancer_decisions_total. Plain numbers, so a policy
 * records one with an assignment.
 */
export const enum Decision {
  /** least-connections or round-robin as usual; not counted. */
  Balanced = -1,
  /** hash: the key's own backend. */
  Hashed = 0,
  /** hash: the key's own backend was over the bound (balanceFactor): the next in the key's order took it. */
  Spilled = 1,
  /** hash: the request had no key: least-connections picked. */
  Fallback = 2,
  /** Slow start changed the pick: with full weights it would have gone to another backend. */
  SlowStart = 3,
  /** The backend was taking new tunnels at its pool's maxUpgradesPerSecond: the upgrade waited its turn (src/upstream/upgrade-pacer.ts). */
  Paced = 4,
  /** Not a pick: a tunnel closed by a rebalance (1012) so that its client is placed again (src/load-balancer/rebalance.ts). */
  Rebalanced = 5,
}

/** Label values of switchyard_balancer_decisions_total, indexed by Decision. */
export const DECISION_LABELS = ['hashed', 'spilled', 'fallback', 'slow_start', 'paced', 'rebalanced'] as const;

export interface LoadBalancer {
  /**
   * Picks one of `candidates` (never empty). `key`: the request's hash key (undefined when the pool
   * has none or the request lacks it); `now`: epoch ms, for slow start.
   */
  pick<T extends Candidate>(candidates: readonly T[], key: string | undefined, now: number): T;
  /** What the last pick was (read right after pick()). */
  readonly decision: Decision;
  /** Forgets what it kept of a backend that left the pool (DNS discovery), so churn does not grow it. */
  forget?(name: string): void;
}
