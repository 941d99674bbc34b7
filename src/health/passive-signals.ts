// Passive health signals from the data path: failed connects, failed upgrades (5xx), abnormal
// backend closes and failed plain-HTTP requests, plus the first success after a failure (which ends
// a failure streak). Recorded as plain pushes, at most once per attempt on a backend or tunnel end
// (never per message); the worker hands them to the primary's outlier detection in its next batch.
import type { Backend } from '../upstream/backend';

let outcomes: [key: string, ok: boolean][] = [];
/** Backends with a failure reported since their last success: only for those is a success news. */
const failing = new Set<string>();

export function backendFailed(backend: Backend): void {
  outcomes.push([backend.key, false]);
  failing.add(backend.key);
}

export function backendSucceeded(backend: Backend): void {
  if (!failing.delete(backend.key)) return;
  outcomes.push([backend.key, true]);
}

/** The outcomes since the last call, in order. */
export function takeOutcomes(): [key: string, ok: boolean][] {
  const taken = outcomes;
  outcomes = [];
  return taken;
}
