// The worker's side of coordination: applies what the primary decided about each backend (health,
// admin state, when it became eligible, tunnels held elsewhere) to this worker's Backend objects,
// and every sync interval reports this worker's live tunnel counts and passive outcomes. Upgrades
// read the fields as they are; nothing here is awaited on the data path.
import { takeOutcomes } from '../health/passive-signals';
import type { PrimaryMessage, WorkerMessage } from '../ipc';
import type { Backend } from './backend';
import type { Pool } from './pool';

export class BackendSync {
  private readonly byKey = new Map<string, Backend>();
  private readonly pools = new Map<string, Pool>();
  /** Called with the backends the primary took out of a pool (DNS discovery): their tunnels end. */
  onRemoved: (removed: Backend[]) => void = () => undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastCounts = '';
  private onFirstState: (() => void) | null = null;

  constructor(
    pools: Iterable<Pool>,
    private readonly intervalMs: number,
    private readonly send: (m: WorkerMessage) => void,
  ) {
    for (const pool of pools) this.pools.set(pool.name, pool);
    this.index();
  }

  private index(): void {
    this.byKey.clear();
    for (const pool of this.pools.values()) for (const b of pool.backends) this.byKey.set(b.key, b);
  }

  /** Asks the primary for the current state; resolves when it came, or after `timeoutMs` (config state then). */
  ready(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.onFirstState = () => {
        clearTimeout(timer);
        resolve();
      };
      this.send({ type: 'state-request' });
    });
  }

  start(): void {
    this.timer = setInterval(() => this.report(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Handles the primary's coordination messages; false for others. */
  onMessage(m: PrimaryMessage): boolean {
    if (m.type === 'backend-state') {
      for (const v of m.backends) {
        const b = this.byKey.get(v.key);
        if (b === undefined) continue;
        b.health = v.health;
        b.admin = v.admin;
        b.ejections = v.ejections;
        b.eligibleSince = v.eligibleSince;
      }
      this.onFirstState?.();
      this.onFirstState = null;
      return true;
    }
    if (m.type === 'backends') {
      const pool = this.pools.get(m.pool);
      if (pool === undefined) return true; // a pool this worker's generation does not have
      const removed = pool.setBackends(m.backends);
      this.index();
      if (removed.length !== 0) this.onRemoved(removed);
      return true;
    }
    if (m.type === 'elsewhere') {
      for (const [key, b] of this.byKey) b.elsewhere = m.counts[key] ?? 0;
      return true;
    }
    return false;
  }

  private report(): void {
    const counts: Record<string, number> = {};
    for (const [key, b] of this.byKey) if (b.active !== 0) counts[key] = b.active;
    const text = JSON.stringify(counts);
    const outcomes = takeOutcomes();
    if (text === this.lastCounts && outcomes.length === 0) return;
    this.lastCounts = text;
    this.send({ type: 'backend-report', counts, outcomes });
  }
}
