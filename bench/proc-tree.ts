// CPU seconds and resident memory of a process and all its descendants, read from /proc.
// The proxy under test is a process tree (NGINX master + workers, Switchyard primary + workers);
// threads are included because /proc/<pid>/stat sums them.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

export const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const PAGE_SIZE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;

export interface TreeSample {
  /** User + system CPU seconds of every live process in the tree. */
  cpuSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  /** Sum of the processes' resident set sizes, bytes. */
  rssBytes: number;
  pids: number[];
}

interface Stat {
  ppid: number;
  userTicks: number;
  systemTicks: number;
  rssPages: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, rss 24.
    return { ppid: Number(fields[1]), userTicks: Number(fields[11]), systemTicks: Number(fields[12]), rssPages: Number(fields[21]) };
  } catch {
    return undefined; // exited between readdir and read
  }
}

export function sampleTree(rootPid: number): TreeSample {
  const stats = new Map<number, Stat>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat) stats.set(pid, stat);
  }
  const pids = [rootPid];
  for (let i = 0; i < pids.length; i++) {
    for (const [pid, stat] of stats) if (stat.ppid === pids[i]) pids.push(pid);
  }
  let user = 0;
  let system = 0;
  let pages = 0;
  for (const pid of pids) {
    const stat = stats.get(pid);
    if (!stat) continue;
    user += stat.userTicks;
    system += stat.systemTicks;
    pages += stat.rssPages;
  }
  return {
    cpuSeconds: (user + system) / TICKS_PER_SECOND,
    userSeconds: user / TICKS_PER_SECOND,
    systemSeconds: system / TICKS_PER_SECOND,
    rssBytes: pages * PAGE_SIZE,
    pids: pids.filter((p) => stats.has(p)),
  };
}
