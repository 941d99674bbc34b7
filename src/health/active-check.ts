// Active health checks (HAProxy's `check`, Envoy's health_checks): every `interval` (plus up to
// `jitter`, so many machines do not check in step) probe each backend over http, tcp or a full
// WebSocket upgrade (over TLS for a wss:// or https:// backend, with its own TLS settings); `fall` failures in a row take it down, `rise` passes bring it back.
// Runs in the primary, never in a worker; with shared state only the holder of a backend's lease
// probes it (`shouldCheck`), the others adopt the verdict it publishes. A probe that could not run
// for want of local descriptors, ports or buffers says nothing of the backend: it is not counted.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Agent, request, type buildConnector } from 'undici';
import type { HealthCheckConfig } from '../config/schema';
import { isLocalResourceError, type LocalResourceError } from '../errors';
import { reportLocalFailure } from '../local-failures';
import { PROXY_V2_LOCAL } from '../proxy-header';
import { BackendConnectError, openBackendSocket } from '../proxy/backend-socket';
import { tlsConnectOptions } from '../proxy/tls-connection';
import { encodeClose } from '../proxy/frame-writer';
import type { Backend, HealthState } from '../upstream/backend';

export interface ProbeResult {
  ok: boolean;
  latencyMs: number;
  /** Why it failed, for the log. */
  detail?: string;
  /** It failed here, not at the backend (EMFILE and the like): neither a pass nor a failure. */
  local?: boolean;
}

/** "200-399" -> [200, 399]. */
function statusBounds(range: string): [number, number] {
  const [lo, hi] = range.split('-').map(Number);
  return [lo, hi ?? lo];
}

const MAX_BODY = 64 * 1024;

/** The node:tls options of a TLS backend, the same as its traffic's (tls-connection.ts). */
function tlsOptions(backend: Backend): ConnectionOptions {
  return tlsConnectOptions(backend.tls!, backend.host);
}

/**
 * The check's connection, as traffic's: a PROXY protocol v2 LOCAL header first when the pool sends
 * the protocol (HAProxy's checks do the same with send-proxy-v2), then TLS for a TLS backend.
 */
function checkSocket(backend: Backend): Socket {
  if (!backend.sendProxyProtocol) return backend.tls === null ? connect({ host: backend.host, port: backend.port }) : tlsConnect({ ...tlsOptions(backend), host: backend.host, port: backend.port });
  const raw = connect({ host: backend.host, port: backend.port });
  raw.write(PROXY_V2_LOCAL);
  return backend.tls === null ? raw : tlsConnect({ ...tlsOptions(backend), socket: raw });
}

/** undici's connector for a check: checkSocket's connection, handed over once connected (TLS: handshake done). */
function checkConnector(backend: Backend): buildConnector.connector {
  return (_options, callback) => {
    const socket = checkSocket(backend);
    const ready = backend.tls === null ? 'connect' : 'secureConnect';
    socket.once(ready, () => callback(null, socket));
    socket.once('error', (err) => callback(err, null));
    return socket;
  };
}

async function probeHttp(backend: Backend, cfg: HealthCheckConfig, userAgent: string): Promise<string | undefined> {
  // A fresh Agent per TLS or PROXY-protocol check, as `reset` below: undici's connector is per dispatcher.
  const own = backend.tls !== null || backend.sendProxyProtocol;
  const dispatcher = own ? new Agent({ connect: checkConnector(backend) }) : undefined;
  try {
    return await probeHttpWith(backend, cfg, userAgent, dispatcher);
  } finally {
    void dispatcher?.close();
  }
}

async function probeHttpWith(backend: Backend, cfg: HealthCheckConfig, userAgent: string, dispatcher: Agent | undefined): Promise<string | undefined> {
  const res = await request(`${backend.tls !== null ? 'https' : 'http'}://${backend.name}${cfg.path}`, {
    dispatcher,
    method: 'GET',
    headers: { 'user-agent': userAgent },
    headersTimeout: cfg.timeout,
    bodyTimeout: cfg.timeout,
    signal: AbortSignal.timeout(cfg.timeout),
    reset: true, // a fresh connection per check: a reused one would hide a backend that stopped accepting
  });
  const [lo, hi] = statusBounds(cfg.expectStatus);
  if (cfg.bodyContains === undefined) {
    await res.body.dump();
  } else {
    let body = '';
    for await (const chunk of res.body) {
      body += (chunk as Buffer).toString('utf8');
      if (body.length > MAX_BODY) break;
    }
    if (res.statusCode >= lo && res.statusCode <= hi && !body.includes(cfg.bodyContains)) return `body lacks ${JSON.stringify(cfg.bodyContains)}`;
  }
  if (res.statusCode < lo || res.statusCode > hi) return `status ${res.statusCode}`;
  return undefined;
}

/** A connect; for a TLS backend, a whole TLS handshake (its certificate checked as for traffic). */
function probeTcp(backend: Backend, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const tls = backend.tls !== null;
    const socket = checkSocket(backend);
    const finish = (detail: string | undefined): void => {
      socket.destroy();
      resolve(detail);
    };
    socket.setTimeout(timeoutMs, () => finish('timeout'));
    socket.once(tls ? 'secureConnect' : 'connect', () => finish(undefined));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(tls && !/^E[A-Z]+$/.test(err.code ?? '') ? `TLS ${err.code ?? ''}: ${err.message}` : (err.code ?? err.message)));
  });
}

async function probeWebSocket(backend: Backend, cfg: HealthCheckConfig, userAgent: string): Promise<string | undefined> {
  const proxyHeader = backend.sendProxyProtocol ? PROXY_V2_LOCAL : undefined;
  const result = await openBackendSocket(backend, cfg.path, [['host', backend.name], ['user-agent', userAgent]], '', cfg.timeout, proxyHeader);
  if (result.kind === 'refused') return `upgrade refused with ${result.head.status}`;
  result.socket.end(encodeClose(1000, 'health check'));
  setTimeout(() => result.socket.destroy(), 1000).unref();
  return undefined;
}

/** One probe of one backend; never throws. The User-Agent tells the backend's operator which balancer checks it. */
export async function probe(backend: Backend, cfg: HealthCheckConfig, userAgent = 'switchyard-health-check'): Promise<ProbeResult> {
  const started = performance.now();
  let detail: string | undefined;
  try {
    if (cfg.type === 'tcp') detail = await probeTcp(backend, cfg.timeout);
    else if (cfg.type === 'http') detail = await probeHttp(backend, cfg, userAgent);
    else detail = await probeWebSocket(backend, cfg, userAgent);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: { code?: string } };
    // A websocket probe's failure carries its errno (or TLS cause) apart from its stable code.
    if (err instanceof BackendConnectError) detail = err.errno ?? err.message;
    else detail = e.name === 'TimeoutError' || e.name === 'AbortError' ? 'timeout' : (e.code ?? e.cause?.code ?? e.message);
  }
  const result: ProbeResult = { ok: detail === undefined, latencyMs: performance.now() - started, detail };
  if (isLocalResourceError(detail)) result.local = true;
  return result;
}

export interface CheckTarget {
  /** pool/host:port */
  key: string;
  backend: Backend;
}

interface TargetState {
  target: CheckTarget;
  health: HealthState;
  passes: number;
  failures: number;
  timer?: NodeJS.Timeout;
}

export interface ActiveCheckerEvents {
  /** A backend went up or down by this checker's probes. */
  change: [key: string, health: HealthState, detail: string | undefined];
  /** Every probe, for latency metrics. */
  checked: [key: string, result: ProbeResult];
}

export interface ActiveCheckerOptions {
  /** False when another machine holds this backend's lease. */
  shouldCheck?: (key: string) => boolean;
  random?: () => number;
  /** Sent with http and websocket probes. */
  userAgent?: string;
}

export class ActiveChecker extends EventEmitter<ActiveCheckerEvents> {
  private readonly states = new Map<string, TargetState>();
  private running = false;
  private readonly shouldCheck: (key: string) => boolean;
  private readonly random: () => number;
  private readonly userAgent: string | undefined;

  constructor(
    private readonly cfg: HealthCheckConfig,
    targets: readonly CheckTarget[],
    options: ActiveCheckerOptions = {},
  ) {
    super();
    this.shouldCheck = options.shouldCheck ?? (() => true);
    this.random = options.random ?? Math.random;
    this.userAgent = options.userAgent;
    // Backends start up (as in HAProxy): a balancer restart must not refuse traffic until checks pass.
    for (const target of targets) this.states.set(target.key, { target, health: 'up', passes: 0, failures: 0 });
  }

  start(): void {
    this.running = true;
    for (const s of this.states.values()) this.schedule(s);
  }

  stop(): void {
    this.running = false;
    for (const s of this.states.values()) clearTimeout(s.timer);
  }

  health(key: string): HealthState | undefined {
    return this.states.get(key)?.health;
  }

  /** Another machine's verdict: start from it, so that taking over the lease does not flip the state. */
  adopt(key: string, health: HealthState): void {
    const s = this.states.get(key);
    if (s === undefined || s.health === health) return;
    s.health = health;
    s.passes = 0;
    s.failures = 0;
  }

  private schedule(s: TargetState): void {
    if (!this.running) return;
    const jitter = this.cfg.jitter ?? Math.floor(this.cfg.interval / 10);
    s.timer = setTimeout(() => void this.run(s), this.cfg.interval + Math.floor(this.random() * jitter));
    s.timer.unref();
  }

  private async run(s: TargetState): Promise<void> {
    if (this.shouldCheck(s.target.key)) {
      const result = await probe(s.target.backend, this.cfg, this.userAgent);
      if (!this.running) return;
      if (result.local) reportLocalFailure(result.detail as LocalResourceError, 'health_check', { backend: s.target.key });
      else {
        this.emit('checked', s.target.key, result);
        this.record(s, result);
      }
    }
    this.schedule(s);
  }

  private record(s: TargetState, result: ProbeResult): void {
    if (result.ok) {
      s.failures = 0;
      s.passes++;
      if (s.health === 'down' && s.passes >= this.cfg.rise) {
        s.health = 'up';
        this.emit('change', s.target.key, 'up', undefined);
      }
    } else {
      s.passes = 0;
      s.failures++;
      if (s.health === 'up' && s.failures >= this.cfg.fall) {
        s.health = 'down';
        this.emit('change', s.target.key, 'down', result.detail);
      }
    }
  }
}
