// A real redis-server for the tests, on a free loopback port, without persistence. Missing binary is
// a failure, not a skip: the shared-state tests must run wherever the suite runs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accepts, freePort } from './ports';
import { waitFor } from './wait';

export interface RedisServer {
  port: number;
  url: string;
  /** Stops the server (SIGKILL, like a crash); the port stays reserved for restart(). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

function redisBinary(): string {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  if (found.status !== 0 || path === '') {
    throw new Error('redis-server is not installed; the shared-state tests need it: apt-get install -y redis-server');
  }
  return path;
}

export async function startRedis(): Promise<RedisServer> {
  const binary = redisBinary();
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let output = '';

  const launch = async (): Promise<void> => {
    const p = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc = p;
    running.add(p);
    p.stdout.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4000)));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4000)));
    p.once('exit', () => running.delete(p));
    await waitFor(async () => p.exitCode === null && (await accepts(port)), 10_000, `redis-server on port ${port} (${output})`);
  };

  const stop = async (): Promise<void> => {
    const p = proc;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGKILL');
    await exited;
  };

  await launch();
  return { port, url: `redis://127.0.0.1:${port}`, stop, restart: launch };
}

export interface RedisClusterServer {
  /** redis://host:port of one node; ioredis discovers the rest. */
  url: string;
  /** The three nodes' ports (masters, no replicas). */
  ports: number[];
  stop(): Promise<void>;
}

/** A three-master Redis Cluster (no replicas) on free loopback ports, created with redis-cli. */
export async function startRedisCluster(dir: string): Promise<RedisClusterServer> {
  const binary = redisBinary();
  const ports = [await freePort(), await freePort(), await freePort()];
  const procs = ports.map((port) => {
    const p = spawn(
      binary,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir],
      { stdio: 'ignore' },
    );
    running.add(p);
    p.once('exit', () => running.delete(p));
    return p;
  });
  await Promise.all(ports.map((port) => waitFor(() => accepts(port), 10_000, `redis-server (cluster node) on port ${port}`)));
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
  const stateOk = (port: number): boolean => /cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(port), 'cluster', 'info'], { encoding: 'utf8' }).stdout);
  await waitFor(() => Promise.resolve(ports.every(stateOk)), 10_000, 'Redis Cluster state ok on every node');
  return {
    url: `redis://127.0.0.1:${ports[0]}`,
    ports,
    stop: async () => {
      await Promise.all(
        procs.map((p) => {
          if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
          const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
          p.kill('SIGKILL');
          return exited;
        }),
      );
    },
  };
}

export interface RedisSentinelServer {
  /** Sentinel's address, for ioredis's `sentinels` option; the master is named `mymaster`. */
  sentinel: { host: string; port: number };
  stop(): Promise<void>;
}

/** A redis-server master watched by one real Sentinel (`redis-server <conf> --sentinel`). */
export async function startRedisSentinel(dir: string): Promise<RedisSentinelServer> {
  const binary = redisBinary();
  const master = await startRedis();
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
  const p = spawn(binary, [conf, '--sentinel'], { stdio: 'ignore' });
  running.add(p);
  p.once('exit', () => running.delete(p));
  const knowsMaster = (): boolean =>
    spawnSync('redis-cli', ['-p', String(port), 'sentinel', 'get-master-addr-by-name', 'mymaster'], { encoding: 'utf8' }).stdout.includes(String(master.port));
  await waitFor(async () => (await accepts(port)) && knowsMaster(), 10_000, `redis sentinel on port ${port}`);
  return {
    sentinel: { host: '127.0.0.1', port },
    stop: async () => {
      if (p.exitCode === null && p.signalCode === null) {
        const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
        p.kill('SIGKILL');
        await exited;
      }
      await master.stop();
    },
  };
}
