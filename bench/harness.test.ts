// The benchmark harness must not rot: `npm run bench -- --quick` runs every scenario against every
// proxy (direct, NGINX, HAProxy, Switchyard and its metrics/Redis variants) briefly, and this test checks that each produced numbers
// and wrote its JSON, Markdown and SVG; the profiler and the CPU breakdown get the same check. No speed is asserted here; targets
// live in bench/README.md. It takes minutes, so it is not part of `npm test`: `npm run test:bench` runs it (and .ci/run does).
// The time limits only catch a hang: they are several times what each step takes on an idle machine, because on a
// shared one (or in CI beside other work) the same steps have taken twice as long.
import { strict as assert } from 'node:assert';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RunResult } from './report';

const ROOT = join(__dirname, '..');

test('npm run bench -- --quick measures every scenario on every proxy', { timeout: 540_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-bench-test-'));
  try {
    const { stdout } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile('npm', ['run', 'bench', '--', '--quick', '--out', out, '--no-readme'], { cwd: ROOT, timeout: 480_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve({ stdout, stderr }),
      );
    });
    const files = readdirSync(out);
    const json = files.find((f) => f.endsWith('-quick.json'));
    assert.ok(json, `no results JSON in ${files.join(', ')}`);
    const stem = join(out, json.slice(0, -'.json'.length));
    assert.ok(existsSync(`${stem}.md`) && existsSync(`${stem}.svg`), 'Markdown and SVG written next to the JSON');
    assert.match(readFileSync(`${stem}.svg`, 'utf8'), /^<svg[\s\S]*Switchyard[\s\S]*<\/svg>\n$/);
    assert.match(stdout, /\| chat: proxy CPU per message/);

    const run = JSON.parse(readFileSync(`${stem}.json`, 'utf8')) as RunResult;
    assert.deepEqual(Object.keys(run.scenarios).sort(), ['chat', 'churn', 'http', 'idle', 'throughput']);
    const key: Record<string, string> = {
      chat: 'messagesPerSecond',
      throughput: 'messagesPerSecond',
      idle: 'rssBytesPerConnection',
      churn: 'upgradesPerSecond',
      http: 'requestsPerSecond',
    };
    for (const [name, scenario] of Object.entries(run.scenarios)) {
      for (const proxy of ['nginx', 'haproxy', 'switchyard']) {
        const samples = scenario.samples[proxy];
        assert.ok(samples && samples.length === 1, `${name}: one sample for ${proxy}`);
        const value = samples[0][key[name] as 'messagesPerSecond'];
        assert.ok(typeof value === 'number' && Number.isFinite(value), `${name}/${proxy}: ${key[name]} measured (${JSON.stringify(samples[0])})`);
      }
      assert.equal(scenario.samples.switchyard[0].errors, 0, `${name}/switchyard: no connection errors (${JSON.stringify(scenario.samples.switchyard[0])})`);
      if (name === 'chat' || name === 'throughput') {
        const cpu = scenario.samples.switchyard[0].proxyCpuMicrosPerMessage;
        assert.ok(typeof cpu === 'number' && cpu > 0, `${name}: Switchyard CPU per message sampled from /proc`);
      }
    }
    // The anchors are Debian's NGINX and HAProxy, not this project's code: one stray connection error of theirs (NGINX has
    // had one in the quick HTTP run) says nothing about the harness. What the harness must do is count and report them.
    assert.match(stdout, errorsReported(run));
    assert.equal(run.targets?.length, 4);
    // The Switchyard variants ran in chat and churn, so every feature-cost check has numbers.
    assert.deepEqual(
      run.costs?.map((c) => c.detail === 'not measured'),
      [false, false, false, false],
      JSON.stringify(run.costs),
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('npm run bench -- --quick --tls: every proxy terminates TLS for the WebSocket and HTTP loads', { timeout: 390_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-bench-tls-test-'));
  try {
    await new Promise<void>((resolve, reject) => {
      execFile('npm', ['run', 'bench', '--', '--quick', '--tls', '--only', 'chat,churn,http', '--no-variants', '--out', out], { cwd: ROOT, timeout: 360_000, maxBuffer: 16 << 20 }, (err, _stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve(),
      );
    });
    const json = readdirSync(out).find((f) => f.endsWith('-quick-tls.json'));
    assert.ok(json, `no -quick-tls results in ${readdirSync(out).join(', ')}`);
    const run = JSON.parse(readFileSync(join(out, json), 'utf8')) as RunResult;
    assert.equal(run.label, 'tls');
    const key = { chat: 'messagesPerSecond', churn: 'upgradesPerSecond', http: 'requestsPerSecond' } as const;
    for (const [name, scenario] of Object.entries(run.scenarios)) {
      assert.equal(scenario.samples.direct, undefined, `${name}: no direct baseline (the backends speak no TLS)`);
      for (const proxy of ['nginx', 'haproxy', 'switchyard']) {
        const sample = scenario.samples[proxy]?.[0];
        const value = sample?.[key[name as keyof typeof key]];
        assert.ok(typeof value === 'number' && value > 0, `${name}/${proxy} measured over TLS (${JSON.stringify(sample)})`);
      }
      // As above: Switchyard has no errors; the anchors' are the anchors' own.
      assert.equal(scenario.samples.switchyard[0].errors, 0, `${name}/switchyard: no errors (${JSON.stringify(scenario.samples.switchyard[0])})`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('bench/cpu-breakdown.ts splits the machine CPU per request between proxy, backends and load generator', { timeout: 240_000 }, async () => {
  const { stdout } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/cpu-breakdown.ts', '--scenario', 'http', '--proxies', 'switchyard', '--rounds', '1', '--seconds', '2'], { cwd: ROOT, timeout: 220_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve({ stdout, stderr }),
    );
  });
  const row = stdout.split('\n').find((l) => l.startsWith('| 1 | switchyard |'));
  assert.ok(row, stdout);
  // ops/s, then µs per request: proxy user, proxy system, backends, load generator, all.
  const [, , , ...cells] = row.split('|').map((c) => c.trim());
  const [ops, user, system, backends, loadgen, all] = cells.map((c) => Number(c.replace(/,/g, '')));
  assert.ok(ops > 0, row);
  for (const v of [user, system, backends, loadgen]) assert.ok(v > 0 && Number.isFinite(v), row);
  assert.ok(Math.abs(all - (user + system + backends + loadgen)) < 0.5, row);
});

test('bench/floor-proxy.ts, the floor of the stack, relays the chat, churn and HTTP loads that cpu-breakdown puts on it', { timeout: 400_000 }, async () => {
  for (const scenario of ['chat', 'churn', 'http']) {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', 'bench/cpu-breakdown.ts', '--scenario', scenario, '--proxies', 'floor', '--rounds', '1', '--seconds', '1'], { cwd: ROOT, timeout: 120_000 }, (err, out, stderr) =>
        err ? reject(new Error(`${scenario}: ${err.message}\n${stderr.slice(-2000)}`)) : resolve(out),
      );
    });
    const row = stdout.split('\n').find((l) => l.startsWith('| 1 | floor |'));
    assert.ok(row, stdout);
    const [ops, user, system] = row.split('|').slice(3, 6).map((c) => Number(c.trim().replace(/,/g, '')));
    assert.ok(ops > 0 && user > 0 && system > 0, `${scenario}: ${row}`);
  }
});

test('a Ctrl-C on the runner reaches the load generator in its own process group', { timeout: 30_000 }, async () => {
  // runJson starts the generator in its own process group (so that a timeout kills it with its shell); this stands in
  // for it with a `sleep` whose argument marks it as ours.
  const mark = String(40_000 + (process.pid % 20_000));
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-signal-'));
  const script = join(dir, 'runner.ts');
  writeFileSync(script, `import { runJson } from ${JSON.stringify(join(ROOT, 'bench/proxies'))};\nvoid runJson('sleep', ['${mark}'], 60_000);\n`);
  const sleeping = (): boolean =>
    readdirSync('/proc').some((pid) => /^\d+$/.test(pid) && readFileOr(`/proc/${pid}/cmdline`) === `sleep\0${mark}\0`);
  const runner = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: 'ignore' });
  try {
    const until = Date.now() + 10_000;
    while (!sleeping() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.ok(sleeping(), 'the load generator started');
    const exited = new Promise<NodeJS.Signals | null>((resolve) => runner.once('exit', (_code, signal) => resolve(signal)));
    runner.kill('SIGINT');
    assert.equal(await exited, 'SIGINT', 'the runner dies of the signal, as it would without the handler');
    const gone = Date.now() + 5000;
    while (sleeping() && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!sleeping(), 'the load generator was killed with the runner');
  } finally {
    runner.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The line the report prints about errors: that there were none, or which runs had them. */
function errorsReported(run: RunResult): RegExp {
  const any = Object.values(run.scenarios).some((s) => Object.values(s.samples).some((samples) => samples.some((x) => x.errors > 0)));
  return any ? /Errors \(connect failures, unexpected closes\): / : /No connection errors in any run\./;
}

function readFileOr(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

/** Runs bench/profile.ts with `args`; resolves with its stdout. */
function profile(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/profile.ts', ...args], { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve(stdout),
    );
  });
}

test("bench/profile.ts: a worker's CPU profile under the chat load, with its flame graph", { timeout: 240_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-profile-test-'));
  try {
    const stdout = await profile(['--scenario', 'chat', '--seconds', '4', '--warmup', '1', '--out', out], 200_000);
    const share = (label: string): number => Number(new RegExp(`\\| ${label}[^|]* \\| ([\\d.]+)% \\|`).exec(stdout)?.[1] ?? NaN);
    // The worker's profile was the one analysed: its relay code and uWS's native side both show.
    assert.ok(share("Switchyard's JavaScript") > 0, stdout);
    assert.ok(share('native') > 0, stdout);
    // Some function of the relay (which one depends on what V8 inlined and what the sampler caught: on Node 24 under a
    // busy machine, fromClient itself was once missing) is in the folded stacks and the flame graph.
    const folded = readFileSync(join(out, 'profile-chat.folded'), 'utf8');
    const relay = /(\S+) dist\/src\/proxy\/[\w-]+\.js:\d+/.exec(folded);
    assert.ok(relay, `no frame of dist/src/proxy/ in the folded stacks:\n${folded.slice(0, 2000)}`);
    assert.match(readFileSync(join(out, 'profile-chat.svg'), 'utf8'), /^<svg[\s\S]*dist\/src\/proxy\/[\s\S]*<\/svg>\n$/);
    const cpuprofile = JSON.parse(readFileSync(join(out, 'profile-chat.cpuprofile'), 'utf8')) as { samples: number[] };
    assert.ok(cpuprofile.samples.length > 100, 'a .cpuprofile with samples');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('bench/profile.ts --tool callgrind counts user-space instructions per plain HTTP request', { timeout: 360_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-callgrind-test-'));
  try {
    // Under valgrind the worker needs its warm-up before it answers at speed: after 4 s, on a busy machine, the window
    // held a single request; after 10 s, thousands.
    const stdout = await profile(['--tool', 'callgrind', '--scenario', 'http', '--seconds', '3', '--warmup', '10', '--out', out], 330_000);
    const m = /http: ([\d,]+) user-space instructions per request \(\d+M instructions, ([\d,]+) calls to getpeername/.exec(stdout);
    assert.ok(m, stdout);
    const [perRequest, requests] = [m[1], m[2]].map((x) => Number(x.replace(/,/g, '')));
    assert.ok(requests > 10, stdout);
    // A request through the worker costs tens of thousands of instructions (37k in bench/README.md).
    assert.ok(perRequest > 5_000 && perRequest < 1_000_000, stdout);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
