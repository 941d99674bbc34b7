// One interface to choose a backend, one implementation per policy (as Envoy and HAProxy do).
// Policies are pure: they see the candidates (already filtered to eligible ones) and a key, do no I/O.

/** What a policy needs to know of a backend. */
export interface Candidate {
  readonly name: string;
  readonly weight: number;
  /** Live tunnels through this worker. */
  readonly active: number;
  /** Fleet-wide live tunnels (own + other workers and machines); least-connections uses it when present. */
  readonly connections?: number;
}

export interface LoadBalancer {
  /** Picks one of `candidates` (never empty); `key` is the client IP, used by ip-hash. */
  pick<T extends Candidate>(candidates: readonly T[], key: string): T;
}
