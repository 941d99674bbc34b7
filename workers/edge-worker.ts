// A worker process: composition only. Builds the listener from the config the primary sent,
// listens on the shared port (uWS sets SO_REUSEPORT, so the kernel spreads connections), and
// drains on the primary's word.
import { AccessLog } from '../src/access-log';
import { ClientLimits } from '../src/client-limits';
import { ClientLimitsSync } from '../src/client-limits-sync';
import { validateConfig } from '../src/config/load';
import { Listener } from '../src/listener';
import { createLogger } from '../src/log';
import { CONFIG_ENV, WORKER_SLOT_ENV, type PrimaryMessage, type WorkerMessage } from '../src/primary/ipc';
import { TrustedProxies } from '../src/proxy/forwarded-headers';
import { HttpsRedirect } from '../src/https-redirect';
import { HttpProxy } from '../src/proxy/http-proxy';
import { RouteTable } from '../src/route';
import { DEFAULT_TIMINGS } from '../src/state/shared-state';
import { BackendSync } from '../src/upstream/backend-sync';
import { answerMetricsRequest, sendFinalMetrics } from '../src/stats/cluster-metrics';
import { bindWorker, unbindWorkerSlot } from '../src/stats/metrics';
import { Pool } from '../src/upstream/pool';
import { uwsBindingName } from '../src/uws';

function send(message: WorkerMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const config = validateConfig(JSON.parse(process.env[CONFIG_ENV] ?? 'null'));
  const log = createLogger(config.logLevel, { role: 'worker' });
  const pools = new Map(Object.entries(config.pools).map(([name, pc]) => [name, new Pool(name, pc)]));
  const trusted = new TrustedProxies(config.trustedProxies);
  const accessLog = config.accessLog ? new AccessLog() : null;
  const httpProxy = new HttpProxy(trusted, log, accessLog);
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
  log.debug({ port, binding: uwsBindingName }, 'worker listening');
  send({ type: 'listening', port, binding: uwsBindingName });

  let draining = false;
  const drain = async (timeoutMs: number): Promise<void> => {
    if (draining) return;
    draining = true;
    redirect?.close();
    await listener.drain(timeoutMs);
    send({ type: 'drained', tunnelsLeft: listener.tunnelCount });
    await httpProxy.close().catch(() => undefined);
    // What this worker counted stays in the primary's totals after it is gone.
    await sendFinalMetrics();
    // Let the last close frames leave before the process goes.
    setTimeout(() => process.exit(0), 50);
  };
  // A reload started a new generation: finish the tunnels (or close them after timeoutMs), then go.
  const retire = async (timeoutMs: number): Promise<void> => {
    unbindWorkerSlot();
    redirect?.close();
    const retired = listener.retire(timeoutMs); // no longer listening once this returns
    log.info({ tunnels: listener.tunnelCount, timeoutMs }, 'retiring after a reload');
    await retired;
    await drain(config.drainTimeout);
  };
  process.on('message', (m: PrimaryMessage) => {
    if (m.type === 'drain') void drain(m.timeoutMs);
    else if (m.type === 'retire') void retire(m.timeoutMs);
    else if (m.type === 'metrics-request') void answerMetricsRequest(m.id);
  });
  // A terminal's Ctrl-C reaches the whole process group: the primary coordinates, workers wait for its word.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  // A terminal hangup too (SIGHUP reloads in the primary; a worker that died of it would be restarted).
  process.on('SIGHUP', () => undefined);
  // The primary is gone: nobody will restart or stop us, so drain and leave.
  process.on('disconnect', () => void drain(config.drainTimeout));
}

main().catch((err: unknown) => {
  process.stderr.write(`switchyard worker: ${(err as Error).message}\n`);
  process.exit(1);
});
