// A process's descriptor limit and what a worker may spend of it: the default of workerConnections.
//
// The soft limit is already raised to the hard one when Switchyard's code starts: Node does it in
// every process at startup (node.cc, PlatformInit: "Raise the open file descriptor limit"), workers
// included, which is what NGINX's worker_rlimit_nofile asks for. Raising the hard limit needs
// privileges and is the service manager's job (systemd's LimitNOFILE=). Node has no getrlimit(), so
// the numbers come from /proc/self/limits; elsewhere they are unknown and a fixed default applies.
import { readdirSync, readFileSync } from 'node:fs';

export interface DescriptorLimit {
  soft: number;
  hard: number;
}

/** What a worker holds once listening, the accept guard's reserve included (measured: 37-38), for estimates made outside one. */
export const TYPICAL_WORKER_DESCRIPTORS = 40;

/** workerConnections when the descriptor limit cannot be read (not Linux). */
export const UNKNOWN_LIMIT_CONNECTIONS = 4096;

/** The "Max open files" line of /proc/self/limits, or undefined when it cannot be read. */
export function readDescriptorLimit(): DescriptorLimit | undefined {
  try {
    return parseDescriptorLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/** Parses /proc/<pid>/limits text; "unlimited" is taken as Infinity. */
export function parseDescriptorLimit(text: string): DescriptorLimit | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (!m) return undefined;
  const value = (v: string): number => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: value(m[1]), hard: value(m[2]) };
}

/** Descriptors this process holds now (Linux), or undefined. */
export function countOpenDescriptors(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1; // less the one readdir itself used
  } catch {
    return undefined;
  }
}

/**
 * The default of workerConnections: each client connection costs `perConnection` descriptors (two:
 * its own and its backend's, as HAProxy counts for maxconn; four behind the PROXY protocol front,
 * which adds both ends of the inner connection), out of what is left of the soft limit once the worker
 * holds `inUse` (its start-up descriptors and the accept guard's reserve) and a slack of an eighth
 * (at least 16) is kept for what it cannot count: connections accepted that have sent nothing yet,
 * kept-alive idle client connections, idle keep-alive backend connections, DNS, /proc reads.
 */
export function autoWorkerConnections(limit: DescriptorLimit | undefined, inUse: number, perConnection = 2): number {
  if (limit === undefined || !Number.isFinite(limit.soft)) return UNKNOWN_LIMIT_CONNECTIONS;
  const free = limit.soft - inUse;
  const slack = Math.max(16, Math.floor(free / 8));
  return Math.max(1, Math.floor((free - slack) / perConnection));
}

/** Descriptors `connections` client connections need beside `inUse`: for the warning when workerConnections is set too high. */
export function descriptorsNeeded(connections: number, inUse: number): number {
  return inUse + 2 * connections;
}
