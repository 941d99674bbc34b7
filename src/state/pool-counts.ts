// One pool's tunnel counts as this machine knows them, for redis-state.ts: its own share as last
// written into the pool's fleet totals, and the totals as last read. Pure bookkeeping (no I/O), so
// the rules that keep the totals exact are tested without Redis: what to send each sync (only what
// changed since the last write seen applied, as absolute values; everything when that is in doubt),
// and what the other machines hold (the totals minus this machine's share as written). It runs every
// sync interval for every pool, so it updates its maps in place rather than building new ones.

/** How the sync script treats the pairs it is sent (see SYNC_LUA in redis-scripts.ts). */
export type SyncMode = 'delta' | 'full' | 'leave';

export interface SyncRequest {
  mode: SyncMode;
  /** This write's number (rising per machine). */
  seq: number;
  /** The number of the last write seen applied: a 'delta' applies only on top of it. */
  base: number;
  /** The totals version this machine holds: the totals are read again only when it moved. */
  version: number;
  /**
   * Absolute counts of this machine (0: none left). 'full': backend, tunnels pairs; 'delta': backend,
   * tunnels, tunnels-before triples, where tunnels-before is the count in the share it builds on.
   */
  pairs: (string | number)[];
}

export interface SyncReply {
  /** False: the script refused the write (a 'delta' on top of a share that is not there, or an overtaken one). */
  applied: boolean;
  version: number;
  /** The totals hash as read after the script (HGETALL, '#' the version among them); absent when not read. */
  totals?: Record<string, string>;
}

/** The field of the totals hash that holds its version. Fields from '#' on are not backends (host:port). */
export const VERSION_FIELD = '#';

export class PoolCounts {
  /** backend (host:port) -> this machine's tunnels as counted in the fleet totals. */
  private readonly written = new Map<string, number>();
  /** backend -> tunnels fleet-wide (this machine included), as last read. */
  private readonly totals = new Map<string, number>();
  /** backend -> `<pool>/<backend>`, made once. */
  private readonly keys = new Map<string, string>();
  private version = 0;
  /** The totals moved between the last two syncs: read them along with the next write (a busy pool). */
  private busy = true;
  /** Number of the write that made `written`. */
  private base = 0;
  /** The next write replaces this machine's whole share: after a failure, a refusal or a while. */
  private full = true;

  constructor(readonly pool: string) {}

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
    if (this.full) {
      for (const [b, n] of local) if (n > 0) pairs.push(b, n);
      return { mode: 'full', seq, base: this.base, version: this.version, pairs };
    }
    for (const [b, n] of local) {
      const count = Math.max(0, n);
      const before = this.written.get(b) ?? 0;
      if (before !== count) pairs.push(b, count, before);
    }
    for (const [b, before] of this.written) if (!local.has(b)) pairs.push(b, 0, before);
    return { mode: 'delta', seq, base: this.base, version: this.version, pairs };
  }

  /** The request to take this machine's share out of the pool (shutdown, or the pool is gone). */
  leave(seq: number): SyncRequest {
    return { mode: 'leave', seq, base: this.base, version: this.version, pairs: [] };
  }

  /** The script ran `request` and answered `reply`. True when every count must be sent again at once. */
  applied(request: SyncRequest, reply: SyncReply): boolean {
    if (!reply.applied) {
      // Nothing of it was written: the share in Redis is not what this machine believes. The last
      // totals and share stand until the full write that follows at once.
      this.full = true;
      return true;
    }
    if (request.mode === 'full') this.written.clear();
    const pairs = request.pairs;
    const stride = request.mode === 'full' ? 2 : 3;
    for (let i = 0; i + 1 < pairs.length; i += stride) {
      const n = Number(pairs[i + 1]);
      if (n > 0) this.written.set(String(pairs[i]), n);
      else this.written.delete(String(pairs[i]));
    }
    // An empty delta writes nothing: the base stays the last write that did.
    if (request.mode === 'full' || pairs.length > 0) this.base = request.seq;
    this.full = false;
    if (reply.totals !== undefined) {
      this.totals.clear();
      for (const b in reply.totals) if (b[0] !== VERSION_FIELD) this.totals.set(b, Number(reply.totals[b]));
      // The version the totals were read at (the script's own, or a later one).
      const version = Number(reply.totals[VERSION_FIELD] ?? 0);
      this.busy = version !== this.version;
      this.version = version;
    } else {
      this.busy = false;
    }
    return false;
  }

  /**
   * Whether the totals are read in the same round trip as the write (`request.version` then tells
   * nothing): they are while the pool is busy; an idle pool's sync is the write alone.
   */
  readAhead(): boolean {
    return this.busy || this.version === 0;
  }

  /** After a write without the totals: whether they moved since they were read, and must be read now. */
  behind(version: number): boolean {
    return version !== this.version;
  }

  /** The script may or may not have run: send everything next time (sending absolute counts again is harmless). */
  failed(): void {
    this.full = true;
  }

  /** Adds the tunnels the other machines hold in this pool to `into`, keyed `<pool>/<backend>`. */
  addRemote(into: Map<string, number>): void {
    for (const [b, total] of this.totals) {
      const n = total - (this.written.get(b) ?? 0);
      if (n <= 0) continue;
      let key = this.keys.get(b);
      if (key === undefined) this.keys.set(b, (key = `${this.pool}/${b}`));
      into.set(key, n);
    }
  }
}
