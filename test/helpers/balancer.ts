// Starts the real balancer (`node dist/cli.js start ...`, the build output) and watches its JSON logs.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { freePort } from './ports';
import { isAlive, killIfOurs, totalRss } from './proc';
import { TimeoutError, waitFor } from './wait';

export const REPO_ROOT = resolve(__dirname, '..', '..');
export const CLI = join(REPO_ROOT, 'dist', 'cli.js');
/** Part of every balancer command line; used to make sure a pid is ours before killing it. */
const MARKER = 'dist/cli.js';

/** clientLimits for a test whose load comes from one address (loopback): none of the per-client limits. */
export const NO_CLIENT_LIMITS = { maxTunnels: 0, upgradesPerSecond: 0 } as const;

export type LogLine = Record<string, unknown> & { msg?: string };

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartOptions {
  /** Extra CLI flags after `start`, e.g. ['--backend', url, '--algorithm', 'round-robin']. */
  args?: string[];
  /** Config object, written as YAML to a temporary file and passed with --config. */
  config?: Record<string, unknown>;
  workers?: number;
  port?: number;
  /** How long to wait for the "switchyard ready" line. */
  readyTimeoutMs?: number;
  /** A command the balancer runs under, which execs it (e.g. ['prlimit', '--nofile=80:80']): the pid stays the primary's. */
  wrapper?: string[];
  /** Another build's dist/cli.js (bench/limits.ts measures two builds side by side); default: this checkout's. */
  cli?: string;
  /**
   * The admin token, given to the balancer as SWITCHYARD_ADMIN_TOKEN (a token in `config` wins, as
   * in the product); default a fresh random one; false: none (admin writes are refused).
   */
  adminToken?: string | false;
  /** More environment for the balancer. */
  env?: Record<string, string>;
}

export interface Balancer {
  port: number;
  /** The admin listener's port (from the ready line); undefined when disabled. */
  adminPort: number | undefined;
  /** http://127.0.0.1:adminPort + path. */
  adminUrl(path?: string): string;
  /** The admin token writes need (undefined when the balancer has none). */
  adminToken: string | undefined;
  /** `Authorization: Bearer <token>` for fetch/undici. */
  adminHeaders(): Record<string, string>;
  /** `--admin 127.0.0.1:PORT --token-file FILE` for `switchyard admin`, `reload` and `status`. */
  adminArgs(): string[];
  proc: ChildProcess;
  /** The primary's pid. */
  pid: number;
  /** Worker pids from the ready line, plus any announced later by "worker started". */
  pids: number[];
  /** Worker pids as of the ready line. */
  initialPids: number[];
  logs: LogLine[];
  stdout(): string;
  stderr(): string;
  url(path?: string): string;
  httpUrl(path?: string): string;
  /** The config file written from `options.config`, if any. */
  configFile: string | undefined;
  /** Writes `config` over that file (for a reload). */
  rewriteConfig(config: Record<string, unknown>): void;
  /** Resolves with the first log line (already seen or future) matching `predicate`. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs: number, what?: string): Promise<LogLine>;
  /** Resolves when the primary has exited. */
  exited: Promise<ExitInfo>;
  exitInfo(): ExitInfo | undefined;
  /** Sum of VmRSS over the primary and the live workers. */
  rss(): number;
  /** Signals the primary, waits up to `timeoutMs` for it to exit, then kills whatever of ours is left. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>;
}

const running = new Set<Balancer>();

function killAll(b: Balancer): void {
  killIfOurs(b.pid, MARKER, 'SIGKILL');
  for (const pid of b.pids) killIfOurs(pid, MARKER, 'SIGKILL');
}

// Last resort: never leave balancer processes behind when the test process ends.
process.on('exit', () => {
  for (const b of running) killAll(b);
});

/** A pid field of a log line that is not the primary's own pid (pino's base binding). */
export function workerPidOf(line: LogLine, primaryPid: number): number | undefined {
  for (const key of ['workerPid']) {
    const v = line[key];
    if (typeof v === 'number' && v !== primaryPid) return v;
    if (v && typeof v === 'object' && typeof (v as { pid?: unknown }).pid === 'number') return (v as { pid: number }).pid;
  }
  return undefined;
}

export function writeConfig(config: Record<string, unknown>, name = 'switchyard.yaml'): { file: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  const file = join(dir, name);
  writeFileSync(file, name.endsWith('.json') ? JSON.stringify(config, null, 2) : toYaml(config));
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // the test runner's marker; the balancer is not a test file
  delete env.NODE_OPTIONS;
  delete env.SWITCHYARD_ADMIN_TOKEN; // each test says which token its balancer and CLI have
  return env;
}

export interface CliResult extends ExitInfo {
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli.js ...args` to completion (killed after `timeoutMs`), with `env` added to the environment. */
export async function runCli(args: string[], timeoutMs = 15_000, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  assertBuilt();
  const proc = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: { ...childEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    if (proc.pid !== undefined) killIfOurs(proc.pid, MARKER, 'SIGKILL');
  }, timeoutMs);
  try {
    const info = await new Promise<ExitInfo>((resolve, reject) => {
      proc.once('error', reject);
      proc.once('close', (code, signal) => resolve({ code, signal }));
    });
    return { ...info, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} does not exist; run \`npm run build\` first`);
}

export async function startBalancer(options: StartOptions = {}): Promise<Balancer> {
  const cli = options.cli ?? CLI;
  if (!existsSync(cli)) throw new Error(`${cli} does not exist; run \`npm run build\` first`);
  const port = options.port ?? (await freePort());
  const workers = options.workers ?? 2;
  let cleanupConfig = (): void => {};
  let configFile: string | undefined;
  const args = ['start', '--host', '127.0.0.1', '--port', String(port), '--workers', String(workers)];
  if (options.config) {
    const written = writeConfig(options.config);
    cleanupConfig = written.cleanup;
    configFile = written.file;
    args.push('--config', written.file);
  }
  const adminToken = adminTokenOf(options);
  // The token as `switchyard admin --token-file` reads it (the CLI tests pass it so).
  const tokenDir = mkdtempSync(join(tmpdir(), 'switchyard-token-'));
  const tokenFile = join(tokenDir, 'admin-token');
  if (adminToken !== undefined) writeFileSync(tokenFile, `${adminToken}\n`, { mode: 0o600 });
  const cleanupFiles = (): void => {
    cleanupConfig();
    rmSync(tokenDir, { recursive: true, force: true });
  };
  const env: Record<string, string> = { ...options.env };
  if (options.adminToken !== false && adminToken !== undefined) env.SWITCHYARD_ADMIN_TOKEN = adminToken;
  args.push(...(options.args ?? []));
  // Many balancers may run at once: unless the test chooses, the admin listener takes a free port.
  if (options.config?.admin === undefined && !args.some((a) => a.startsWith('--admin') || a === '--no-admin')) args.push('--admin-port', '0');

  const [command, ...prefix] = [...(options.wrapper ?? []), process.execPath];
  const proc = spawn(command, [...prefix, cli, ...args], { cwd: REPO_ROOT, env: { ...childEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new Error('could not spawn the balancer');
  const primaryPid = proc.pid;

  let stdoutText = '';
  let stderrText = '';
  let partial = '';
  const logs: LogLine[] = [];
  const listeners = new Set<(line: LogLine) => void>();
  const exitListeners = new Set<() => void>();
  const pids: number[] = [];
  const initialPids: number[] = [];
  let exitInfo: ExitInfo | undefined;

  const onLine = (text: string): void => {
    if (text.trim() === '') return;
    let line: LogLine;
    try {
      const parsed: unknown = JSON.parse(text);
      if (!parsed || typeof parsed !== 'object') return;
      line = parsed as LogLine;
    } catch {
      return; // not a JSON log line
    }
    logs.push(line);
    if (line.msg === 'worker started') {
      const pid = workerPidOf(line, primaryPid);
      if (pid !== undefined && !pids.includes(pid)) pids.push(pid);
    }
    // A reload's new workers.
    if (line.msg === 'reloaded' && Array.isArray(line.pids)) {
      for (const pid of line.pids) if (typeof pid === 'number' && !pids.includes(pid)) pids.push(pid);
    }
    for (const l of [...listeners]) l(line);
  };
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdoutText += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) onLine(l);
  });
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderrText += chunk));

  const exited = new Promise<ExitInfo>((resolve) => {
    // 'close' (not 'exit'): stdout is fully read by then, so no log line is missed.
    proc.once('close', (code, signal) => {
      exitInfo = { code, signal };
      cleanupFiles();
      resolve(exitInfo);
      for (const l of [...exitListeners]) l();
    });
  });

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs: number, what = 'log line'): Promise<LogLine> => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        listeners.delete(listener);
        exitListeners.delete(onExit);
      };
      const listener = (line: LogLine): void => {
        if (!predicate(line)) return;
        finish();
        resolve(line);
      };
      // No more lines will come once the primary is gone.
      const onExit = (): void => {
        finish();
        reject(new Error(`balancer exited (${JSON.stringify(exitInfo)}) before ${what}; stderr: ${stderrText.slice(-2000)}`));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new TimeoutError(`${what}; stderr: ${stderrText.slice(-2000)}`, timeoutMs));
      }, timeoutMs);
      listeners.add(listener);
      if (exitInfo !== undefined) onExit();
      else exitListeners.add(onExit);
    });
  };

  let stopping: Promise<ExitInfo> | undefined;
  const balancer: Balancer = {
    port,
    adminPort: undefined,
    adminUrl: (path = '/') => {
      if (balancer.adminPort === undefined) throw new Error('this balancer has no admin listener');
      return `http://127.0.0.1:${balancer.adminPort}${path}`;
    },
    adminToken,
    adminHeaders: (): Record<string, string> => (adminToken === undefined ? {} : { authorization: `Bearer ${adminToken}` }),
    adminArgs: () => ['--admin', `127.0.0.1:${balancer.adminPort}`, ...(adminToken === undefined ? [] : ['--token-file', tokenFile])],
    proc,
    pid: primaryPid,
    pids,
    initialPids,
    logs,
    configFile,
    rewriteConfig: (config) => {
      if (configFile === undefined) throw new Error('this balancer was started without a config file');
      writeFileSync(configFile, toYaml(config));
    },
    stdout: () => stdoutText,
    stderr: () => stderrText,
    url: (path = '/') => `ws://127.0.0.1:${port}${path}`,
    httpUrl: (path = '/') => `http://127.0.0.1:${port}${path}`,
    waitForLog,
    exited,
    exitInfo: () => exitInfo,
    rss: () => totalRss([primaryPid, ...pids.filter(isAlive)]),
    stop: (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) => {
      stopping ??= (async () => {
        if (exitInfo === undefined) killIfOurs(primaryPid, MARKER, signal);
        let timer: NodeJS.Timeout | undefined;
        const info = await Promise.race([
          exited,
          new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs))),
        ]);
        clearTimeout(timer);
        killAll(balancer); // whatever is left (a hung primary, orphaned workers)
        await exited;
        try {
          await waitFor(() => pids.every((p) => !isAlive(p)), 3000, 'workers to exit');
        } catch {
          for (const p of pids) killIfOurs(p, MARKER, 'SIGKILL');
        }
        running.delete(balancer);
        return info ?? { code: null, signal: 'SIGKILL' as NodeJS.Signals };
      })();
      return stopping;
    },
  };
  running.add(balancer);

  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  try {
    const ready = await Promise.race([
      waitForLog((l) => l.msg === 'switchyard ready', readyTimeoutMs, '"switchyard ready"'),
      exited.then((info): never => {
        throw new Error(
          `balancer exited before ready (code ${info.code}, signal ${info.signal}); stderr: ${stderrText.trim()}; stdout: ${stdoutText.slice(-2000)}`,
        );
      }),
    ]);
    const readyPids = Array.isArray(ready.pids) ? ready.pids.filter((p): p is number => typeof p === 'number') : [];
    for (const p of readyPids) {
      initialPids.push(p);
      if (!pids.includes(p)) pids.push(p);
    }
    if (typeof ready.adminPort === 'number') balancer.adminPort = ready.adminPort;
    if (typeof ready.port === 'number' && ready.port !== port) throw new Error(`ready line names port ${ready.port}, expected ${port}`);
  } catch (err) {
    await balancer.stop('SIGKILL', 2000);
    throw err;
  }
  return balancer;
}

/** The token the balancer will use: the config's own when it names one, else options.adminToken, else a random one. */
function adminTokenOf(options: StartOptions): string | undefined {
  const admin = options.config?.admin as { token?: unknown; tokenFile?: unknown } | undefined;
  if (typeof admin?.token === 'string') return admin.token;
  if (typeof admin?.tokenFile === 'string') return readFileSync(admin.tokenFile, 'utf8').trim();
  if (options.adminToken === false) return undefined;
  return options.adminToken ?? randomBytes(24).toString('hex');
}

/** Stops every balancer given (ignoring undefined), in parallel. */
export async function stopAll(...balancers: (Balancer | undefined)[]): Promise<void> {
  await Promise.all(balancers.map((b) => (b ? b.stop('SIGTERM', 8000) : Promise.resolve())));
}
