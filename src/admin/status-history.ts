// The last minutes of /status, kept by the primary so that a status page opened during an incident
// draws them at once (GET /status/history): a bounded ring of samples, one every few seconds, each
// taken from a /status the admin listener builds anyway. Never per message: the cost is one gather
// of the workers' metrics per sample. Pure: the caller gives the time and the status.
import type { Status } from './status';

/** How often the admin listener samples /status. */
export const HISTORY_INTERVAL_MS = 5000;
/** How far back the history goes. */
export const HISTORY_WINDOW_MS = 10 * 60_000;

/** What one sample keeps of a /status: tunnels per backend and the totals its rates come from. */
interface Sample {
  at: number;
  /** "pool/backend" → tunnels. */
  tunnels: Map<string, number>;
  messagesToBackend: number;
  messagesToClient: number;
  upgradesOk: number;
  upgradesRefused: number;
}

/** Per second since the previous sample; null for the first one (no previous) or a gap in time. */
type Rate = number | null;

/** GET /status/history: columns of equal length, oldest first. */
export interface History {
  intervalSeconds: number;
  windowSeconds: number;
  /** Sample times, epoch ms (the primary's clock). */
  at: number[];
  messagesPerSecond: { toBackend: Rate[]; toClient: Rate[] };
  /** Upgrade attempts per second: ok (got its 101), refused (every other outcome: no route, no backend, backend refused...). */
  upgradesPerSecond: { ok: Rate[]; refused: Rate[] };
  /** Tunnels per backend, in config order; null where the backend was not in the config at that time. */
  backends: { pool: string; backend: string; tunnels: (number | null)[] }[];
}

export class StatusHistory {
  private readonly samples: Sample[] = [];
  /** Every backend the kept samples name, in the order first seen: "pool/backend" → its labels. */
  private readonly backends = new Map<string, { pool: string; backend: string }>();

  constructor(
    private readonly intervalMs = HISTORY_INTERVAL_MS,
    private readonly windowMs = HISTORY_WINDOW_MS,
  ) {}

  /**
   * Keeps what `status` says at `at` (epoch ms). A status that lacks some workers' metrics (one did not
   * answer in time) is left out: its totals would dip and the next rates would jump.
   */
  record(at: number, status: Status): void {
    if (status.metricsFrom.answered < status.metricsFrom.asked) return;
    const tunnels = new Map<string, number>();
    for (const pool of status.pools) {
      for (const b of pool.backends) {
        const key = `${pool.name}/${b.name}`;
        tunnels.set(key, b.tunnels);
        if (!this.backends.has(key)) this.backends.set(key, { pool: pool.name, backend: b.name });
      }
    }
    let refused = 0;
    for (const [outcome, n] of Object.entries(status.totals.upgrades)) if (outcome !== 'ok') refused += n;
    this.samples.push({
      at,
      tunnels,
      messagesToBackend: status.totals.messagesToBackend,
      messagesToClient: status.totals.messagesToClient,
      upgradesOk: status.totals.upgrades.ok ?? 0,
      upgradesRefused: refused,
    });
    // One sample before the window stays: the oldest rate in the window is measured from it.
    while (this.samples.length > 1 && at - this.samples[1].at > this.windowMs) this.samples.shift();
    this.forgetBackendsAgedOut();
  }

  /** The kept samples as columns (the oldest sample, kept only as the base of the first rate, left out). */
  history(): History {
    const first = this.samples.length > 0 && this.samples[this.samples.length - 1].at - this.samples[0].at > this.windowMs ? 1 : 0;
    const kept = this.samples.slice(first);
    const rate = (i: number, read: (s: Sample) => number): Rate => {
      const previous = this.samples[first + i - 1];
      const current = kept[i];
      // More than a few intervals apart (the listener was busy, a worker did not answer): no line across the gap.
      if (previous === undefined || current.at - previous.at > 3 * this.intervalMs) return null;
      // A worker that died took its counts with it: never a negative rate.
      return Math.max(0, (read(current) - read(previous)) / ((current.at - previous.at) / 1000));
    };
    const column = (read: (s: Sample) => number): Rate[] => kept.map((_, i) => rate(i, read));
    return {
      intervalSeconds: this.intervalMs / 1000,
      windowSeconds: this.windowMs / 1000,
      at: kept.map((s) => s.at),
      messagesPerSecond: { toBackend: column((s) => s.messagesToBackend), toClient: column((s) => s.messagesToClient) },
      upgradesPerSecond: { ok: column((s) => s.upgradesOk), refused: column((s) => s.upgradesRefused) },
      backends: [...this.backends].map(([key, labels]) => ({ ...labels, tunnels: kept.map((s) => s.tunnels.get(key) ?? null) })),
    };
  }

  /** Backends a reload removed leave once no kept sample names them. */
  private forgetBackendsAgedOut(): void {
    for (const key of this.backends.keys()) {
      if (!this.samples.some((s) => s.tunnels.has(key))) this.backends.delete(key);
    }
  }
}
