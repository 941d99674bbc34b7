// One pool's tunnel counts as this machine knows them, for redis-state.ts: its own share as last
// written into the pool's fleet totals, and the totals as last read. Pure bookkeeping (no I/O), so
// the rules that keep the totals exact are tested without Redis: what to send each sync (only what
// changed since the last write seen applied, as absolute values; everything when that is in doubt),
// and what the other machines hold (the totals minus this machine's share as written).

/** How the sync script treats the pairs it is sent (see SYNC_LUA in redis-scripts.ts). */
export type SyncMode = 'delta' | 'full' | 'leave';

export interface SyncRequest {
  mode: SyncMode;
  /** This write's number (rising per machine). */
  seq: number;
  /** The number of the last write seen applied: a 'delta' applies only on top of it. */
  base: number;
  /** The totals version this machine holds: the script sends the totals back only when it differs. */
  version: number;
  /** backend, tunnels, backend, tunnels...: absolute counts of this machine. */
  pairs: (string | number)[];
  /** The same, as the share this machine will have written once the script ran. */
  share: Map<string, number>;
}

export interface SyncReply {
  /** False: the script refused the write (a 'delta' on top of a share that is not there, or an overtaken one). */
  applied: boolean;
  version: number;
  /** backend, total, ... ('#', the version, among them); absent when the caller's version is current. */
  totals?: (string | number)[];
}

/** The field of the totals hash that holds its version (a backend field is always host:port). */
export const VERSION_FIELD = '#';

export class PoolCounts {
  /** backend (host:port) -> this machine's tunnels as counted in the fleet totals. */
  private written = new Map<string, number>();
  /** backend -> tunnels fleet-wide (this machine included), as last read. */
  private totals = new Map<string, number>();
  private version = 0;
  /** Number of the write that made `written`. */
  private base = 0;
  /** The next write replaces this machine's whole share: after a failure, a refusal or a while. */
  private full = true;

  /** The next write sends every count, not only the changed ones. */
  rewrite(): void {
    this.full = true;
  }

  /** Forgets what was read: the next sync reads the totals whatever their version (a new Redis). */
  forgetTotals(): void {
    this.version = 0;
  }

  /** What to send for this machine's counts in this pool (`local`: backend -> tunnels) as write number `seq`. */
  request(local: ReadonlyMap<string, number>, seq: number): SyncRequest {
    const pairs: (string | number)[] = [];
    const head = { seq, base: this.base, version: this.version };
    if (this.full) {
      const share = new Map<string, number>();
      for (const [b, n] of local) {
        if (n <= 0) continue;
        pairs.push(b, n);
        share.set(b, n);
      }
      return { mode: 'full', ...head, pairs, share };
    }
    const share = new Map(this.written);
    for (const [b, n] of local) {
      const count = Math.max(0, n);
      if ((this.written.get(b) ?? 0) === count) continue;
      pairs.push(b, count);
      if (count === 0) share.delete(b);
      else share.set(b, count);
    }
    for (const b of this.written.keys()) {
      if (local.has(b)) continue;
      pairs.push(b, 0);
      share.delete(b);
    }
    return { mode: 'delta', ...head, pairs, share };
  }

  /** The request to take this machine's share out of the pool (shutdown, or the pool is gone). */
  leave(seq: number): SyncRequest {
    return { mode: 'leave', seq, base: this.base, version: this.version, pairs: [], share: new Map() };
  }

  /** The script ran `request` and answered `reply`. True when every count must be sent again at once. */
  applied(request: SyncRequest, reply: SyncReply): boolean {
    if (!reply.applied) {
      // Nothing of it was written: the share in Redis is not what this machine believes. The last
      // totals and share stand until the full write that follows at once.
      this.full = true;
      return true;
    }
    this.written = request.share;
    this.base = request.seq;
    this.full = false;
    if (reply.totals !== undefined) {
      const totals = new Map<string, number>();
      for (let i = 0; i + 1 < reply.totals.length; i += 2) {
        const field = String(reply.totals[i]);
        if (field !== VERSION_FIELD) totals.set(field, Number(reply.totals[i + 1]));
      }
      this.totals = totals;
    }
    this.version = reply.version;
    return false;
  }

  /** The script may or may not have run: send everything next time (sending absolute counts again is harmless). */
  failed(): void {
    this.full = true;
  }

  /** Adds the tunnels the other machines hold in this pool to `into`, keyed `<pool>/<backend>`. */
  addRemote(pool: string, into: Map<string, number>): void {
    for (const [b, total] of this.totals) {
      const n = total - (this.written.get(b) ?? 0);
      if (n > 0) into.set(`${pool}/${b}`, n);
    }
  }
}
