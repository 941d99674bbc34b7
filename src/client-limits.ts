// Per-client limits (config `clientLimits`), the policy part: per client IP (the address clientIp()
// acts on), a cap on tunnels held at once and a token bucket on upgrades started, counted over a
// whole machine or fleet although each worker sees only its own upgrades. Pure: the caller passes
// the time; no I/O (the counts travel through src/primary/client-counts.ts).
//
// How the workers of a machine count together: the kernel spreads a client's connections over the
// workers (SO_REUSEPORT hashes each connection's ports), so no worker sees all of them and none can
// be made to. Each worker counts its own, and every sync interval reports the IPs that come near a
// limit (hot IPs: report() below); the primary sums the reports of all workers (and, with
// scope: fleet, of all machines through the shared state) and sends each worker what the others
// hold (setElsewhere()). A worker admits an upgrade when its own count plus what the others held
// at the last report stays within the limit. So the limit holds to within what other workers admit
// in one sync interval (100 ms by default), plus what each of them holds below the report threshold.
//
// The bucket is kept as debt (burst - tokens): the upgrades taken recently, paid back at `rate` a
// second. Debt, unlike tokens, adds up over workers: a machine's debt for an IP is the sum of its
// workers', and each worker pays its part back in proportion to its share, so the sum decays at
// `rate` whatever the spread.
import { Outcomes, type Outcome } from './errors';

export interface ClientLimitSettings {
  /** Most tunnels (open or being opened) an IP may hold; 0: no limit. */
  maxTunnels: number;
  /** Upgrades an IP may start per second, on average; 0: no limit. */
  upgradesPerSecond: number;
  /** Upgrades an IP may start at once. */
  upgradeBurst: number;
}

/** What a worker or machine holds for one client IP: [ip, tunnels, debt (upgrades not yet paid back, to a tenth, rounded up)]. */
export type ClientCount = [ip: string, tunnels: number, debt: number];

export interface ClientRefusal {
  outcome: Outcome;
  /** Seconds for the Retry-After header. */
  retryAfter: number;
}

interface Entry {
  /** Tunnels of this worker, open or being opened. */
  tunnels: number;
  /** This worker's upgrades not yet paid back, as of `at`. */
  debt: number;
  at: number;
}

/** A tunnel cap is held for minutes: a client asking again within a second only adds load. */
const TUNNEL_RETRY_AFTER_S = 10;
/** Most IPs one report (worker or machine) carries: the ones nearest a limit are what matter. */
export const MAX_REPORTED_CLIENTS = 1000;

export class ClientLimits {
  private readonly entries = new Map<string, Entry>();
  /** What the other workers (and machines) hold, per hot IP, as of the last report. */
  private elsewhere = new Map<string, ClientCount>();
  private readonly ratePerMs: number;
  /** An IP is reported when it holds this many tunnels, or this much debt. */
  private readonly tunnelThreshold: number;
  private readonly debtThreshold: number;
  readonly enabled: boolean;

  constructor(private readonly settings: ClientLimitSettings) {
    this.ratePerMs = settings.upgradesPerSecond / 1000;
    this.enabled = settings.maxTunnels > 0 || settings.upgradesPerSecond > 0;
    // Each other worker may hold up to a threshold unreported: 1/64 of the limit keeps that within
    // a quarter of it up to 16 workers, and a report within tunnels/threshold entries.
    this.tunnelThreshold = Math.max(1, Math.floor(settings.maxTunnels / 64));
    this.debtThreshold = Math.max(2, Math.floor(settings.upgradeBurst / 8));
  }

  /** Client IPs with state here (tunnels, recent upgrades): bounded by tunnels plus the upgrades of the last burst/rate seconds. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * An upgrade from `ip` at `now` (ms): null when admitted, which holds a tunnel for it until
   * release(); otherwise which limit refused it. A refused upgrade takes nothing.
   */
  admit(ip: string, now: number): ClientRefusal | null {
    if (!this.enabled) return null;
    const { maxTunnels, upgradesPerSecond, upgradeBurst } = this.settings;
    let entry = this.entries.get(ip);
    if (entry === undefined) {
      entry = { tunnels: 0, debt: 0, at: now };
      this.entries.set(ip, entry);
    }
    const other = this.elsewhere.size === 0 ? undefined : this.elsewhere.get(ip);
    const otherTunnels = other === undefined ? 0 : other[1];
    const otherDebt = other === undefined ? 0 : other[2];
    this.payBack(entry, otherDebt, now);
    if (maxTunnels > 0 && entry.tunnels + otherTunnels >= maxTunnels) return { outcome: Outcomes.clientTunnelLimit, retryAfter: TUNNEL_RETRY_AFTER_S };
    if (upgradesPerSecond > 0) {
      const over = entry.debt + otherDebt + 1 - upgradeBurst;
      if (over > 0) return { outcome: Outcomes.clientRateLimit, retryAfter: Math.max(1, Math.ceil(over / upgradesPerSecond)) };
      entry.debt++;
    }
    entry.tunnels++;
    return null;
  }

  /** The upgrade admitted for `ip` got no tunnel, or its tunnel ended. */
  release(ip: string): void {
    const entry = this.entries.get(ip);
    if (entry !== undefined && entry.tunnels > 0) entry.tunnels--;
  }

  /** What the other workers and machines hold, replacing the last (IPs left out hold nothing that counts). */
  setElsewhere(counts: readonly ClientCount[]): void {
    this.elsewhere = new Map(counts.map((c) => [c[0], c]));
  }

  /**
   * This worker's hot IPs: those at a report threshold of tunnels or debt, the most tunnels first,
   * at most MAX_REPORTED_CLIENTS. Also forgets IPs that hold nothing any more (the sweep that bounds
   * memory: an IP's state lasts while it has tunnels here, or upgrades not yet paid back).
   */
  report(now: number): ClientCount[] {
    const hot: ClientCount[] = [];
    for (const [ip, entry] of this.entries) {
      const other = this.elsewhere.get(ip);
      this.payBack(entry, other === undefined ? 0 : other[2], now);
      if (entry.tunnels === 0 && entry.debt < 0.01) this.entries.delete(ip);
      else if (entry.tunnels >= this.tunnelThreshold || entry.debt >= this.debtThreshold) hot.push([ip, entry.tunnels, Math.ceil(entry.debt * 10) / 10]);
    }
    if (hot.length > MAX_REPORTED_CLIENTS) hot.sort((a, b) => b[1] - a[1] || b[2] - a[2]).length = MAX_REPORTED_CLIENTS;
    return hot;
  }

  /** Pays back this worker's share of the IP's debt since `entry.at`: all of it at `rate`, its part when other workers hold some. */
  private payBack(entry: Entry, otherDebt: number, now: number): void {
    const elapsed = now - entry.at;
    entry.at = now;
    if (entry.debt === 0 || elapsed <= 0) return;
    const share = otherDebt > 0 ? entry.debt / (entry.debt + otherDebt) : 1;
    entry.debt = Math.max(0, entry.debt - elapsed * this.ratePerMs * share);
  }
}
