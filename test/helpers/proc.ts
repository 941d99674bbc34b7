// Looking at processes through /proc (Linux): alive or not, resident memory, and killing by pid
// only when the pid still belongs to a balancer process we started.
import { readdirSync, readFileSync } from 'node:fs';

export function isAlive(pid: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return !/^State:\s+Z/m.test(status); // a zombie has exited already
  } catch {
    return false;
  }
}

/** VmRSS of one process in bytes (0 when it is gone). */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function totalRss(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Sends `signal` to `pid` if it is alive and its command line contains `marker`. */
export function killIfOurs(pid: number, marker: string, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  if (!isAlive(pid) || !cmdline(pid).includes(marker)) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** CPU time (user + system) of one process in seconds, from /proc/PID/stat (0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100 on Linux)
  } catch {
    return 0;
  }
}

/** Share of one core `pid` used over the next `ms` (0.25 = a quarter of a core). */
export async function cpuShare(pid: number, ms: number): Promise<number> {
  const start = cpuSeconds(pid);
  const startedAt = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (cpuSeconds(pid) - start) / ((performance.now() - startedAt) / 1000);
}

/** Descriptors `pid` holds (0 when it is gone). */
export function openDescriptors(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}
