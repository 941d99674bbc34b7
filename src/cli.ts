// switchyard: flags -> config -> primary.
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';
import { describeAdminWrites } from './admin/admin-token';
import { fullCloseWindow, MIN_CLOSES_PER_SECOND } from './close-spread';
import { fetchStatus, formatRebalance, formatStatus, rebalanceStatus, reload, setAdminState, startRebalance, type AdminTarget } from './admin-client';
import { ConfigError, loadConfig, readAdminTokenFile, resolveAdminToken, type ConfigFlags, type LoadedConfig } from './config/load';
import { formatSize } from './config/units';
import { checkBackendTlsFiles, type BackendTlsInfo } from './config/tls-files';
import { ADMIN_STATES, ALGORITHMS, DEFAULT_ADMIN_PORT, isSrvName, type PoolConfig } from './config/schema';
import { sourcesOf } from './discovery/discovery';
import { checkDnsSources } from './discovery/dns-check';
import { autoWorkerConnections, readDescriptorLimit, TYPICAL_WORKER_DESCRIPTORS, UNKNOWN_LIMIT_CONNECTIONS } from './descriptors';
import { installLastResort } from './last-resort';
import { bindLocalFailureLog } from './local-failures';
import { createLogger } from './log';
import { runPrimary } from './primary/primary';
import { StartupError } from './primary/startup';

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function portNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

const program = new Command('switchyard')
  .description('Clustered WebSocket load balancer on uWebSockets.js')
  .version('0.1.0');

program
  .command('start')
  .description('run the balancer: a primary and one worker per core')
  .option('-c, --config <file>', 'YAML or JSON config file (flags below override it)')
  .option('--host <address>', 'address to listen on (default 0.0.0.0)')
  .option('-p, --port <port>', 'port to listen on (default 8080)', portNumber)
  .option('--tls-cert <file>', 'terminate TLS with this PEM certificate chain (config listen.tls.cert; needs --tls-key)')
  .option('--tls-key <file>', 'the PEM private key for --tls-cert (config listen.tls.key)')
  .option('-b, --backend <url>', 'backend ws://host:port; repeat for more; replaces the file\'s pools with one pool behind route /', collect)
  .addOption(new Option('-a, --algorithm <name>', 'balancing policy for every pool').choices(ALGORITHMS))
  .option('-w, --workers <n>', 'worker processes, or "auto" for one per core (default auto)')
  .option('--drain-timeout <duration>', 'on SIGTERM/SIGINT, how long tunnels get to close after 1001 (default 10s)')
  .option('--idle-timeout <duration>', 'client-side idle timeout for every route (default 120s)')
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
  .option('--access-log', 'a JSON line on stdout per tunnel when it ends and per request (config accessLog)')
  .option('--admin-host <address>', 'admin listener address: /metrics, /status, /healthz, /readyz (default 127.0.0.1)')
  .option('--admin-port <port>', `admin listener port (default ${DEFAULT_ADMIN_PORT}; 0 picks a free one)`, portNumber)
  .option('--admin-token-file <file>', 'file holding the token admin writes need (config admin.tokenFile; or set SWITCHYARD_ADMIN_TOKEN); without one, POST /admin and /reload are refused')
  .option('--no-admin', 'no admin listener')
  .action(async (flags: ConfigFlags) => {
    let config;
    try {
      config = loadConfig(flags);
    } catch (err) {
      if (err instanceof ConfigError) fail(err.message);
      throw err;
    }
    let binding: string;
    try {
      // Load the uWS binding here too, so a missing one fails before any worker is forked.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      binding = (require('./uws') as typeof import('./uws')).uwsBindingName;
    } catch (err) {
      fail(`switchyard: ${(err as Error).message}`);
    }
    const log = createLogger(config.logLevel, { role: 'primary' });
    installLastResort(log);
    bindLocalFailureLog(log);
    log.info({ binding }, 'uWebSockets.js binding loaded');
    try {
      // SIGHUP and `switchyard reload` read the same file with the same flags again.
      await runPrimary(config, log, () => loadConfig(flags));
    } catch (err) {
      if (err instanceof StartupError) fail(`switchyard: ${err.message}`);
      throw err;
    }
    process.exit(0);
  });

program
  .command('check')
  .description('validate a config file; exit 0 when valid, 1 with the offending key when not')
  .requiredOption('-c, --config <file>', 'YAML or JSON config file')
  .action(async (flags: ConfigFlags) => {
    try {
      const config = loadConfig({ config: flags.config });
      const backends = Object.values(config.pools).reduce((n, p) => n + p.backends.length, 0);
      const [fallback, ...bySni] = config.certificates ?? [];
      const cert = fallback ? `; TLS certificate ${fallback.subject}, valid to ${fallback.validTo}` : '';
      const writes = `; admin writes: ${describeAdminWrites(config.admin, config.adminToken)}`;
      const { maxTunnels, upgradesPerSecond, upgradeBurst, scope } = config.clientLimits;
      const perClient =
        maxTunnels === 0 && upgradesPerSecond === 0
          ? 'off'
          : `${maxTunnels === 0 ? 'any number of' : maxTunnels} tunnels, ${upgradesPerSecond === 0 ? 'any rate of upgrades' : `${upgradesPerSecond} upgrades/s (burst ${upgradeBurst})`} per client IP, counted per ${scope}`;
      process.stdout.write(`${flags.config}: ok (${Object.keys(config.pools).length} pools, ${backends} backends, ${config.routes.length} routes${cert}${writes})\n`);
      for (const c of bySni) process.stdout.write(`TLS certificate for ${c.names.join(' ')} (${c.key}): ${c.subject}, valid to ${c.validTo}\n`);
      for (const [name, pool] of Object.entries(config.pools)) process.stdout.write(`pool ${name}: ${describeBalancing(pool)}\n`);
      for (const b of checkBackendTlsFiles(config.pools)) process.stdout.write(`${backendTlsLine(b)}\n`);
      process.stdout.write(`${limitsLine(config)}\n`);
      process.stdout.write(`client limits: ${perClient}\n`);
      process.stdout.write(`${listenerLine(config)}\n`);
      process.stdout.write(`${closesLine(config)}\n`);
      for (const line of await checkDnsSources(config.pools)) process.stdout.write(`${line}\n`);
    } catch (err) {
      if (err instanceof ConfigError) fail(err.message);
      throw err;
    }
  });

/** Where the public listener is, TLS or plain, and who must send it a PROXY protocol header. */
function listenerLine(config: LoadedConfig): string {
  const { host, port, tls, proxyProtocol } = config.listen;
  const versions = proxyProtocol === 'v2' ? `v2${tls ? '' : ' (read by uWS itself on the current build)'}` : 'v1 and v2';
  const proxy =
    proxyProtocol !== false ? `PROXY protocol ${versions} from ${config.trustedProxies.join(', ')} (required of them, refused from others)` : 'PROXY protocol off (a PROXY header is refused)';
  return `listener: ${host}:${port}, ${tls ? 'TLS' : 'plain'}; ${proxy}`;
}

/** A TLS backend's checked settings: whether and against what its certificate is verified, and the client certificate it is shown. */
function backendTlsLine(b: BackendTlsInfo): string {
  const verify = b.verify ? `certificate verified against ${b.ca} for ${b.serverName}` : `certificate NOT verified (verify: false), SNI ${b.serverName}`;
  return `backend ${b.url} (pool ${b.pool}): TLS, ${verify}; ${b.clientCert ? `client certificate ${b.clientCert}` : 'no client certificate'}`;
}

/** "hash on path:2, balanceFactor 1.25, slowStart 30s": how a pool picks its backends, for `check`. */
function describeBalancing(pool: PoolConfig): string {
  const parts = [pool.algorithm === 'hash' ? `hash on ${pool.hashKey}` : pool.algorithm];
  if (pool.balanceFactor > 0) parts.push(`balanceFactor ${pool.balanceFactor}`);
  if (pool.slowStart > 0) parts.push(`slowStart ${pool.slowStart / 1000}s`);
  for (const d of sourcesOf(pool)) {
    const what = isSrvName(d.dns) ? `SRV ${d.dns}` : `A/AAAA ${d.dns} port ${d.port}`;
    parts.push(
      `backends found by DNS (${what}, asking ${d.resolver?.join(' ') ?? 'the system\'s resolver'}, again at the TTL within ${d.minTtl / 1000}s..${d.maxTtl / 1000}s; one that leaves drains up to ${d.drainTimeout / 1000}s)`,
    );
  }
  if (pool.sendProxyProtocol === 'v2') parts.push('PROXY protocol v2 to its backends (tunnels: the client address; health checks: LOCAL)');
  if (pool.maxUpgradesPerSecond > 0) {
    parts.push(`maxUpgradesPerSecond ${pool.maxUpgradesPerSecond} per backend from this machine (queue up to ${pool.upgradeQueueTimeout / 1000}s, then 503 with Retry-After)`);
  }
  const r = pool.rebalance;
  if (r !== undefined) parts.push(`rebalance${r.auto ? '' : ' on command'} above maxSkew ${r.maxSkew} at ${r.closesPerSecond} closes/s for the fleet, tunnels older than ${r.minTunnelAge / 1000}s`);
  return parts.join(', ');
}

/** How the balancer's own closes of many tunnels (drain, end of retireTimeout) are spread, for `check`. */
function closesLine(config: LoadedConfig): string {
  const window = fullCloseWindow(config.closeSpread, config.drainTimeout);
  const bound = window < config.closeSpread ? ` (closeSpread ${config.closeSpread / 1000}s, bounded by drainTimeout ${config.drainTimeout / 1000}s less 2s for the last close handshakes)` : '';
  return window === 0
    ? `closes on drain and at the end of retireTimeout: all at once${config.closeSpread > 0 ? bound : ' (closeSpread 0)'}`
    : `closes on drain and at the end of retireTimeout: spread over ${window / 1000}s${bound}, at least ${MIN_CLOSES_PER_SECOND}/s per worker`;
}

/** What bounds a worker: its connections (with this shell's descriptor limit) and the memory messages may take. */
function limitsLine(config: LoadedConfig): string {
  const limit = readDescriptorLimit();
  const connections =
    config.workerConnections !== 'auto'
      ? `workerConnections ${config.workerConnections}`
      : limit === undefined
        ? `workerConnections auto (${UNKNOWN_LIMIT_CONNECTIONS}: descriptor limit unknown)`
        : `workerConnections auto (about ${autoWorkerConnections(limit, TYPICAL_WORKER_DESCRIPTORS)} per worker at this shell's descriptor limit of ${limit.hard})`;
  const payloads = [...new Set(config.routes.map((r) => r.maxPayload))].map(formatSize).join(', ');
  return `limits: ${connections}; maxPayload ${payloads}; messageAssemblyLimit ${formatSize(config.messageAssemblyLimit)} per worker`;
}

interface AdminFlags {
  config?: string;
  admin?: string;
  adminSocket?: string;
  tokenFile?: string;
}

/**
 * Where the admin listener is and the token writes carry. Where: --admin-socket, else --admin, else
 * the config's admin section (admin.socket when it has one), else 127.0.0.1:8405. The token:
 * --token-file, else the config's (admin.token, admin.tokenFile, SWITCHYARD_ADMIN_TOKEN), else
 * SWITCHYARD_ADMIN_TOKEN: the same the balancer reads.
 */
function adminTarget(flags: AdminFlags): AdminTarget {
  try {
    let target: AdminTarget = { address: `127.0.0.1:${DEFAULT_ADMIN_PORT}` };
    let token: string | undefined;
    if (flags.config) {
      const config = loadConfig({ config: flags.config });
      if (!config.admin.enabled) fail(`config error: admin.enabled: false in ${flags.config}; this command needs the admin listener`);
      const host = config.admin.host === '0.0.0.0' ? '127.0.0.1' : config.admin.host === '::' ? '::1' : config.admin.host;
      target = { address: `${host.includes(':') ? `[${host}]` : host}:${config.admin.port}`, socket: config.admin.socket };
      token = config.adminToken?.value;
    } else {
      token = resolveAdminToken({}, process.env)?.value;
    }
    if (flags.admin) target = { address: flags.admin };
    if (flags.adminSocket) target = { ...target, socket: resolve(flags.adminSocket) };
    if (flags.tokenFile) token = readAdminTokenFile(flags.tokenFile, '--token-file');
    return { ...target, token };
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

/** The flags of the admin listener's clients; one set serves every command (status reads, so it sends no token). */
const adminOptions = (command: Command): Command =>
  command
    .option('-c, --config <file>', 'config file of the running balancer (its admin address or socket, and token)')
    .option('--admin <host:port>', 'admin endpoint address')
    .option('--admin-socket <path>', 'admin.socket of the running balancer')
    .option('--token-file <file>', 'file holding the admin token for writes (else the config\'s, else SWITCHYARD_ADMIN_TOKEN)');

adminOptions(program.command('status'))
  .description("print each pool's backends: health, active check, ejection, admin state, tunnels on this machine and fleet-wide")
  .option('--json', 'print the raw report')
  .action(async (flags: AdminFlags & { json?: boolean }) => {
    try {
      const report = await fetchStatus(adminTarget(flags));
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    } catch (err) {
      fail(`switchyard: ${(err as Error).message}`);
    }
  });

adminOptions(program.command('admin'))
  .description('set a backend\'s admin state fleet-wide: drain (keeps its tunnels, gets no new ones), maintenance, ready')
  .argument('<pool>', 'pool name')
  .argument('<backend>', 'backend host:port')
  .addArgument(new Argument('<state>', 'admin state').choices(ADMIN_STATES))
  .action(async (pool: string, backend: string, state: string, flags: AdminFlags) => {
    try {
      await setAdminState(adminTarget(flags), pool, backend, state);
      process.stdout.write(`${pool}/${backend}: ${state}\n`);
    } catch (err) {
      fail(`switchyard: ${(err as Error).message}`);
    }
  });

adminOptions(program.command('reload'))
  .description('reload the config of a running balancer (as SIGHUP): new workers start with it, the old ones keep their tunnels until they end or retireTimeout')
  .action(async (flags: AdminFlags) => {
    try {
      const result = await reload(adminTarget(flags));
      const closing = result.closingNow > 0 ? `; ${result.closingNow} workers of older generations closing their tunnels now (maxRetiringGenerations)` : '';
      process.stdout.write(`reloaded: generation ${result.generation}, ${result.workers} workers; ${result.retiring} old workers finishing their tunnels${closing}\n`);
    } catch (err) {
      fail(`switchyard: reload refused: ${(err as Error).message}`);
    }
  });

adminOptions(program.command('rebalance'))
  .description('move tunnels off the backends above the pool\'s maxSkew (1012, clients reconnect to the emptier ones) at its closesPerSecond, on every machine, until the pool is within the skew; waits for the end and prints it (exit 1 when it stalled or reached its timeout)')
  .argument('<pool>', 'pool name')
  .option('--timeout <duration>', 'end it by then whatever the skew (default 10m)')
  .option('--no-wait', 'start it and return')
  .action(async (pool: string, flags: AdminFlags & { timeout?: string; wait: boolean }) => {
    const target = adminTarget(flags);
    try {
      let r = await startRebalance(target, pool, flags.timeout);
      process.stdout.write(`${formatRebalance(pool, r)}\n`);
      if (!flags.wait) return;
      while (r.state === 'running') {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        r = await rebalanceStatus(target, pool);
      }
      process.stdout.write(`${formatRebalance(pool, r)}\n`);
      if (r.state !== 'balanced') process.exitCode = 1;
    } catch (err) {
      fail(`switchyard: rebalance refused: ${(err as Error).message}`);
    }
  });

program.parseAsync(process.argv).catch((err: unknown) => fail(`switchyard: ${(err as Error).stack ?? String(err)}`));
