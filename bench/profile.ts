// Where a Switchyard worker's time goes in one scenario: the tool behind bench/README.md's
// "Profiling notes", so that every figure there comes from a command.
//
//   --tool cpu-prof (default)  V8's sampling profiler (node --cpu-prof) on a worker of the balancer
//     while the scenario's load runs. Prints the functions with the most self time and how the
//     worker's time splits between this project's code, Node's and dependencies' JavaScript, native
//     code (uWS, libuv, Node's C++: "(program)" to V8) and the garbage collector; writes the
//     .cpuprofile (Chrome DevTools or speedscope open it), its folded stacks and a flame graph SVG.
//   --tool callgrind  The worker alone under valgrind's callgrind; user-space instructions counted
//     over a window in steady state and divided by the operations in it. Repeatable to about 1%
//     whatever else the machine does, so it ranks two builds where timing cannot.
//   --tool strace  The worker alone, `strace -c` attached for a window in steady state: its
//     syscalls per operation, by name (what the kernel is asked to do, which user-space counts miss).
//
// Usage: node --import tsx bench/profile.ts --scenario chat|churn|http|throughput [--tool callgrind|strace]
//          [--seconds 10] [--out DIR]
// On the other runtime, everything in the root filesystem (valgrind and strace installed there):
//   scripts/run-leg trixie -- node --import tsx bench/profile.ts --tool strace --scenario churn
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { freePort, hardNofile, runJson, startBackends, startProxy, stopChild, waitForUpgrade } from './proxies';
import { scenarios } from './scenarios';

const opts = new Command()
  .option('--scenario <name>', 'chat, churn, http or throughput (callgrind: chat, churn or http)', 'chat')
  .option('--tool <name>', 'cpu-prof, callgrind or strace', 'cpu-prof')
  .option('--seconds <n>', 'seconds of load (callgrind: the counted window)', Number, 10)
  .option('--warmup <n>', 'seconds of load before those (default 2; callgrind: what the scenario needs under valgrind, 4-20). cpu-prof profiles the worker from its start: startup shows as a few percent', Number)
  .option('--out <dir>', 'where the profile files go (default: a new directory under the system tmpdir)')
  .option('--proxy <name>', 'callgrind, strace: switchyard (a worker) or floor (bench/floor-proxy.ts, the least this stack can do)', 'switchyard')
  .parse()
  .opts<{ scenario: string; tool: string; seconds: number; warmup?: number; out?: string; proxy: string }>();

const ROOT = join(__dirname, '..');
const TSX = ['--import', 'tsx'];

/**
 * The load for a scenario, `seconds` long. Under callgrind a worker runs some 50 times slower, so
 * the load there is lighter (and the count is per operation, so its size does not matter).
 */
function loadArgs(target: string, seconds: number, light: boolean): string[] {
  if (opts.scenario === 'http') {
    return [join(ROOT, 'node_modules/autocannon/autocannon.js'), '-c', light ? '20' : '100', '-d', String(seconds), '--json', `http://${target}/`];
  }
  const scenario = scenarios({ quick: false, idleConnections: 0 }).find((s) => s.name === opts.scenario && s.name !== 'idle');
  if (!scenario) throw new Error(`--scenario: chat, churn, http or throughput, not ${opts.scenario}`);
  const shape: string[] = [];
  for (let i = 0; i < scenario.args.length; i += 2) {
    const [flag, value] = [scenario.args[i], scenario.args[i + 1]];
    if (flag === '--warmup' || flag === '--duration') continue;
    if (light && flag === '--connections') shape.push(flag, '200');
    else if (light && flag === '--concurrency') shape.push(flag, '20');
    else shape.push(flag, value);
  }
  return [...TSX, join(__dirname, 'ws-load.ts'), '--target', target, ...shape, '--warmup', '0', '--duration', String(seconds)];
}

const sleep = (seconds: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

// ---- cpu-prof ----

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

type Kind = 'switchyard' | 'node' | 'dependency' | 'native' | 'gc';

function kindOf(frame: ProfileNode['callFrame']): Kind {
  if (frame.functionName === '(garbage collector)') return 'gc';
  if (frame.url === '') return 'native';
  if (frame.url.startsWith('node:')) return 'node';
  if (frame.url.includes('/node_modules/')) return 'dependency';
  return 'switchyard';
}

function frameName(frame: ProfileNode['callFrame']): string {
  const fn = frame.functionName || '(anonymous)';
  if (frame.url === '') return fn;
  const path = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url;
  const where = path.startsWith('/') ? relative(ROOT, path) : path;
  return `${fn} ${where}:${frame.lineNumber + 1}`;
}

/** Self microseconds per node id; `(idle)` (the worker waiting in epoll) is left out. */
function selfTimes(profile: CpuProfile): Map<number, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    if (byId.get(id)?.callFrame.functionName === '(idle)') return;
    self.set(id, (self.get(id) ?? 0) + profile.timeDeltas[i]);
  });
  return self;
}

function analyse(profile: CpuProfile, stem: string): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = selfTimes(profile);
  const busy = [...self.values()].reduce((a, b) => a + b, 0);
  const pct = (us: number): string => `${((us / busy) * 100).toFixed(1)}%`;

  const kinds = new Map<Kind, number>();
  const functions = new Map<string, { us: number; kind: Kind }>();
  for (const [id, us] of self) {
    const frame = byId.get(id)!.callFrame;
    const kind = kindOf(frame);
    kinds.set(kind, (kinds.get(kind) ?? 0) + us);
    const f = functions.get(frameName(frame)) ?? { us: 0, kind };
    f.us += us;
    functions.set(frameName(frame), f);
  }
  const out: string[] = [
    `busy ${(busy / 1e6).toFixed(2)} s of the worker's CPU, as V8's sampler sees it: a native call without a frame of its own`,
    "(uWS's send, and the syscall under it) is charged to the JavaScript function that made it, and native work outside",
    "JavaScript in the event loop (uWS's and libuv's reads) counts as idle, left out here. For user space alone,",
    'instruction by instruction: --tool callgrind.',
    '',
    '| where | share |',
    '|---|---:|',
  ];
  const labels: Record<Kind, string> = {
    switchyard: "Switchyard's JavaScript",
    node: "Node's JavaScript (node:*)",
    dependency: "dependencies' JavaScript",
    native: `native frames: Node's C++ methods (writeBuffer: the backend write), V8 builtins, "(program)"`,
    gc: 'garbage collector',
  };
  for (const kind of Object.keys(labels) as Kind[]) out.push(`| ${labels[kind]} | ${pct(kinds.get(kind) ?? 0)} |`);
  out.push('', '| self time | function |', '|---:|---|');
  for (const [name, f] of [...functions].sort((a, b) => b[1].us - a[1].us).slice(0, 25)) out.push(`| ${pct(f.us)} | ${name} |`);
  process.stdout.write(`${out.join('\n')}\n`);

  // Folded stacks (flamegraph.pl, speedscope) and the flame graph drawn from the same tree.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stackOf = (id: number): string[] => {
    const names: string[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (frame.functionName !== '(root)') names.unshift(frameName(frame).replace(/;/g, ','));
    }
    return names;
  };
  const folded = [...self].filter(([, us]) => us > 0).map(([id, us]) => `${stackOf(id).join(';')} ${us}`);
  writeFileSync(`${stem}.folded`, `${folded.join('\n')}\n`);
  writeFileSync(`${stem}.svg`, flameGraph(folded, `${opts.scenario}: a Switchyard worker, ${(busy / 1e6).toFixed(2)} s busy`));
}

interface Frame {
  name: string;
  us: number;
  children: Map<string, Frame>;
}

const COLOURS: Record<Kind, string> = { switchyard: '#e8833a', node: '#6aa84f', dependency: '#3d85c6', native: '#999999', gc: '#cc4125' };

/** An SVG flame graph: root at the bottom, each frame as wide as its share of the busy time. */
function flameGraph(folded: string[], title: string): string {
  const root: Frame = { name: 'all', us: 0, children: new Map() };
  for (const line of folded) {
    const cut = line.lastIndexOf(' ');
    const us = Number(line.slice(cut + 1));
    root.us += us;
    let at = root;
    for (const name of line.slice(0, cut).split(';')) {
      let next = at.children.get(name);
      if (!next) at.children.set(name, (next = { name, us: 0, children: new Map() }));
      next.us += us;
      at = next;
    }
  }
  const width = 1200;
  const row = 16;
  const depthOf = (f: Frame): number => 1 + Math.max(0, ...[...f.children.values()].map(depthOf));
  const height = (depthOf(root) + 2) * row;
  const rects: string[] = [];
  const draw = (f: Frame, x: number, depth: number): void => {
    const w = (f.us / root.us) * width;
    if (w < 0.3) return;
    const y = height - (depth + 1) * row;
    const kind = f === root ? 'native' : kindOf(frameOf(f.name));
    const label = w > 40 ? escapeXml(f.name.slice(0, Math.floor(w / 6.5))) : '';
    rects.push(
      `<g><title>${escapeXml(f.name)}: ${((f.us / root.us) * 100).toFixed(2)}%</title><rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${row - 1}" fill="${COLOURS[kind]}"/>` +
        (label ? `<text x="${(x + 3).toFixed(1)}" y="${y + row - 4}">${label}</text>` : '') +
        '</g>',
    );
    let cx = x;
    for (const child of [...f.children.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      draw(child, cx, depth + 1);
      cx += (child.us / root.us) * width;
    }
  };
  draw(root, 0, 0);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="11">\n` +
    `<text x="4" y="13" font-size="13">${escapeXml(title)}</text>\n${rects.join('\n')}\n</svg>\n`
  );
}

/** The call frame a folded name came from, enough to tell its kind. */
function frameOf(name: string): ProfileNode['callFrame'] {
  const m = / (\S+):\d+$/.exec(name);
  const url = m ? (m[1].startsWith('node:') ? m[1] : `/${m[1]}`) : '';
  return { functionName: m ? name.slice(0, m.index) : name, url, lineNumber: 0 };
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

async function cpuProf(dir: string): Promise<void> {
  const profiles = join(dir, 'cpuprofiles');
  mkdirSync(profiles, { recursive: true });
  const backends = await startBackends(dir);
  try {
    const port = await freePort();
    // One worker, as in the chat, churn and http scenarios; every process writes its profile as it exits.
    const proxy = await startProxy('switchyard', port, {
      workers: 1,
      backendPorts: backends.ports,
      nofile: hardNofile(),
      dir,
      switchyardNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profiles}`],
    });
    try {
      await runJson(process.execPath, loadArgs(proxy.target, (opts.warmup ?? 2) + opts.seconds, false), (opts.seconds + 120) * 1000);
    } finally {
      await proxy.stop(); // SIGTERM: the worker drains and exits, which writes its profile
    }
  } finally {
    await backends.stop();
  }
  // The worker's profile is the busiest one (the primary only supervises).
  const candidates = readdirSync(profiles).filter((f) => f.endsWith('.cpuprofile'));
  const busiest = candidates
    .map((f) => {
      const profile = JSON.parse(readFileSync(join(profiles, f), 'utf8')) as CpuProfile;
      return { f, profile, busy: [...selfTimes(profile).values()].reduce((a, b) => a + b, 0) };
    })
    .sort((a, b) => b.busy - a.busy)[0];
  if (!busiest) throw new Error(`no .cpuprofile written in ${profiles}: did the worker exit cleanly?`);
  const stem = join(dir, `profile-${opts.scenario}`);
  copyFileSync(join(profiles, busiest.f), `${stem}.cpuprofile`);
  analyse(busiest.profile, stem);
  process.stdout.write(`\nwrote ${stem}.cpuprofile, .folded and .svg (flame graph)\n`);
}

// ---- callgrind ----

/** A function called once per operation of the scenario, whose calls in the dump count the operations. */
const MARKERS: Record<string, { fn: string; op: string; warmup: number }> = {
  // One message in flight per connection: uWS writes each echo to its client with one send().
  chat: { fn: 'send', op: 'echo', warmup: 4 },
  // One backend connection per upgrade.
  churn: { fn: 'uv_tcp_connect', op: 'upgrade cycle', warmup: 20 },
  // uWS asks the kernel for the client's address once per request.
  http: { fn: 'getpeername', op: 'request', warmup: 6 },
};

/** Total instructions and the calls made to each function, from a callgrind dump. */
function readCallgrind(text: string): { total: number; calls: Map<string, number> } {
  const names = new Map<string, string>();
  const calls = new Map<string, number>();
  let callee: string | undefined;
  let total = 0;
  for (const line of text.split('\n')) {
    const named = /^(c?fn)=\((\d+)\)(?: (.*))?$/.exec(line);
    if (named) {
      if (named[3] !== undefined) names.set(named[2], named[3]);
      if (named[1] === 'cfn') callee = names.get(named[2]);
      continue;
    }
    const counted = /^calls=(\d+)/.exec(line);
    if (counted && callee !== undefined) calls.set(callee, (calls.get(callee) ?? 0) + Number(counted[1]));
    if (line.startsWith('totals:')) total = Number(line.split(/\s+/)[1]);
  }
  return { total, calls };
}

function requireTools(tools: string, pkg: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${tools}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${pkg} is not installed: apt-get install -y ${pkg}`);
  }
}

/**
 * A Switchyard worker alone (no primary; the flags the primary gives its workers), or the floor, in
 * front of `backendPorts` on `port`, run under `wrapper` (valgrind's command line, or none).
 */
function startWorkerAlone(port: number, backendPorts: number[], wrapper: string[]): ChildProcess {
  const config = {
    listen: { host: '127.0.0.1', port },
    workers: 1,
    logLevel: 'warn',
    admin: { enabled: false },
    pools: { chat: { backends: backendPorts.map((p) => ({ url: `ws://127.0.0.1:${p}` })) } },
    routes: [{ path: '/', pool: 'chat' }],
  };
  if (opts.proxy !== 'switchyard' && opts.proxy !== 'floor') throw new Error(`--proxy: switchyard or floor, not ${opts.proxy}`);
  const program = opts.proxy === 'floor' ? [...TSX, join(__dirname, 'floor-proxy.ts'), String(port), ...backendPorts.map(String)] : [join(ROOT, 'dist/workers/edge-worker.js')];
  const [command, ...args] = [...wrapper, process.execPath, '--max-semi-space-size=4', ...program];
  const worker = spawn(command, args, {
    cwd: ROOT, // where --import finds tsx
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  // The config goes over IPC, as the primary sends it (src/ipc.ts); the floor proxy never asks.
  worker.on('message', (m: { type?: string }) => {
    if (m.type === 'config-request') worker.send({ type: 'config', json: JSON.stringify(config) });
  });
  return worker;
}

async function callgrind(dir: string): Promise<void> {
  const marker = MARKERS[opts.scenario];
  if (!marker) throw new Error(`--tool callgrind: --scenario chat, churn or http, not ${opts.scenario}`);
  requireTools('valgrind callgrind_control', 'valgrind');
  const warmup = opts.warmup ?? marker.warmup;
  const backends = await startBackends(dir);
  const port = await freePort();
  const dump = join(dir, `callgrind-${opts.scenario}.out`);
  // Counting starts off.
  const worker = startWorkerAlone(port, backends.ports, ['valgrind', '--tool=callgrind', `--callgrind-out-file=${dump}`, '--instr-atstart=no']);
  const control = (...args: string[]): void => void execFileSync('callgrind_control', [...args, String(worker.pid)], { stdio: 'ignore' });
  try {
    await waitForUpgrade(port, worker, 180_000);
    const load = runJson(process.execPath, loadArgs(`127.0.0.1:${port}`, warmup + opts.seconds + 3, true), (warmup + opts.seconds + 120) * 1000);
    await sleep(warmup);
    control('-i', 'on');
    await sleep(opts.seconds);
    control('-i', 'off');
    control('-d');
    await load;
  } finally {
    worker.kill('SIGKILL');
    await stopChild(worker);
    await backends.stop();
  }
  // The dump of `-d` is the newest file next to the given name (callgrind numbers them .1, .2, ...).
  const file = readdirSync(dir)
    .filter((f) => f.startsWith(`callgrind-${opts.scenario}.out`))
    .map((f) => join(dir, f))
    .sort()
    .pop()!;
  const { total, calls } = readCallgrind(readFileSync(file, 'utf8'));
  const ops = calls.get(marker.fn) ?? 0;
  if (ops === 0) throw new Error(`no calls to ${marker.fn} in ${file}: did the load reach the worker?`);
  process.stdout.write(
    `${opts.scenario}: ${Math.round(total / ops).toLocaleString('en')} user-space instructions per ${marker.op} ` +
      `(${(total / 1e6).toFixed(0)}M instructions, ${ops.toLocaleString('en')} calls to ${marker.fn} in ${opts.seconds} s)\n` +
      `dump: ${file} (callgrind_annotate --inclusive=yes ${file})\n`,
  );
}

// ---- strace ----

/**
 * Syscalls made once per operation, whose calls in the count are the operations: in chat and http
 * the write of each message or request to the backend (libuv: write, or writev), in churn the
 * backend's connect.
 */
const SYSCALL_MARKERS: Record<string, { calls: string[]; op: string }> = {
  chat: { calls: ['write', 'writev'], op: 'echo' },
  http: { calls: ['write', 'writev'], op: 'request' },
  churn: { calls: ['connect'], op: 'upgrade cycle' },
};

async function strace(dir: string): Promise<void> {
  const marker = SYSCALL_MARKERS[opts.scenario];
  if (!marker) throw new Error(`--tool strace: --scenario chat, churn or http, not ${opts.scenario}`);
  requireTools('strace', 'strace');
  const warmup = opts.warmup ?? 3;
  const backends = await startBackends(dir);
  const port = await freePort();
  const worker = startWorkerAlone(port, backends.ports, []);
  const file = join(dir, `strace-${opts.scenario}.txt`);
  try {
    await waitForUpgrade(port, worker, 30_000);
    // The load is the scenario's own (not callgrind's lighter one); strace slows the worker, so only
    // counts are compared, never time.
    const load = runJson(process.execPath, loadArgs(`127.0.0.1:${port}`, warmup + opts.seconds + 2, false), (warmup + opts.seconds + 120) * 1000);
    await sleep(warmup);
    const tracer = spawn('strace', ['-c', '-f', '-o', file, '-p', String(worker.pid)], { stdio: 'ignore' });
    await sleep(opts.seconds);
    const done = new Promise((resolve) => tracer.once('exit', resolve));
    tracer.kill('SIGINT'); // strace detaches and writes its summary
    await done;
    await load;
  } finally {
    await stopChild(worker);
    await backends.stop();
  }
  // `% time  seconds  usecs/call  calls  [errors]  syscall` rows.
  const calls = new Map<string, number>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const row = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)$/.exec(line);
    if (row && row[2] !== 'total') calls.set(row[2], Number(row[1]));
  }
  const ops = marker.calls.reduce((sum, name) => sum + (calls.get(name) ?? 0), 0);
  if (ops === 0) throw new Error(`no ${marker.calls.join(' or ')} calls in ${file}: did the load reach the worker?`);
  // futex is the worker's threads waking each other (V8's platform workers), not the operation's work.
  const all = [...calls].filter(([name]) => name !== 'futex').reduce((sum, [, n]) => sum + n, 0);
  const per = (n: number): string => (Math.round((n / ops) * 100) / 100).toString();
  const out = [
    `${opts.scenario}: ${per(all)} syscalls per ${marker.op} besides futex (${ops.toLocaleString('en')} ${marker.op}s: the calls to ${marker.calls.join(' + ')} in ${opts.seconds} s)`,
    '',
    `| syscall | per ${marker.op} |`,
    '|---|---:|',
    ...[...calls].sort((a, b) => b[1] - a[1]).map(([name, n]) => `| ${name} | ${per(n)} |`),
    '',
    `strace -c: ${file}`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<void> {
  const dir = opts.out ?? mkdtempSync(join(tmpdir(), 'switchyard-profile-'));
  mkdirSync(dir, { recursive: true });
  if (opts.tool === 'cpu-prof') await cpuProf(dir);
  else if (opts.tool === 'callgrind') await callgrind(dir);
  else if (opts.tool === 'strace') await strace(dir);
  else throw new Error(`--tool: cpu-prof, callgrind or strace, not ${opts.tool}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`profile: ${(err as Error).message}\n`);
  process.exit(1);
});
