// What the admin API answers: the fleet's backends (GET /status) and what a reload did (POST /reload).
// The primary fills them in, the admin listener serves them and `switchyard status`/`reload` read
// them; they live here, below all three, so none imports another's module for a type.
import type { AdminState } from '../config/schema';
import type { StateStatus } from '../state/shared-state';
import type { HealthState } from '../upstream/backend';

export interface BackendStatus {
  backend: string;
  url: string;
  health: HealthState;
  /** The active checks' verdict ('off' when the pool has none). */
  activeCheck: HealthState | 'off';
  /** True when this machine runs the active checks of this backend (holds its lease). */
  checkedHere: boolean;
  ejected: boolean;
  ejections: number;
  admin: AdminState;
  connections: { machine: number; fleet: number };
  /** The most tunnels it may hold fleet-wide; 0: no limit. */
  maxConnections: number;
  /** Takes tunnels only while no other backend of the pool can. */
  backup: boolean;
  /** While slow start ramps its weight: when the ramp ends (epoch ms); 0 when it has its full weight. */
  slowStartUntil: number;
  weight: number;
  /** Found by DNS discovery rather than written in the config. */
  discovered: boolean;
}

/** A pool's DNS discovery, as `switchyard status` and /status show it. */
export interface DiscoveryStatus {
  dns: string;
  /** Backends in the latest good answer. */
  backends: number;
  /** Backends that left the answer and still drain. */
  draining: number;
  /** Epoch ms of the last good answer; 0: none yet. */
  lastAnswer: number;
  /** Why the lookups fail, while they do (ESERVFAIL, ETIMEOUT, ENOTFOUND...). */
  failing: string | undefined;
  /** Epoch ms of the next lookup. */
  nextLookup: number;
}

/** A pool's rebalance as this machine runs it (src/primary/rebalancer.ts): running, or how the last one ended. */
export interface RebalanceStatus {
  state: 'running' | 'balanced' | 'stalled' | 'deadline';
  /** command: `switchyard rebalance POOL` (on any machine); auto: the pool's `rebalance` saw it above maxSkew. */
  trigger: 'command' | 'auto';
  startedAt: number;
  /** 0 while running. */
  endedAt: number;
  /** The deadline (epoch ms); 0: none. */
  until: number;
  /** Tunnels this machine closed. */
  closed: number;
  skewAtStart: number;
  /** max/mean per weight over the pool's eligible backends, fleet-wide, at the last round. */
  skew: number;
  maxSkew: number;
  closesPerSecond: number;
  minTunnelAge: number;
}

/** A rebalance of the pool runs already (POST /rebalance answers 409). */
export class RebalanceConflict extends Error {}

export interface StatusReport {
  machine: string;
  state: { kind: string; status: StateStatus };
  pools: Record<string, BackendStatus[]>;
  /** Per pool that has run one: its rebalance, running or last ended. */
  rebalance: Record<string, RebalanceStatus>;
  /** Pools with DNS discovery: the name, the backends found, whether lookups fail. */
  discovery: Record<string, DiscoveryStatus>;
}

/** What a reload did, for the log, the admin endpoint and `switchyard reload`. */
export type ReloadResult =
  | { ok: true; generation: number; workers: number; retiring: number; closingNow: number }
  | { ok: false; error: string };
