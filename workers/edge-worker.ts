// A worker process: composition only. Builds the listener from the config the primary sent,
// listens on the shared port (uWS sets SO_REUSEPORT, so the kernel spreads connections), and
// drains on the primary's word.
import { AcceptGuard } from '../src/accept-guard';
import { AccessLog } from '../src/access-log';
import { ClientLimits } from '../src/client-limits';
import { ClientLimitsSync } from '../src/client-limits-sync';
import { validateConfig } from '../src/config/load';
import { Listener } from '../src/listener';
import { createLogger } from '../src/log';
import { LOG_FD_ENV, WORKER_COUNT_ENV, WORKER_LOG_FD, WORKER_SLOT_ENV, type PrimaryMessage, type WorkerMessage } from '../src/ipc';
import { TrustedProxies } from '../src/proxy/forwarded-headers';
import { HttpsRedirect } from '../src/https-redirect';
import { installLastResort } from '../src/last-resort';
import { bindLocalFailureLog } from '../src/local-failures';
import { assemblyBudget } from '../src/proxy/frame-reader';
import { HttpProxy } from '../src/proxy/http-proxy';
import { RouteTable } from '../src/route';
import { DEFAULT_TIMINGS } from '../src/state/shared-state';
import { BackendSync } from '../src/upstream/backend-sync';
import { answerMetricsRequest, sendFinalMetrics } from '../src/stats/cluster-metrics';
import { bindConnections, bindWorker, unbindWorkerSlot } from '../src/stats/metrics';
import { autoWorkerConnections, countOpenDescriptors, readDescriptorLimit } from '../src/descriptors';
import { Pool } from '../src/upstream/pool';
import { uwsBindingName } from '../src/uws';

function ignore(): void {}

/** To the primary; with a callback, a closed channel (the primary is gone) is not an 'error' event. */
function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message, undefined, {}, ignore);
}

/** How long a new worker waits for its config before giving up (the primary restarts it). */
const CONFIG_TIMEOUT_MS = 30_000;

/** The config, asked of the primary over IPC: the worker's first message. */
function askConfig(): Promise<string> {
  if (!process.send) return Promise.reject(new Error('no IPC channel: a worker is started by the primary (switchyard start)'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no config from the primary within ${CONFIG_TIMEOUT_MS / 1000}s`)), CONFIG_TIMEOUT_MS);
    const gone = (): void => reject(new Error('the primary went away before sending the config'));
    const onMessage = (m: PrimaryMessage): void => {
      if (m.type !== 'config') return;
      clearTimeout(timer);
      process.off('message', onMessage);
      process.off('disconnect', gone);
      resolve(m.json);
    };
    process.on('message', onMessage);
    process.once('disconnect', gone);
    send({ type: 'config-request' });
  });
}

async function main(): Promise<void> {
  const config = validateConfig(JSON.parse(await askConfig()));
  const logFd = process.env[LOG_FD_ENV] === String(WORKER_LOG_FD) ? WORKER_LOG_FD : 1;
  const log = createLogger(config.logLevel, { role: 'worker' }, logFd);
  installLastResort(log);
  bindLocalFailureLog(log);
  // The workers of a machine share its maxUpgradesPerSecond: each paces at its part.
  const workers = Number(process.env[WORKER_COUNT_ENV]) || 1;
  const pools = new Map(Object.entries(config.pools).map(([name, pc]) => [name, new Pool(name, pc, { workers })]));
  const trusted = new TrustedProxies(config.trustedProxies);
  const accessLog = config.accessLog ? new AccessLog(logFd) : null;
  const httpProxy = new HttpProxy(trusted, log, accessLog);
  assemblyBudget.limit = config.messageAssemblyLimit;
  const clientLimits = new ClientLimits(config.clientLimits);
  bindWorker(pools.values(), process.env[WORKER_SLOT_ENV] ?? '0', () => clientLimits.size);
  // Backend health, admin state and fleet counts come from the primary; known before the first upgrade.
  const syncInterval = config.redis?.syncInterval ?? DEFAULT_TIMINGS.syncInterval;
  const backendSync = new BackendSync(pools.values(), syncInterval, send);
  const clientSync = new ClientLimitsSync(clientLimits, syncInterval, send);
  process.on('message', (m: PrimaryMessage) => backendSync.onMessage(m) || clientSync.onMessage(m));
  await backendSync.ready(2000);
  backendSync.start();
  clientSync.start();

  let port: number;
  let listener: Listener;
  const redirectPort = config.listen.tls?.redirectHttpPort;
  const redirect = redirectPort === undefined ? null : new HttpsRedirect(config.listen.port);
  try {
    listener = new Listener({ config, routes: new RouteTable(config.routes, pools), trusted, httpProxy, log, accessLog, clientLimits: clientLimits.enabled ? clientLimits : undefined });
    port = await listener.listen(config.listen.host, config.listen.port);
    if (redirect) await redirect.listen(config.listen.host, redirectPort!);
  } catch (err) {
    send({ type: 'listen-failed', error: (err as Error).message });
    process.exit(1);
  }
  // A backend DNS discovery took out of its pool (its drain over): its tunnels end with 1001.
  backendSync.onRemoved = (removed) => listener.closeTunnelsTo(removed);
  // Out of descriptors, the listen sockets close until there is room again (src/accept-guard.ts).
  const guard = new AcceptGuard(redirect ? [listener, redirect] : [listener], log);
  guard.start();
  const limit = readDescriptorLimit();
  const inUse = countOpenDescriptors() ?? 0; // the reserve included
  listener.workerConnections = config.workerConnections === 'auto' ? autoWorkerConnections(limit, inUse, listener.descriptorsPerConnection) : config.workerConnections;
  bindConnections(() => ({ open: listener.connections, limit: listener.workerConnections, accepting: guard.accepting }));
  log.debug({ port, binding: uwsBindingName, workerConnections: listener.workerConnections, descriptors: limit, inUse }, 'worker listening');
  send({ type: 'listening', port, binding: uwsBindingName, workerConnections: listener.workerConnections, descriptors: limit && { ...limit, inUse } });

  let draining = false;
  const drain = async (timeoutMs: number): Promise<void> => {
    if (draining) return;
    draining = true;
    guard.stop();
    redirect?.close();
    await listener.drain(timeoutMs);
    backendSync.stop();
    clientSync.stop();
    httpProxy.close();
    // What this worker counted stays in the primary's totals after it is gone.
    await sendFinalMetrics();
    // Let the last close frames leave before the process goes.
    setTimeout(() => process.exit(0), 50);
  };
  // A reload started a new generation: finish the tunnels (or close them after timeoutMs), then go.
  const retire = async (timeoutMs: number): Promise<void> => {
    unbindWorkerSlot();
    guard.stop();
    redirect?.close();
    const retired = listener.retire(timeoutMs); // no longer listening once this returns
    log.info({ tunnels: listener.tunnelCount, timeoutMs }, 'retiring after a reload');
    await retired;
    await drain(config.drainTimeout);
  };
  // None of these rejects in practice; should one, the worker logs it and still leaves.
  const leaveAnyway = (err: unknown): void => {
    log.error({ err }, 'drain failed: exiting');
    setTimeout(() => process.exit(1), 50);
  };
  process.on('message', (m: PrimaryMessage) => {
    if (m.type === 'drain') drain(m.timeoutMs).catch(leaveAnyway);
    else if (m.type === 'retire') retire(m.timeoutMs).catch(leaveAnyway);
    else if (m.type === 'metrics-request') answerMetricsRequest(m.id).catch((err: unknown) => log.warn({ err }, 'metrics request failed'));
    else if (m.type === 'rebalance-close') {
      const pool = pools.get(m.pool);
      send({ type: 'rebalance-closed', pool: m.pool, backend: m.backend, closed: pool === undefined ? 0 : listener.rebalance(pool, m) });
    }
  });
  // A terminal's Ctrl-C reaches the whole process group: the primary coordinates, workers wait for its word.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  // A terminal hangup too (SIGHUP reloads in the primary; a worker that died of it would be restarted).
  process.on('SIGHUP', () => undefined);
  // The primary is gone: nobody will restart or stop us, so drain and leave.
  process.on('disconnect', () => drain(config.drainTimeout).catch(leaveAnyway));
}

main().catch((err: unknown) => {
  process.stderr.write(`switchyard worker: ${(err as Error).message}\n`);
  process.exit(1);
});
