// Live rebalancing (a pool's `rebalance`, `switchyard rebalance POOL`): tunnels placed before a
// scale-out stay on the old backends until they end, so the backends above maxSkew x their share
// shed tunnels (1012, the client reconnects and is placed again) at a bounded rate until the pool
// is within the skew. Pure: fleet counts, time and the round's grants come from the caller
// (src/primary/rebalancer.ts drives it; src/listener.ts picks the tunnels), so the unit tests and the
// simulation in bench/ run it without sockets or sleeps.
//
// How the fleet agrees: each round (ROUND_MS, numbered from the epoch so every machine's rounds are
// the same), every machine computes the same shed from the same fleet counts and claims closes
// from the round's grant (grantCloses(): in Redis, one script on the pool's slot), which holds the
// whole fleet to closesPerSecond and to each backend's shed; a machine closes only what it was
// granted. So N machines close what the fleet needs once, not N times.
//
// No client is closed twice in one rebalance: only tunnels opened before it started (and at least
// minTunnelAge old) are candidates, and the reconnect of a closed client is a new tunnel.
import { Hash } from './hash';
import { LeastConnections } from './least-connections';
import type { Candidate } from './load-balancer';

/** A round of closes: every machine's rounds begin at the same instants (epoch ms / ROUND_MS). */
export const ROUND_MS = 1000;
/** A worker spreads its round's closes over this first part of the round, so the fleet counts show them before the next round's shed is computed. */
export const ROUND_CLOSE_WINDOW_MS = 500;
/** A rebalance that closed nothing (no candidate left: all too young, or at home under hash) for this many rounds ends as stalled. */
export const STALL_ROUNDS = 5;

export interface RebalanceSettings {
  /** Backends above maxSkew x their weight's share of the mean shed tunnels. */
  readonly maxSkew: number;
  /** The fleet's closes per second, all machines together. */
  readonly closesPerSecond: number;
  /** Younger tunnels are never closed (ms). */
  readonly minTunnelAge: number;
}

/** An eligible (ready, up), non-backup backend of the pool and its fleet-wide tunnels. */
export interface BackendLoad {
  readonly key: string;
  readonly weight: number;
  readonly tunnels: number;
}

/** max over the backends of tunnels per weight, over the pool's mean per weight; 1 for an empty pool. */
export function skewOf(loads: readonly BackendLoad[]): number {
  let tunnels = 0;
  let weights = 0;
  let max = 0;
  for (const b of loads) {
    tunnels += b.tunnels;
    weights += b.weight;
    if (b.weight > 0) max = Math.max(max, b.tunnels / b.weight);
  }
  return tunnels === 0 || weights === 0 ? 1 : max / (tunnels / weights);
}

/**
 * Per backend above the skew: how many tunnels it sheds to hold at most maxSkew x its weight's share
 * (the closed clients reconnect into the same pool, so the mean stays). Empty: within the skew.
 */
export function sheds(loads: readonly BackendLoad[], maxSkew: number): Map<string, number> {
  let tunnels = 0;
  let weights = 0;
  for (const b of loads) {
    tunnels += b.tunnels;
    weights += b.weight;
  }
  const out = new Map<string, number>();
  if (weights === 0 || loads.length < 2) return out;
  for (const b of loads) {
    const limit = Math.floor((maxSkew * tunnels * b.weight) / weights);
    if (b.tunnels > limit) out.set(b.key, b.tunnels - limit);
  }
  return out;
}

/** The fleet's closes in one round at closesPerSecond (at least one). */
export function roundBudget(closesPerSecond: number): number {
  return Math.max(1, Math.floor((closesPerSecond * ROUND_MS) / 1000));
}

/** The round a time falls in (every machine numbers rounds the same). */
export function roundOf(now: number): number {
  return Math.floor(now / ROUND_MS);
}

/** What a round has granted so far: in all, and per backend key. */
export interface RoundGrants {
  total: number;
  readonly byBackend: Map<string, number>;
}

/** A machine's claim on a backend: the closes it wants (at most what it holds there) and the backend's shed as it sees it. */
export interface CloseClaim {
  readonly key: string;
  readonly want: number;
  readonly shed: number;
}

/**
 * Grants a machine's claims from a round and records them: each claim gets what it wants, within
 * what the round has left of `budget` and what its backend has left of its shed. The same rule as
 * the Redis script (src/state/redis-scripts.ts REBALANCE_CLAIM_LUA).
 */
export function grantCloses(round: RoundGrants, budget: number, claims: readonly CloseClaim[]): number[] {
  return claims.map((c) => {
    const used = round.byBackend.get(c.key) ?? 0;
    const take = Math.max(0, Math.min(c.want, budget - round.total, c.shed - used));
    if (take > 0) {
      round.total += take;
      round.byBackend.set(c.key, used + take);
    }
    return take;
  });
}

/**
 * Splits `k` closes of one backend among workers in proportion to the tunnels each holds there
 * (largest remainder), never more than one holds.
 */
export function shareOut(k: number, held: readonly number[]): number[] {
  const total = held.reduce((s, n) => s + n, 0);
  if (total === 0 || k <= 0) return held.map(() => 0);
  const want = Math.min(k, total);
  const exact = held.map((n) => (want * n) / total);
  const out = exact.map(Math.floor);
  let left = want - out.reduce((s, n) => s + n, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) {
    if (left === 0) break;
    if (out[i] < held[i]) {
      out[i]++;
      left--;
    }
  }
  return out;
}

/** A tunnel the rebalance begun at `startedAt` may close at `now`: opened before it began, and at least minTunnelAge old. */
export function isCandidate(openedAt: number, startedAt: number, now: number, minTunnelAge: number): boolean {
  return openedAt < startedAt && now - openedAt >= minTunnelAge;
}

/** A backend of the pool as it stands, for homeOf(). */
export interface Member extends Candidate {
  readonly name: string;
}

/**
 * Under hash: the backend a key would be placed on now, by name: the first in the key's own order
 * that is within the bound (balanceFactor, on the fleet counts of `members`). A tunnel already there
 * is at home and stays. One finder serves every tunnel of a round.
 */
export function homeFinder(members: readonly Member[], balanceFactor: number): (key: string) => string | undefined {
  const hash = new Hash({ fallback: new LeastConnections(), balanceFactor });
  return (key) => (members.length === 0 ? undefined : hash.pick(members, key, 0).name);
}

export function homeOf(key: string, members: readonly Member[], balanceFactor: number): string | undefined {
  return homeFinder(members, balanceFactor)(key);
}
