// The primary process, wired from its roles: the supervisor (worker processes), the reloader
// (SIGHUP, POST /reload), the shutdown (SIGTERM/SIGINT), coordination (health, fleet state) and
// the admin listener. It never handles traffic; each role is in its own file, tested alone.
import { AdminSocketError, startAdminListener, type AdminListener, type AdminView } from '../admin/admin-server';
import { describeAdminWrites } from '../admin/admin-token';
import type { LoadedConfig } from '../config/load';
import { usesDns } from '../config/schema';
import { isWorkerMessage } from '../ipc';
import type { Logger } from '../log';
import { createSharedState, stateTimings } from '../state';
import { keepFinalMetrics } from '../stats/cluster-metrics';
import { bindCertificates, bindDiscovery, bindPrimary, countTotalsRepaired, observeHealthCheck, observeStateSync, setRedisConnected, setRedisNotConfigured } from '../stats/metrics';
import { announceCertificates, announceDescriptorLimit, warnIfDescriptorsShort } from './announce';
import { Coordination } from './coordination';
import { setupWorkers } from './fork';
import { Reloader } from './reloader';
import { Shutdown } from './shutdown';
import { checkPortFree, StartupError } from './startup';
import { Supervisor } from './supervisor';

/** The admin listener, or a StartupError naming what to change. */
function startAdmin(config: LoadedConfig, port: number, view: AdminView, log: Logger): Promise<AdminListener> {
  return startAdminListener(config, port, view, log).catch((err: NodeJS.ErrnoException) => {
    if (err instanceof AdminSocketError) throw new StartupError(err.message);
    const what = err.code === 'EADDRINUSE' ? 'port in use' : (err.code ?? err.message);
    throw new StartupError(`admin listener cannot listen on ${config.admin.host}:${config.admin.port}: ${what} (set admin.port, --admin-port, or --no-admin)`);
  });
}

/** Coordination, with its health-check latency and Redis connection on the primary's /metrics. */
async function startCoordination(config: LoadedConfig, log: Logger): Promise<Coordination> {
  const state = createSharedState(config);
  if (config.redis) {
    state.on('counts', (startedAt) => observeStateSync((Date.now() - startedAt) / 1000));
    state.on('repaired', countTotalsRepaired);
    for (const pool of Object.keys(config.pools)) countTotalsRepaired(pool, 0); // shown from the first scrape
  }
  const coordination = new Coordination(config, state, log, stateTimings(config).syncInterval);
  await coordination.start();
  coordination.on('checked', (key, result) => {
    const labels = coordination.labelsOf(key);
    if (labels) observeHealthCheck(labels.pool, labels.backend, result.latencyMs / 1000);
  });
  if (config.redis) coordination.on('status', (status) => setRedisConnected(status === 'ok'));
  return coordination;
}

/**
 * Runs until the workers have drained after SIGTERM/SIGINT; rejects with a StartupError when the
 * first workers cannot start. `loadNext` reads the config again for a reload (SIGHUP, POST /reload);
 * without it, reloads are refused.
 */
export async function runPrimary(first: LoadedConfig, log: Logger, loadNext?: () => LoadedConfig): Promise<void> {
  // Port 0 means "any": pick one here so that every worker shares it.
  const port = await checkPortFree(first.listen.host, first.listen.port);
  const redirectPort = first.listen.tls?.redirectHttpPort;
  if (redirectPort !== undefined) {
    await checkPortFree(first.listen.host, redirectPort).catch((err: Error) => {
      throw new StartupError(`${err.message} (listen.tls.redirectHttpPort)`);
    });
  }
  announceDescriptorLimit(log);
  setupWorkers();
  const coordination = await startCoordination(first, log);
  const supervisor = new Supervisor(first, port, log);
  supervisor.on('forked', (worker) => {
    coordination.addWorker(worker);
    worker.on('message', (m: unknown) => {
      if (isWorkerMessage(m) && m.type === 'final-metrics') keepFinalMetrics(m.metrics);
    });
  });
  supervisor.on('exited', (worker) => coordination.removeWorker(worker));
  // The pools with discovery, again after a reload (their lookup counts start at zero).
  const bindDiscoveryOf = (c: LoadedConfig): void =>
    bindDiscovery(Object.keys(c.pools).filter((p) => usesDns(c.pools[p])), () =>
      Object.entries(coordination.discoveryStatus()).map(([pool, d]) => ({ pool, live: d.backends, draining: d.draining })),
    );
  bindDiscoveryOf(first);
  const workers = supervisor.views.bind(supervisor);
  bindPrimary(workers, first.pools);
  bindCertificates(() => supervisor.config.certificates);
  announceCertificates(first, log);
  if (first.redis) setRedisConnected(coordination.status().state.status === 'ok');
  else setRedisNotConfigured();
  const applied = (c: LoadedConfig): void => {
    bindPrimary(workers, c.pools);
    bindDiscoveryOf(c);
  };
  const reloader = new Reloader({ supervisor, coordination, loadNext, log, applied });
  const view: AdminView = {
    started: () => supervisor.ready,
    workers,
    fleet: () => coordination.status(),
    config: () => supervisor.config,
    setAdmin: coordination.setAdmin.bind(coordination),
    rebalance: (pool: string, timeoutMs?: number) => coordination.rebalancer.command(pool, timeoutMs),
    rebalanceStatus: (pool: string) => coordination.rebalancer.status(pool),
    reload: () => reloader.reload('admin'),
  };
  const admin = first.admin.enabled ? await startAdmin(first, port, view, log) : undefined;

  supervisor.on('ready', (m) => {
    const config = supervisor.config;
    log.info(
      {
        port,
        host: config.listen.host,
        tls: config.listen.tls !== undefined,
        redirectHttpPort: redirectPort,
        workers: supervisor.pids().length,
        pids: supervisor.pids(),
        binding: m.binding,
        state: coordination.status().state,
        admin: admin ? `${config.admin.host}:${admin.port}` : 'disabled',
        adminPort: admin?.port,
        adminWrites: describeAdminWrites(config.admin, config.adminToken),
        workerConnections: m.workerConnections,
      },
      'switchyard ready',
    );
    warnIfDescriptorsShort(config, m, log);
  });
  const shutdown = new Shutdown(supervisor, log);
  const stopped = new Promise<void>((resolve, reject) => {
    void shutdown.done.then(resolve);
    supervisor.once('failed', reject);
  });
  supervisor.start();
  process.on('SIGTERM', () => shutdown.begin('SIGTERM'));
  process.on('SIGINT', () => shutdown.begin('SIGINT'));
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));

  try {
    await stopped;
  } catch (err) {
    supervisor.kill();
    await coordination.close(true);
    throw err;
  } finally {
    await admin?.close();
  }
  await coordination.close(true);
  log.info('stopped');
}
