// The backends DNS gives one pool, and how that set changes from one answer to the next. Pure: the
// clock is passed in, so joins, drains and removals are unit-tested without a resolver or a timer.
import { isIP } from 'node:net';
import type { LookupSettings } from '../config/schema';

/** One address of an answer, with its port (the pool's, or the SRV record's). */
export interface Address {
  host: string;
  port: number;
  /** SRV: the backend's weight from its record (1..256); undefined for A/AAAA. */
  weight?: number;
}

/** A lookup's result: its addresses and the smallest TTL among its records, seconds. */
export interface Answer {
  addresses: Address[];
  ttl: number;
}

/** host:port as Backend.name writes it (an IPv6 address in brackets, as in a URL). */
export function addressName(a: Address): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** When to look the name up again, ms: the answer's TTL, within [minTtl, maxTtl]. */
export function nextLookupIn(ttlSeconds: number, d: Pick<LookupSettings, 'minTtl' | 'maxTtl'>): number {
  return Math.min(d.maxTtl, Math.max(d.minTtl, ttlSeconds * 1000));
}

/**
 * The answer's distinct backend names, at most `max` (the lowest, so the same answer keeps the same
 * ones), how many were left out, and the SRV weights of those kept (an address two records give: the first's).
 */
export function namesOf(answer: Answer, max: number): { names: string[]; left: number; weights: Map<string, number> } {
  const all = [...new Set(answer.addresses.map(addressName))].sort();
  const names = all.slice(0, max);
  const weights = new Map<string, number>();
  const kept = new Set(names);
  for (const a of answer.addresses) {
    const name = addressName(a);
    if (a.weight !== undefined && kept.has(name) && !weights.has(name)) weights.set(name, a.weight);
  }
  return { names, left: Math.max(0, all.length - max), weights };
}

export interface SetChange {
  /** New in the answer: they join (with the pool's slow start). */
  joined: string[];
  /** Gone from the answer: they drain. */
  vanished: string[];
  /** Back in the answer while still draining: ready again. */
  returned: string[];
}

/** One pool's discovered backends, by name; a vanished one stays, draining, until removed. */
export class BackendSet {
  /** name -> when it left the answer (epoch ms), undefined while in it. */
  private readonly members = new Map<string, number | undefined>();

  /** The names of the latest answer replace the set: who joins, who leaves, who comes back. */
  apply(names: readonly string[], now: number): SetChange {
    const change: SetChange = { joined: [], vanished: [], returned: [] };
    const current = new Set(names);
    for (const name of names) {
      if (!this.members.has(name)) change.joined.push(name);
      else if (this.members.get(name) !== undefined) change.returned.push(name);
      this.members.set(name, undefined);
    }
    for (const [name, since] of this.members) {
      if (since === undefined && !current.has(name)) {
        this.members.set(name, now);
        change.vanished.push(name);
      }
    }
    return change;
  }

  /**
   * The vanished backends whose drain is over, taken out of the set: past `drainTimeout`, or with
   * no tunnel left (`tunnels(name)`) once `settle` ms have passed (the workers' counts of tunnels
   * opened just before it vanished may not have arrived yet).
   */
  removeDrained(now: number, drainTimeout: number, settle: number, tunnels: (name: string) => number): { name: string; timedOut: boolean }[] {
    const out: { name: string; timedOut: boolean }[] = [];
    for (const [name, since] of this.members) {
      if (since === undefined) continue;
      const timedOut = now - since >= drainTimeout;
      if (timedOut || (now - since >= settle && tunnels(name) === 0)) {
        this.members.delete(name);
        out.push({ name, timedOut: timedOut && tunnels(name) !== 0 });
      }
    }
    return out;
  }

  /** Every backend of the set, draining ones included, in name order. */
  names(): string[] {
    return [...this.members.keys()].sort();
  }

  /** In the latest answer. */
  isLive(name: string): boolean {
    return this.members.has(name) && this.members.get(name) === undefined;
  }

  isDraining(name: string): boolean {
    return this.members.get(name) !== undefined;
  }

  /** How many are in the latest answer (not draining). */
  get live(): number {
    let n = 0;
    for (const since of this.members.values()) if (since === undefined) n++;
    return n;
  }
}
