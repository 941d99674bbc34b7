// One-command Switchyard demo (`npm run demo` after `npm run build`): starts two peered chat
// backends (examples/chat-backend.ts) and the balancer in front of them, prefixes their output,
// and stops everything on Ctrl-C. Env: PORT (balancer, default 8080), BACKEND_PORTS (default "9001,9002").
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

const HOST = '127.0.0.1';
const NAMES = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

function parsePort(value: string, what: string): number {
  const port = Number(value.trim());
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`invalid ${what}: "${value}"`);
  return port;
}

function fail(message: string): never {
  console.error(`demo: ${message}`);
  process.exit(1);
}

const balancerPort = parsePort(process.env.PORT ?? '8080', 'PORT');
const backendPorts = (process.env.BACKEND_PORTS ?? '9001,9002').split(',').map((p) => parsePort(p, 'BACKEND_PORTS entry'));
const backendScript = path.join(__dirname, 'chat-backend.js');
const cliScript = path.join(__dirname, '../cli.js'); // dist/examples/demo.js → dist/cli.js
for (const file of [backendScript, cliScript]) if (!existsSync(file)) fail(`${file} not found; run \`npm run build\` first`);

interface Child {
  label: string;
  proc: ChildProcess;
  exited: Promise<void>;
}
const children: Child[] = [];
let stopping = false;

/** Spawns `node script ...args`, prefixing each output line with [label]; onLine sees every stdout line. */
function start(label: string, script: string, args: string[], onLine?: (line: string) => void): Child {
  // detached: own process group, so a terminal Ctrl-C reaches only us and we stop children in order.
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const prefix = `[${label}]`.padEnd(12);
  createInterface({ input: proc.stdout }).on('line', (line) => {
    process.stdout.write(`${prefix} ${line}\n`);
    onLine?.(line);
  });
  createInterface({ input: proc.stderr }).on('line', (line) => process.stderr.write(`${prefix} ${line}\n`));
  const exited = new Promise<void>((resolve) => {
    proc.on('error', (err) => {
      if (proc.pid === undefined) resolve(); // never started, so no 'exit' will follow
      if (!stopping) unexpected(label, `failed to start: ${err.message}`);
    });
    proc.on('exit', (code, signal) => {
      resolve();
      if (!stopping) unexpected(label, `exited unexpectedly (${signal ? `signal ${signal}` : `code ${code}`})`);
    });
  });
  const child = { label, proc, exited };
  children.push(child);
  return child;
}

function unexpected(label: string, what: string): void {
  console.error(`\ndemo: ${label} ${what}; stopping the rest.`);
  void stop(1);
}

/** Signals the child's whole process group (e.g. the balancer's cluster workers too), falling back to the child. */
function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    proc.kill(signal);
  }
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const alive = children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null && c.proc.pid !== undefined);
  for (const c of alive) c.proc.kill('SIGTERM');
  const force = setTimeout(() => {
    for (const c of alive) {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
      console.error(`demo: ${c.label} did not stop within ${STOP_TIMEOUT_MS} ms, killing it`);
      killGroup(c.proc, 'SIGKILL');
    }
  }, STOP_TIMEOUT_MS);
  await Promise.all(alive.map((c) => c.exited));
  clearTimeout(force);
  process.exit(code);
}

async function main(): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      console.log(`\ndemo: ${signal} received, stopping…`);
      void stop(0);
    });
  }

  // Backends, each peered with all the others so chats cross backends.
  const names = backendPorts.map((_, i) => NAMES[i] ?? `backend${i + 1}`);
  const listening = backendPorts.map(
    (port, i) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${names[i]} did not start within ${STARTUP_TIMEOUT_MS} ms`)), STARTUP_TIMEOUT_MS);
        const peers = backendPorts.filter((_, j) => j !== i).flatMap((p) => ['--peer', `ws://${HOST}:${p}/peer`]);
        start(names[i], backendScript, ['--port', String(port), '--host', HOST, '--name', names[i], ...peers], (line) => {
          if (line.includes('listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
      }),
  );
  await Promise.all(listening);
  if (stopping) return;

  // The balancer, in front of all backends.
  let announced = false;
  const backendArgs = backendPorts.flatMap((p) => ['--backend', `ws://${HOST}:${p}`]);
  // --access-log: every page request and every tunnel's end shows in the console.
  start('switchyard', cliScript, ['start', '--port', String(balancerPort), ...backendArgs, '--workers', '2', '--access-log'], (line) => {
    if (!announced && line.includes('"msg":"switchyard ready"')) {
      announced = true;
      const admin = /"admin":"([^"]+)"/.exec(line)?.[1];
      const status = admin && admin !== 'disabled' ? ` Status page and metrics: http://${admin}/ and /metrics.` : '';
      console.log(`\nSwitchyard demo: open http://${HOST}:${balancerPort}/ in two browser tabs and chat.${status}\n`);
    }
  });
}

main().catch((err: unknown) => {
  console.error(`demo: ${err instanceof Error ? err.message : String(err)}`);
  if (!stopping) void stop(1); // stops whatever did start, then exits 1
});
