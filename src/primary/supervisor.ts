// The primary: forks one worker per core, restarts the ones that die (with backoff, so a crash
// loop does not spin the CPU), and on SIGTERM/SIGINT drains them all. It never handles traffic.
import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startAdminListener, type AdminListener } from '../admin/admin-server';
import type { LoadedConfig } from '../config/load';
import type { Logger } from '../log';
import { createSharedState, stateTimings } from '../state';
import { bindPrimary, countWorkerRestart, observeHealthCheck, setRedisConnected, setRedisNotConfigured, type WorkerView } from '../stats/metrics';
import { Coordination } from './coordination';
import { CONFIG_ENV, isWorkerMessage, WORKER_SLOT_ENV, type PrimaryMessage } from './ipc';

/** A startup failure worth one line to the operator and a non-zero exit. */
export class StartupError extends Error {}

const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 30_000;
/** A worker that lived this long is healthy: its slot's backoff starts over. */
const STABLE_AFTER_MS = 30_000;

/** Refuses early, with a clear line, when something already holds the port (SO_REUSEPORT would hide it). */
function checkPortFree(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(new StartupError(err.code === 'EADDRINUSE' ? `port ${port} on ${host} is already in use` : `cannot listen on ${host}:${port}: ${err.code ?? err.message}`));
    });
    probe.listen({ host, port, exclusive: true }, () => {
      const actual = (probe.address() as { port: number }).port;
      probe.close(() => resolve(actual));
    });
  });
}

interface Slot {
  worker: Worker | null;
  startedAt: number;
  failures: number;
  restartTimer?: NodeJS.Timeout;
  listening: boolean;
  restarts: number;
}

export async function runPrimary(config: LoadedConfig, log: Logger): Promise<void> {
  // Port 0 means "any": pick one here so that every worker shares it.
  const port = await checkPortFree(config.listen.host, config.listen.port);
  const workerConfig = JSON.stringify({ ...config, listen: { ...config.listen, port }, workerCount: undefined });
  // A 4 MiB young generation (V8's default grows to 16 MiB a semi-space): a burst of upgrades
  // otherwise leaves ~32 MiB of young-generation pages resident per worker, ~1.3 KB per tunnel at
  // 10k tunnels, for 0.6% more instructions per relayed message (bench/README.md).
  cluster.setupPrimary({ exec: join(__dirname, '../../workers/edge-worker.js'), execArgv: ['--max-semi-space-size=4', ...process.execArgv] });
  const coordination = new Coordination(config, createSharedState(config), log, stateTimings(config).syncInterval);
  await coordination.start();
  // Health-check latency and the Redis connection, for /metrics (the primary's own registry).
  coordination.on('checked', (key, result) => {
    const labels = coordination.labelsOf(key);
    if (labels) observeHealthCheck(labels.pool, labels.backend, result.latencyMs / 1000);
  });
  if (config.redis) coordination.on('status', (status) => setRedisConnected(status === 'ok'));

  const slots: Slot[] = Array.from({ length: config.workerCount }, () => ({ worker: null, startedAt: 0, failures: 0, listening: false, restarts: 0 }));
  let ready = false;
  let listening = 0;
  let shuttingDown = false;
  let resolveDone!: () => void;
  let rejectStart!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectStart = reject;
  });

  const workerViews = (): WorkerView[] =>
    slots.map((s, slot) => ({ slot, pid: s.worker?.process.pid, listening: s.listening, restarts: s.restarts, startedAt: s.startedAt }));
  bindPrimary(workerViews);
  if (config.redis) setRedisConnected(coordination.status().state.status === 'ok');
  else setRedisNotConfigured();
  let admin: AdminListener | undefined;
  if (config.admin.enabled) {
    const view = { started: () => ready, workers: workerViews, fleet: () => coordination.status(), setAdmin: coordination.setAdmin.bind(coordination) };
    admin = await startAdminListener(config, port, view, log).catch((err: NodeJS.ErrnoException) => {
      const what = err.code === 'EADDRINUSE' ? 'port in use' : (err.code ?? err.message);
      throw new StartupError(`admin listener cannot listen on ${config.admin.host}:${config.admin.port}: ${what} (set admin.port, --admin-port, or --no-admin)`);
    });
  }

  const fork = (slot: Slot): void => {
    const worker = cluster.fork({ [CONFIG_ENV]: workerConfig, [WORKER_SLOT_ENV]: String(slots.indexOf(slot)) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    coordination.addWorker(worker);
    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      if (m.type === 'listen-failed') {
        if (!ready) rejectStart(new StartupError(`cannot listen on ${config.listen.host}:${port}: ${m.error}`));
        else log.error({ workerPid: worker.process.pid, error: m.error }, 'worker could not listen');
      } else if (m.type === 'listening') {
        slot.listening = true;
        if (ready) log.info({ workerPid: worker.process.pid }, 'worker started');
        else if (slots.every((s) => s.worker !== null) && ++listening === slots.length) {
          ready = true;
          log.info(
            {
              port,
              host: config.listen.host,
              workers: slots.length,
              pids: slots.map((s) => s.worker!.process.pid),
              binding: m.binding,
              state: coordination.status().state,
              admin: admin ? `${config.admin.host}:${admin.port}` : 'disabled',
              adminPort: admin?.port,
            },
            'switchyard ready',
          );
        }
      }
    });
    worker.on('exit', (code, signal) => {
      coordination.removeWorker(worker);
      if (slot.worker === worker) {
        slot.worker = null;
        slot.listening = false;
      }
      if (shuttingDown) {
        if (slots.every((s) => s.worker === null)) resolveDone();
        return;
      }
      if (!ready) return rejectStart(new StartupError(`a worker exited during startup (code ${code}, signal ${signal ?? 'none'})`));
      if (Date.now() - slot.startedAt > STABLE_AFTER_MS) slot.failures = 0;
      const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** slot.failures);
      slot.failures++;
      log.warn({ workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'worker exited');
      slot.restartTimer = setTimeout(() => {
        slot.restarts++;
        countWorkerRestart(slots.indexOf(slot));
        fork(slot);
      }, delay);
    });
  };

  for (const slot of slots) fork(slot);

  const shutdown = (signal: string): void => {
    if (shuttingDown) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    shuttingDown = true;
    log.info({ signal, drainTimeoutMs: config.drainTimeout }, 'draining');
    const message: PrimaryMessage = { type: 'drain', timeoutMs: config.drainTimeout };
    for (const slot of slots) {
      clearTimeout(slot.restartTimer);
      if (slot.worker?.isConnected()) slot.worker.send(message);
    }
    if (slots.every((s) => s.worker === null)) resolveDone();
    // Workers exit by themselves after the drain; this is the backstop.
    setTimeout(() => {
      for (const s of slots) s.worker?.process.kill('SIGKILL');
      resolveDone();
    }, config.drainTimeout + 3000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  try {
    await done;
  } catch (err) {
    shuttingDown = true;
    for (const s of slots) s.worker?.process.kill('SIGKILL');
    await coordination.close(true);
    throw err;
  } finally {
    await admin?.close();
  }
  await coordination.close(true);
  log.info('stopped');
}
