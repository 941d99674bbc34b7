// Passive health, in Envoy's sense of outlier detection: a backend whose connects, upgrades, tunnels
// or plain HTTP requests fail `consecutiveFailures` times in a row (within `window`) is ejected for a
// while, longer each time it is ejected again, and never so many that more than `maxEjectionPercent`
// of the pool is out.
// Pure: it is told what happened and when (an injected clock), and answers; it does no I/O.
import type { OutlierDetectionConfig } from '../config/schema';

/** What the detector remembers of one backend. */
interface BackendRecord {
  /** Failures in the current streak, and when the streak began. */
  failures: number;
  streakStart: number;
  /** 0 while not ejected. */
  ejectedUntil: number;
  /** How many base ejection times the next ejection lasts, less one; decays while the backend behaves. */
  multiplier: number;
  /** When the multiplier last changed (ejection or decay step). */
  multiplierSince: number;
  /** Ejections since start, for operators and metrics. */
  ejections: number;
}

export interface Ejection {
  key: string;
  /** How long this ejection lasts. */
  durationMs: number;
  /** Ejections of this backend so far, this one included. */
  ejections: number;
}

export class OutlierDetector {
  private readonly records = new Map<string, BackendRecord>();

  constructor(
    private readonly settings: OutlierDetectionConfig,
    backendKeys: readonly string[],
  ) {
    for (const key of backendKeys) {
      this.records.set(key, { failures: 0, streakStart: 0, ejectedUntil: 0, multiplier: 0, multiplierSince: 0, ejections: 0 });
    }
  }

  /** After a reload: the streaks, ejections and multipliers `previous` holds for backends this detector also has. */
  carryOver(previous: OutlierDetector): void {
    for (const [key, r] of previous.records) if (this.records.has(key)) this.records.set(key, { ...r });
  }

  /** A failed connect, upgrade or plain HTTP request, or an abnormal close. Returns the ejection it caused, if any. */
  recordFailure(key: string, now: number): Ejection | undefined {
    const r = this.records.get(key);
    if (r === undefined || !this.settings.enabled || r.ejectedUntil > now) return undefined;
    if (r.failures === 0 || now - r.streakStart > this.settings.window) {
      r.failures = 0;
      r.streakStart = now;
    }
    r.failures++;
    if (r.failures < this.settings.consecutiveFailures || !this.mayEject(now)) return undefined;
    this.decay(r, now);
    const { baseEjectionTime: base, maxEjectionTime } = this.settings;
    const durationMs = Math.min(base * (r.multiplier + 1), Math.max(maxEjectionTime, base));
    // Capped where the duration is: a long-flapping backend decays back as fast as a briefly bad one.
    r.multiplier = Math.min(r.multiplier + 1, Math.ceil(maxEjectionTime / base));
    r.multiplierSince = now;
    r.ejections++;
    r.failures = 0;
    r.ejectedUntil = now + durationMs;
    return { key, durationMs, ejections: r.ejections };
  }

  /** A tunnel opened or a response head came: the streak is broken. */
  recordSuccess(key: string): void {
    const r = this.records.get(key);
    if (r !== undefined) r.failures = 0;
  }

  /** Ends the ejections that are due; returns the keys that came back. */
  expire(now: number): string[] {
    const back: string[] = [];
    for (const [key, r] of this.records) {
      if (r.ejectedUntil !== 0 && r.ejectedUntil <= now) {
        r.ejectedUntil = 0;
        r.multiplierSince = now;
        back.push(key);
      }
    }
    return back;
  }

  isEjected(key: string, now: number): boolean {
    const r = this.records.get(key);
    return r !== undefined && r.ejectedUntil > now;
  }

  ejections(key: string): number {
    return this.records.get(key)?.ejections ?? 0;
  }

  /** The earliest time an ejection ends, for scheduling expire(). */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const r of this.records.values()) if (r.ejectedUntil !== 0 && (next === undefined || r.ejectedUntil < next)) next = r.ejectedUntil;
    return next;
  }

  private mayEject(now: number): boolean {
    let ejected = 0;
    for (const r of this.records.values()) if (r.ejectedUntil > now) ejected++;
    return (ejected + 1) * 100 <= this.records.size * this.settings.maxEjectionPercent;
  }

  /** One step less per maxEjectionTime the backend stayed in (Envoy decays its multiplier likewise). */
  private decay(r: BackendRecord, now: number): void {
    const step = Math.max(this.settings.maxEjectionTime, this.settings.baseEjectionTime);
    const steps = Math.floor((now - r.multiplierSince) / step);
    if (steps > 0 && r.multiplier > 0) r.multiplier = Math.max(0, r.multiplier - steps);
  }
}
