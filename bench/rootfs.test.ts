// The benchmark's second runtime must not rot: `npm run bench` with `switchyard-trixie` runs
// Switchyard on Node 24 with the current uWebSockets.js build in the Debian 13 root filesystem of
// scripts/run-leg, next to this machine's Switchyard and NGINX in the same rounds; each scenario gets
// numbers, with the chroot's process tree measured from /proc. And the root filesystem is one run's
// at a time: a second run-leg on a held root is refused instead of killing what runs inside.
// Needs root and the root filesystem (made on first use; CI's leg 2 leaves one in
// /var/tmp/switchyard-trixie, SWITCHYARD_ROOTFS names another). `npm run test:bench:rootfs`.
import { strict as assert } from 'node:assert';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RunResult } from './report';
import { holdRootfs, ROOTFS_LEG } from './rootfs';

const ROOT = join(__dirname, '..');

function run(command: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Mount points under `root`. */
function mountsUnder(root: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((m) => m === root || m?.startsWith(`${root}/`));
}

/** Pids of the processes whose root directory is `root`. */
function processesInside(root: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readlinkSync(`/proc/${p}/root`) === root;
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('npm run bench -- --quick with switchyard-trixie measures Switchyard on both runtimes in one run', { timeout: 20 * 60_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-bench-rootfs-test-'));
  try {
    const { code, stdout, stderr } = await run('npm', ['run', 'bench', '--', '--quick', '--proxies', 'nginx,switchyard,switchyard-trixie', '--no-variants', '--out', out, '--no-readme'], 18 * 60_000);
    assert.equal(code, 0, stderr.slice(-3000));
    const json = readdirSync(out).find((f) => f.endsWith('-quick.json'));
    assert.ok(json, `no results JSON in ${readdirSync(out).join(', ')}`);
    const result = JSON.parse(readFileSync(join(out, json), 'utf8')) as RunResult;

    // Each runtime loaded its own build: the old one on this machine's Node 20, the current one inside.
    assert.match(result.versions['switchyard-trixie'], /on Node v24\.\d+\.\d+, glibc 2\.\d+ with @btc-vision\/uwebsockets\.js$/);
    assert.match(result.versions.switchyard, new RegExp(`on Node ${process.version.replace(/\./g, '\\.')} with @`));
    assert.match(stdout, /\| figure \| direct \| NGINX \| HAProxy \| Switchyard \| Switchyard \(Debian 13, Node 24\) \|/);

    const key = { chat: 'messagesPerSecond', throughput: 'messagesPerSecond', idle: 'rssBytesPerConnection', churn: 'upgradesPerSecond', http: 'requestsPerSecond' } as const;
    const cpu = { chat: 'proxyCpuMicrosPerMessage', throughput: 'proxyCpuMicrosPerMessage', churn: 'proxyCpuMicrosPerUpgrade', http: 'proxyCpuMicrosPerRequest' } as const;
    assert.deepEqual(Object.keys(result.scenarios).sort(), Object.keys(key).sort());
    for (const [name, scenario] of Object.entries(result.scenarios) as [keyof typeof key, RunResult['scenarios'][string]][]) {
      for (const proxy of ['switchyard', 'switchyard-trixie']) {
        const sample = scenario.samples[proxy]?.[0];
        assert.ok(sample, `${name}: a sample for ${proxy}`);
        const value = sample[key[name]];
        // Idle memory growth over 1,000 quick tunnels can come out below zero (a collection in between).
        assert.ok(typeof value === 'number' && Number.isFinite(value) && (name === 'idle' || value > 0), `${name}/${proxy}: ${key[name]} measured (${JSON.stringify(sample)})`);
        assert.equal(sample.errors, 0, `${name}/${proxy}: no connection errors (${JSON.stringify(sample)})`);
        // The chroot's processes are this machine's: their CPU is read from /proc like any other's.
        if (name !== 'idle') assert.ok((sample[cpu[name]] ?? 0) > 0, `${name}/${proxy}: ${cpu[name]} sampled from /proc (${JSON.stringify(sample)})`);
      }
    }
    // Both runtimes get the four targets.
    assert.equal(result.targets?.length, 8);
    assert.ok(result.targets?.some((t) => t.text === 'chat: Switchyard (Debian 13, Node 24) CPU per message ≤ NGINX' && t.detail !== 'not measured'), JSON.stringify(result.targets));
    // The hold ended with the run: nothing left mounted or running in the root filesystem.
    const root = result.machine.rootfs as string;
    assert.match(root, /^\/\S+$/);
    assert.deepEqual(mountsUnder(root), []);
    assert.deepEqual(processesInside(root), []);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('scripts/run-leg refuses a root filesystem another run holds, and leaves that run alone', { timeout: 10 * 60_000 }, async () => {
  const rootfs = await holdRootfs();
  let sleeper: ReturnType<typeof spawn> | undefined;
  try {
    const [command, args] = rootfs.command('sleep', ['600']);
    sleeper = spawn(command, args, { stdio: 'ignore' });
    const until = Date.now() + 10_000;
    while (!processesInside(rootfs.root).includes(sleeper.pid!) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.ok(processesInside(rootfs.root).includes(sleeper.pid!), 'a process runs inside the held root filesystem');

    const second = await run(join(ROOT, 'scripts/run-leg'), [ROOTFS_LEG, '--', 'true'], 120_000);
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(second.stderr, new RegExp(`^run-leg: ${rootfs.root} is in use by another run \\(pid \\d+\\); set SWITCHYARD_ROOTFS to another directory\\n$`));
    // Without the lock, the second run would have killed it and unmounted the root (and mounted its own).
    assert.ok(processesInside(rootfs.root).includes(sleeper.pid!), 'the holder’s process still runs');
    assert.ok(mountsUnder(rootfs.root).length > 0, 'still mounted');
  } finally {
    await rootfs.release();
  }
  // Released: run-leg killed what ran inside and unmounted.
  assert.deepEqual(mountsUnder(rootfs.root), []);
  assert.deepEqual(processesInside(rootfs.root), []);
  sleeper?.kill('SIGKILL');
});

test("bench/profile.ts --tool strace counts a worker's syscalls per upgrade cycle, here and in the root filesystem", { timeout: 10 * 60_000 }, async () => {
  const args = ['--import', 'tsx', 'bench/profile.ts', '--tool', 'strace', '--scenario', 'churn', '--warmup', '2', '--seconds', '2'];
  // The same command on this machine's Node and build, and in the root filesystem (strace installed there by scripts/test-deps).
  const out = mkdtempSync(join(tmpdir(), 'switchyard-strace-test-'));
  const runs = {
    here: await run(process.execPath, [...args, '--out', out], 120_000).finally(() => rmSync(out, { recursive: true, force: true })),
    rootfs: await run(join(ROOT, 'scripts/run-leg'), [ROOTFS_LEG, '--', 'node', ...args], 300_000),
  };
  for (const [where, { code, stdout, stderr }] of Object.entries(runs)) {
    assert.equal(code, 0, `${where}: ${stderr.slice(-2000)}`);
    const total = Number(/^churn: ([\d.]+) syscalls per upgrade cycle besides futex \(([\d,]+) upgrade cycles/m.exec(stdout)?.[1]);
    const per = (name: string): number => Number(new RegExp(`^\\| ${name} \\| ([\\d.]+) \\|$`, 'm').exec(stdout)?.[1]);
    // Cycles are counted by the backend's connect(): one socket() for it, and one accepted client, whatever the runtime batches.
    assert.equal(per('socket'), 1, `${where}: ${stdout}`);
    assert.ok(per('accept4') >= 1 && per('accept4') < 1.5, `${where}: ${stdout}`);
    // README: some 30-40 syscalls a cycle on either runtime.
    assert.ok(total > 15 && total < 80, `${where}: ${stdout}`);
  }
});
