// The primary: forks one worker per core, restarts the ones that die (with backoff, so a crash
// loop does not spin the CPU), on SIGHUP reloads the config into a new generation of workers, and
// on SIGTERM/SIGINT drains them all. It never handles traffic.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ReloadResult } from '../admin/admin-api';
import { AdminSocketError, startAdminListener, type AdminListener } from '../admin/admin-server';
import { describeAdminWrites } from '../admin/admin-token';
import { daysUntil } from '../admin/status';
import { ADMIN_TOKEN_ENV, checkReloadable, ConfigError, type LoadedConfig } from '../config/load';
import { usesDns } from '../config/schema';
import { isLocalResourceError } from '../errors';
import { reportLocalFailure } from '../local-failures';
import type { Logger } from '../log';
import { createSharedState, stateTimings } from '../state';
import { keepFinalMetrics } from '../stats/cluster-metrics';
import { bindCertificates, bindDiscovery, bindPrimary, countReload, countTotalsRepaired, countWorkerRestart, observeHealthCheck, observeStateSync, setRedisConnected, setRedisNotConfigured, type WorkerView } from '../stats/metrics';
import { Coordination } from './coordination';
import { autoWorkerConnections, descriptorsNeeded, readDescriptorLimit, UNKNOWN_LIMIT_CONNECTIONS } from '../descriptors';
import { isWorkerMessage, LOG_FD_ENV, WORKER_COUNT_ENV, WORKER_LOG_FD, WORKER_SLOT_ENV, WORKER_STDIO, type PrimaryMessage, type WorkerMessage } from '../ipc';
import { newSlots, nextRestartDelay, overRetiringCap, reloadRefusal, type Generation, type Slot } from './worker-slots';

/** A startup failure worth one line to the operator and a non-zero exit. */
export class StartupError extends Error {
  readonly code = 'ERR_STARTUP';
}

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

/**
 * With SO_REUSEPORT, a listen socket that closes drops the connections queued on it (they are
 * reset), unless the kernel moves them to another listener of the port: net.ipv4.tcp_migrate_req
 * (Linux 5.14+). Said once per reload, when it is off.
 */
function warnIfQueuesDrop(log: Logger): void {
  let value: string;
  try {
    value = readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  } catch {
    return; // not Linux 5.14+: nothing to suggest
  }
  if (value === '0') log.warn('net.ipv4.tcp_migrate_req is 0: connections queued on an old worker when it stops listening are reset; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1)');
}

/** How long a reload waits for its new workers to listen before giving up (the old ones keep serving). */
const RELOAD_START_TIMEOUT_MS = 15_000;

/** Days left under which the certificate's log line is a warning (Let's Encrypt renews at 30). */
const CERTIFICATE_WARN_DAYS = 14;

/** Logs each certificate the listener serves, with a warning when it has expired or soon will. */
function announceCertificates(config: LoadedConfig, log: Logger): void {
  for (const cert of config.certificates ?? []) {
    const daysLeft = daysUntil(cert.notAfter, Date.now());
    const served = cert.names.length === 0 ? {} : { names: cert.names.join(' ') };
    const fields = { key: cert.key, cert: cert.file, ...served, subject: cert.subject, altNames: cert.altNames, validTo: cert.validTo, daysLeft, fingerprint256: cert.fingerprint256 };
    if (daysLeft < 0) log.warn(fields, 'TLS certificate has expired: clients will refuse it');
    else if (daysLeft < CERTIFICATE_WARN_DAYS) log.warn(fields, 'TLS certificate expires soon');
    else log.info(fields, 'TLS certificate');
  }
}

/**
 * The descriptor limit every process runs with. Node has raised the soft limit to the hard one
 * already (src/descriptors.ts); said here with both numbers, and a warning if that did not happen.
 */
function announceDescriptorLimit(log: Logger): void {
  const limit = readDescriptorLimit();
  if (limit === undefined) return log.warn(`descriptor limit unknown (no /proc/self/limits): workerConnections "auto" is ${UNKNOWN_LIMIT_CONNECTIONS}`);
  const fields = { soft: limit.soft, hard: limit.hard };
  if (limit.soft < limit.hard) log.warn(fields, 'descriptor limit: the soft limit could not be raised to the hard one');
  else log.info(fields, 'descriptor limit (soft raised to hard at start; raise hard with LimitNOFILE= or ulimit -Hn)');
}

/** A configured workerConnections that the descriptor limit cannot hold, as NGINX warns "worker_connections exceed open file resource limit". */
function warnIfDescriptorsShort(config: LoadedConfig, m: Extract<WorkerMessage, { type: 'listening' }>, log: Logger): void {
  const d = m.descriptors;
  if (config.workerConnections === 'auto' || d === undefined) return;
  const needed = descriptorsNeeded(config.workerConnections, d.inUse);
  if (needed > d.soft) {
    log.warn(
      { workerConnections: config.workerConnections, descriptorsNeeded: needed, soft: d.soft, auto: autoWorkerConnections(d, d.inUse) },
      'workerConnections exceeds what the descriptor limit holds: connections past the limit fail with 503 local_resources',
    );
  }
}

/**
 * `loadNext` reads the config again (the same file and flags) for a reload, on SIGHUP or
 * POST /reload; without it, reloads are refused.
 */
export async function runPrimary(first: LoadedConfig, log: Logger, loadNext?: () => LoadedConfig): Promise<void> {
  let config = first;
  // Port 0 means "any": pick one here so that every worker shares it.
  const port = await checkPortFree(config.listen.host, config.listen.port);
  const redirectPort = config.listen.tls?.redirectHttpPort;
  if (redirectPort !== undefined) {
    await checkPortFree(config.listen.host, redirectPort).catch((err: Error) => {
      throw new StartupError(`${err.message} (listen.tls.redirectHttpPort)`);
    });
  }
  announceDescriptorLimit(log);
  let generations = 0;
  const generation = (c: LoadedConfig): Generation => ({
    id: ++generations,
    config: c,
    // The admin token stays in the primary: workers never need it.
    workerConfig: JSON.stringify({ ...c, listen: { ...c.listen, port }, admin: { ...c.admin, token: undefined, tokenFile: undefined }, adminToken: undefined, workerCount: undefined, certificates: undefined }),
  });
  // A 4 MiB young generation (V8's default grows to 16 MiB a semi-space): a burst of upgrades
  // otherwise leaves ~32 MiB of young-generation pages resident per worker, ~1.3 KB per tunnel at
  // 10k tunnels, for 0.6% more instructions per relayed message (bench/README.md).
  cluster.setupPrimary({ exec: join(__dirname, '../../workers/edge-worker.js'), execArgv: ['--max-semi-space-size=4', ...process.execArgv], stdio: [...WORKER_STDIO] });
  const state = createSharedState(config);
  if (config.redis) {
    state.on('counts', (startedAt) => observeStateSync((Date.now() - startedAt) / 1000));
    state.on('repaired', countTotalsRepaired);
    for (const pool of Object.keys(config.pools)) countTotalsRepaired(pool, 0); // shown from the first scrape
  }
  const coordination = new Coordination(config, state, log, stateTimings(config).syncInterval);
  await coordination.start();
  // Health-check latency and the Redis connection, for /metrics (the primary's own registry).
  coordination.on('checked', (key, result) => {
    const labels = coordination.labelsOf(key);
    if (labels) observeHealthCheck(labels.pool, labels.backend, result.latencyMs / 1000);
  });
  if (config.redis) coordination.on('status', (status) => setRedisConnected(status === 'ok'));
  // The pools with discovery, again after a reload (their lookup counts start at zero).
  const bindDiscoveryOf = (c: LoadedConfig): void =>
    bindDiscovery(Object.keys(c.pools).filter((p) => usesDns(c.pools[p])), () =>
      Object.entries(coordination.discoveryStatus()).map(([pool, d]) => ({ pool, live: d.backends, draining: d.draining })),
    );
  bindDiscoveryOf(config);

  let slots = newSlots(generation(config), 'current');
  /** The workers of a reload in progress, and of old generations still finishing their tunnels. */
  let starting: Slot[] = [];
  const retiring = new Set<Slot>();
  /** Retiring workers told to close their tunnels now (past maxRetiringGenerations), until they exit. */
  const closingNow = new Set<Slot>();
  let reloadStarted: ((error?: string) => void) | null = null;
  let ready = false;
  let listening = 0;
  let shuttingDown = false;
  let resolveDone!: () => void;
  let rejectStart!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectStart = reject;
  });
  const allSlots = (): Slot[] => [...slots, ...starting, ...retiring];

  const workerViews = (): WorkerView[] =>
    [...slots, ...retiring].map((s) => ({ slot: s.index, pid: s.worker?.process.pid, listening: s.listening, restarts: s.restarts, startedAt: s.startedAt, retiring: s.role === 'retiring' }));
  bindPrimary(workerViews, config.pools);
  bindCertificates(() => config.certificates);
  announceCertificates(config, log);
  if (config.redis) setRedisConnected(coordination.status().state.status === 'ok');
  else setRedisNotConfigured();
  let admin: AdminListener | undefined;
  if (config.admin.enabled) {
    const view = {
      started: () => ready,
      workers: workerViews,
      fleet: () => coordination.status(),
      config: () => config,
      setAdmin: coordination.setAdmin.bind(coordination),
      reload: () => reload('admin'),
    };
    admin = await startAdminListener(config, port, view, log).catch((err: NodeJS.ErrnoException) => {
      if (err instanceof AdminSocketError) throw new StartupError(err.message);
      const what = err.code === 'EADDRINUSE' ? 'port in use' : (err.code ?? err.message);
      throw new StartupError(`admin listener cannot listen on ${config.admin.host}:${config.admin.port}: ${what} (set admin.port, --admin-port, or --no-admin)`);
    });
  }

  const fork = (slot: Slot): void => {
    // undefined drops the variable from the worker's environment: the admin token stays in the primary.
    const worker = cluster.fork({
      [LOG_FD_ENV]: String(WORKER_LOG_FD),
      [WORKER_SLOT_ENV]: String(slot.index),
      [WORKER_COUNT_ENV]: String(slot.generation.config.workerCount),
      [ADMIN_TOKEN_ENV]: undefined,
    });
    slot.worker = worker;
    slot.startedAt = Date.now();
    coordination.addWorker(worker);
    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      if (m.type === 'config-request') {
        if (worker.isConnected()) worker.send({ type: 'config', json: slot.generation.workerConfig } satisfies PrimaryMessage);
      }
      else if (m.type === 'final-metrics') keepFinalMetrics(m.metrics);
      else if (m.type === 'listen-failed') {
        if (!ready) rejectStart(new StartupError(`cannot listen on ${config.listen.host}:${port}: ${m.error}`));
        else if (slot.role === 'starting') reloadStarted?.(`a new worker could not listen: ${m.error}`);
        else log.error({ workerPid: worker.process.pid, error: m.error }, 'worker could not listen');
      } else if (m.type === 'listening') {
        if (slot.role === 'abandoned' || slot.role === 'retiring') return;
        slot.listening = true;
        if (slot.role === 'starting') {
          if (starting.every((s) => s.listening)) reloadStarted?.();
        } else if (ready) log.info({ workerPid: worker.process.pid }, 'worker started');
        else if (slots.every((s) => s.worker !== null) && ++listening === slots.length) {
          ready = true;
          log.info(
            {
              port,
              host: config.listen.host,
              tls: config.listen.tls !== undefined,
              redirectHttpPort: redirectPort,
              workers: slots.length,
              pids: slots.map((s) => s.worker!.process.pid),
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
        }
      }
    });
    // A fork that failed (spawn EMFILE at the descriptor limit) emits 'error' and no 'exit': it is
    // handled as an exit, so the slot is tried again with backoff. Other errors (a message to a
    // worker that just died) are logged; an 'error' nobody hears would take the primary down.
    worker.on('error', (err: NodeJS.ErrnoException) => {
      if (worker.process.pid !== undefined) return void log.warn({ workerPid: worker.process.pid, err }, 'worker channel error');
      if (isLocalResourceError(err.code)) reportLocalFailure(err.code, 'fork');
      else log.error({ err }, 'could not start a worker');
      gone(null, null, `could not be started: ${err.message}`);
    });
    worker.on('exit', (code, signal) => gone(code, signal));
    const gone = (code: number | null, signal: string | null, why = `exited (code ${code}, signal ${signal ?? 'none'})`): void => {
      coordination.removeWorker(worker);
      if (slot.worker === worker) {
        slot.worker = null;
        slot.listening = false;
      }
      closingNow.delete(slot);
      if (retiring.delete(slot) && slot.role === 'retiring') {
        log.info({ workerPid: worker.process.pid, generation: slot.generation.id, code, signal, retiring: retiring.size }, 'old worker exited');
      }
      if (shuttingDown) {
        if (allSlots().every((s) => s.worker === null)) resolveDone();
        return;
      }
      if (slot.role === 'retiring' || slot.role === 'abandoned') return;
      if (slot.role === 'starting') return reloadStarted?.(`a new worker ${why} while starting`);
      if (!ready) return rejectStart(new StartupError(`a worker ${why} during startup`));
      const delay = nextRestartDelay(slot, Date.now());
      log.warn({ workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'worker exited');
      slot.restartTimer = setTimeout(() => {
        slot.restarts++;
        countWorkerRestart(slot.index);
        fork(slot);
      }, delay);
    };
  };

  for (const slot of slots) fork(slot);

  /**
   * NGINX's reload: read the config again; if it is valid, start a new generation of workers with it
   * next to the old one (both listen on the port: SO_REUSEPORT), and once every new worker listens,
   * retire the old ones (they stop accepting and keep their tunnels up to retireTimeout). A config
   * that does not validate, or new workers that do not start, change nothing.
   */
  async function reload(by: string): Promise<ReloadResult> {
    const refuse = (error: string): ReloadResult => {
      countReload(false);
      log.error({ by, error }, 'reload refused: still running the previous config');
      return { ok: false, error };
    };
    const refusal = reloadRefusal({ ready, shuttingDown, canLoad: loadNext !== undefined, starting: starting.length, closingNow: closingNow.size, config });
    if (refusal !== undefined || loadNext === undefined) return refuse(refusal ?? 'no config to reload');
    let next: LoadedConfig;
    try {
      next = loadNext();
      checkReloadable(config, next);
    } catch (err) {
      if (err instanceof ConfigError) return refuse(err.message);
      throw err;
    }
    const previous = config;
    warnIfQueuesDrop(log);
    const g = generation(next);
    log.info({ by, generation: g.id, workers: next.workerCount }, 'reloading: starting new workers');
    coordination.reconfigure(next);
    starting = newSlots(g, 'starting');
    const started = new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(`the new workers did not listen within ${RELOAD_START_TIMEOUT_MS / 1000}s`), RELOAD_START_TIMEOUT_MS);
      reloadStarted = (error) => {
        clearTimeout(timer);
        resolve(error);
      };
    });
    for (const slot of starting) fork(slot);
    const error = await started;
    reloadStarted = null;
    const fresh = starting;
    starting = [];
    if (shuttingDown) {
      // They were told to drain with the rest; the primary waits for them too.
      for (const s of fresh) {
        s.role = 'abandoned';
        if (s.worker !== null) retiring.add(s);
      }
      return { ok: false, error: 'switchyard is stopping' };
    }
    if (error !== undefined) {
      // A new worker that listened may already hold connections: it retires like an old one.
      for (const s of fresh) {
        if (s.worker?.isConnected() && s.listening) {
          s.role = 'retiring';
          s.listening = false;
          retiring.add(s);
          s.worker.send({ type: 'retire', timeoutMs: previous.retireTimeout } satisfies PrimaryMessage);
        } else {
          s.role = 'abandoned';
          s.worker?.process.kill('SIGKILL');
        }
      }
      capRetiring(previous);
      coordination.reconfigure(previous);
      return refuse(error);
    }
    const old = slots;
    for (const s of fresh) s.role = 'current';
    slots = fresh;
    config = next;
    log.level = next.logLevel;
    bindPrimary(workerViews, config.pools);
    bindDiscoveryOf(config);
    const message: PrimaryMessage = { type: 'retire', timeoutMs: next.retireTimeout };
    for (const s of old) {
      clearTimeout(s.restartTimer);
      s.listening = false;
      if (s.worker === null) continue;
      s.role = 'retiring';
      retiring.add(s);
      if (s.worker.isConnected()) s.worker.send(message);
    }
    const closing = capRetiring(next);
    countReload(true);
    announceCertificates(next, log);
    const finishing = retiring.size - closingNow.size;
    log.info({ by, generation: g.id, workers: fresh.length, pids: fresh.map((s) => s.worker?.process.pid), retiring: finishing, closingNow: closing, retireTimeoutMs: next.retireTimeout }, 'reloaded');
    return { ok: true, generation: g.id, workers: fresh.length, retiring: finishing, closingNow: closing };
  }

  /**
   * HAProxy's mworker-max-reloads: past `maxRetiringGenerations` older generations finishing their
   * tunnels, the oldest are told to close them now (1001, then drainTimeout; killed if still there
   * 3 s later). With the refusal above while they do, reloads in a row cannot pile up workers: at
   * most maxRetiringGenerations + 2 generations run at once. Returns how many workers were told.
   */
  function capRetiring(c: LoadedConfig): number {
    const { generations: over, slots: told } = overRetiringCap(retiring, closingNow, c.maxRetiringGenerations);
    if (told.length === 0) return 0;
    const message: PrimaryMessage = { type: 'drain', timeoutMs: c.drainTimeout };
    for (const s of told) {
      closingNow.add(s);
      if (s.worker?.isConnected()) s.worker.send(message);
    }
    log.warn(
      { generations: over, pids: told.map((s) => s.worker?.process.pid), maxRetiringGenerations: c.maxRetiringGenerations, drainTimeoutMs: c.drainTimeout },
      'old workers closing their tunnels now: more generations finishing their tunnels than maxRetiringGenerations',
    );
    setTimeout(() => {
      for (const s of told) if (closingNow.has(s)) s.worker?.process.kill('SIGKILL');
    }, c.drainTimeout + 3000).unref();
    return told.length;
  }

  const shutdown = (signal: string): void => {
    if (shuttingDown) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    shuttingDown = true;
    log.info({ signal, drainTimeoutMs: config.drainTimeout }, 'draining');
    reloadStarted?.('switchyard is stopping');
    const message: PrimaryMessage = { type: 'drain', timeoutMs: config.drainTimeout };
    for (const slot of allSlots()) {
      clearTimeout(slot.restartTimer);
      if (slot.worker?.isConnected()) slot.worker.send(message);
    }
    if (allSlots().every((s) => s.worker === null)) resolveDone();
    // Workers exit by themselves after the drain; this is the backstop.
    setTimeout(() => {
      for (const s of allSlots()) s.worker?.process.kill('SIGKILL');
      resolveDone();
    }, config.drainTimeout + 3000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => void reload('SIGHUP'));

  try {
    await done;
  } catch (err) {
    shuttingDown = true;
    for (const s of allSlots()) s.worker?.process.kill('SIGKILL');
    await coordination.close(true);
    throw err;
  } finally {
    await admin?.close();
  }
  await coordination.close(true);
  log.info('stopped');
}
