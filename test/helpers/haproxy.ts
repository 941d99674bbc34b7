// A real HAProxy (Debian's package) in TCP mode in front of the balancer, for the PROXY protocol
// tests: its config is written to a temporary directory, and the process is stopped by pid.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accepts, freePort } from './ports';
import { waitFor } from './wait';

export interface TcpFront {
  port: number;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * HAProxy listening on a free loopback port, relaying TCP to 127.0.0.1:`target` with `serverOptions`
 * on its server line (e.g. `send-proxy-v2`, `send-proxy`, `ssl verify none`).
 */
export async function startHaproxyTcp(target: number, serverOptions: string): Promise<TcpFront> {
  if (spawnSync('sh', ['-c', 'command -v haproxy']).status !== 0) {
    throw new Error('haproxy is not installed; the PROXY protocol tests need it: apt-get install -y haproxy');
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-haproxy-'));
  const config = [
    'global',
    '    maxconn 1000',
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 60s',
    '    timeout server 60s',
    'frontend edge',
    `    bind 127.0.0.1:${port}`,
    '    default_backend balancer',
    'backend balancer',
    `    server switchyard 127.0.0.1:${target} ${serverOptions}`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), config);
  let output = '';
  const proc = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4000)));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4000)));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    await waitFor(async () => proc.exitCode === null && (await accepts(port)), 10_000, `haproxy on port ${port} (${output})`);
  } catch (err) {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
      running.delete(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
