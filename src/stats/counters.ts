// Per-worker counters, bumped on the hot path as plain integer increments (no labels, no calls).
// The metrics layer (prom-client, aggregated over workers) reads and publishes them in batches;
// nothing on the per-message path talks to it directly.
import { Outcomes } from '../errors';

export const counters = {
  /** Upgrade attempts by outcome label (errors.ts), plus "ok" for tunnels opened. */
  upgrades: Object.fromEntries([['ok', 0], ...Object.values(Outcomes).map((o) => [o.label, 0])]) as Record<string, number>,
  messagesToBackend: 0,
  bytesToBackend: 0,
  messagesToClient: 0,
  bytesToClient: 0,
  /** Times a slow client made the balancer stop reading a backend. */
  backendReadsPaused: 0,
  tunnelsOpened: 0,
  tunnelsClosed: 0,
};
