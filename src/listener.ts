// The public listener: the uWS app, its upgrade and HTTP handlers. Nothing else touches its uWS
// request/response objects (https-redirect.ts has its own app for the plain port of a TLS listener).
// Data path: listener -> route -> pool -> load balancer -> tunnel.
import { isIP } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { accessEntry, type AccessLog } from './access-log';
import type { ClientLimits, ClientRefusal } from './client-limits';
import type { LoadedConfig } from './config/load';
import type { RouteConfig, TlsConfig } from './config/schema';
import { OutcomeLabels, Outcomes, ProxyProtocolRefusals, type Outcome } from './errors';
import { proxiedClient } from './proxy-protocol';
import { ProxyProtocolFront } from './proxy-protocol-front';
import type { Logger } from './log';
import { respondOutcome } from './respond';
import { serveByName } from './sni';
import { countHttpAnswer, counters, keptAliveAnswers } from './stats/counters';
import { observeUpgrade } from './stats/metrics';
import { header, headerCount, type ClientRequest } from './client-request';
import { clientIp, formatPeerAddress, forwardedHeaders, recoverBytes, type TrustedProxies } from './proxy/forwarded-headers';
import type { Refused } from './proxy/backend-socket';
import { asSent } from './proxy/http-head';
import { isValidClientKey } from './proxy/handshake';
import type { HttpProxy } from './proxy/http-proxy';
import { idleSweepInterval, sweepIdleBackends, Tunnel, type ClientData, type TunnelOwner } from './proxy/tunnel';
import { openBackend, type TunnelEnds } from './proxy/upgrade';
import type { Backend } from './upstream/backend';
import type { RouteTable } from './route';
import type { Acceptor } from './accept-guard';
import { closeTimes, closeWindow, spreadCloses } from './close-spread';
import { closeListenSocket, forEachHeader, httpIdleCloseMs, oldBuild, listenSocketPort, recordOpened, upgradeLater, uws, type HttpRequest, type HttpResponse, type ListenSocket, type SocketContext, type SslApp, type TemplatedApp, type WebSocketBehavior, type AppOptions } from './uws';

export interface ListenerDeps {
  config: LoadedConfig;
  routes: RouteTable;
  trusted: TrustedProxies;
  httpProxy: HttpProxy;
  log: Logger;
  /** null or absent when the access log is off. */
  accessLog?: AccessLog | null;
  /** Per-client limits (absent: none). */
  clientLimits?: ClientLimits;
}

/** At most one warning line this often about clients over their limits (the rest are counted in it). */
const CLIENT_LIMIT_LOG_MS = 10_000;

// The header visitor is one function for all requests, not a closure per request.
let capturing: [string, string][] = [];
function captureHeader(k: string, v: string): void {
  capturing.push([k, v]);
}

/** Reads what outlives the handler from uWS's stack-allocated request (valid only until return). */
function captureRequest(req: HttpRequest, res: HttpResponse, secure: boolean): ClientRequest {
  const headers: [string, string][] = (capturing = []);
  forEachHeader(req, captureHeader);
  const query = req.getQuery();
  const request: ClientRequest = {
    method: req.getCaseSensitiveMethod(),
    url: query ? `${req.getUrl()}?${query}` : req.getUrl(),
    peerIp: formatPeerAddress(new Uint8Array(res.getRemoteAddress())),
    headers,
    secure,
  };
  // uWS decoded something that was not UTF-8 (rare; includes() of a two-byte character in a
  // one-byte string is answered at once): get the bytes back where uWS still has them.
  let replaced = request.url.includes('\ufffd');
  for (let i = 0; i < headers.length && !replaced; i++) replaced = headers[i][1].includes('\ufffd');
  if (replaced) recoverBytes(request, (name) => req.getHeader(name));
  return request;
}

/** What makes a request unfit to forward whatever its route: two Host lines (as NGINX), or bytes uWS altered. */
function defectOf(request: ClientRequest): Outcome | undefined {
  if (request.altered === true) return Outcomes.alteredBytes;
  if (headerCount(request, 'host') > 1) return Outcomes.duplicateHost;
  return undefined;
}

/**
 * RFC 6455 4.2.1: `Upgrade: websocket` and a `Connection` header with the `upgrade` token. A bare
 * `Connection: close` is also what makes uWS v20 close the socket right after its 101 (src/uws.ts).
 */
function isUpgradeHandshake(request: ClientRequest): boolean {
  if (header(request, 'upgrade').toLowerCase() !== 'websocket') return false;
  const connection = header(request, 'connection').toLowerCase();
  return connection === 'upgrade' || connection.split(',').some((t) => t.trim() === 'upgrade');
}

/**
 * The backend said no to the upgrade: the client gets its status, body and the headers that explain
 * it, their bytes as the backend sent them (latin1 text until asSent). A 204 or 304 goes without a
 * body or Content-Length, so a kept-alive client reads the next answer where it begins.
 */
function passRefusal(res: HttpResponse, { head, body }: Refused): void {
  const passOn: [string, string | Buffer][] = [];
  for (const name of ['www-authenticate', 'retry-after', 'location', 'content-type'] as const) {
    const v = head.headers.get(name);
    if (v !== undefined) passOn.push([name, asSent(v)]);
  }
  for (const c of head.setCookie) passOn.push(['set-cookie', asSent(c)]);
  const bodiless = head.status === 204 || head.status === 304;
  res.cork(() => {
    res.writeStatus(asSent(`${head.status} ${head.reason}`.trimEnd()));
    for (const [k, v] of passOn) res.writeHeader(k, v);
    if (bodiless) res.endWithoutBody();
    else res.end(body);
  });
}

/** uWS's options for one certificate/key pair of listen.tls. */
function tlsOptions(tls: TlsConfig): (pair: { cert: string; key: string; passphrase?: string }) => AppOptions {
  return (pair) => ({
    cert_file_name: pair.cert,
    key_file_name: pair.key,
    passphrase: pair.passphrase,
    ssl_ciphers: tls.ciphers,
    // SSL_MODE_RELEASE_BUFFERS, as NGINX sets it: an idle tunnel holds no TLS record buffers.
    ssl_prefer_low_memory_usage: true,
  });
}

/** uWS's TLS app with the default certificate; it reads the PEM files now. */
function sslApp(tls: TlsConfig): SslApp {
  try {
    return uws.SSLApp(tlsOptions(tls)(tls));
  } catch {
    throw new Error(`listen.tls: uWS could not load ${tls.cert} and ${tls.key}` + (tls.ciphers ? ' with the ciphers in listen.tls.ciphers' : ''));
  }
}

/** A tunnel's drain: 1001 to both sides (a no-op for one that has closed meanwhile). */
function shutDown(tunnel: Tunnel): void {
  tunnel.shutdown();
}

/** After this long without a plain answer, uWS has closed every kept-alive connection (src/uws.ts). */
const KEPT_ALIVE_MS = httpIdleCloseMs + 3000;
/** After a retired worker stops listening: how long a connection it had just accepted may take to send its request. */
const ACCEPTED_GRACE_MS = 2000;

/** Seconds for uWS: 0 disables; otherwise at least 8, uWS's timer granularity being 4 s. */
function idleSeconds(ms: number): number {
  return ms === 0 ? 0 : Math.max(8, Math.round(ms / 1000));
}

export class Listener implements TunnelOwner, Acceptor {
  private readonly app: TemplatedApp;
  private listenSocket: ListenSocket | null = null;
  private listenOn: { host: string; port: number } | null = null;
  private readonly tunnels = new Set<Tunnel>();
  /** Upgrades between the request and the tunnel (or their refusal). */
  private opening = 0;
  /**
   * Beyond this many client connections (tunnels, upgrades being opened, plain
   * requests in flight), new ones get 503 and `Connection: close`. Set by the worker once it knows
   * what it holds at start (src/descriptors.ts).
   */
  workerConnections = Infinity;
  private draining = false;
  /** Retired by a reload: answers close the client's connection (see retire()). */
  private retiring = false;
  private onIdle: (() => void) | null = null;
  private clientLimitLoggedAt = -Infinity;
  private clientsRefusedUnlogged = 0;

  /** TLS is terminated here: X-Forwarded-Proto says https. */
  private readonly secure: boolean;
  /** listen.proxyProtocol: the front that reads PROXY headers on the public port; uWS listens on an internal one. */
  private readonly front: ProxyProtocolFront | null;
  /** listen.proxyProtocol v2 where uWS parses the header itself (a plain listener, the current build): no front. */
  private readonly nativeProxyProtocol: boolean;
  private innerPort = 0;

  /** Throws when listen.tls's files cannot be loaded (the primary checked them, but they may have changed since). */
  constructor(private readonly deps: ListenerDeps) {
    const tls = deps.config.listen.tls;
    this.secure = tls !== undefined;
    const proxyProtocol = deps.config.listen.proxyProtocol;
    // The old build answers 505 when the v2 header comes in a read of its own, as HAProxy sends it.
    this.nativeProxyProtocol = proxyProtocol === 'v2' && tls === undefined && !oldBuild;
    this.front = proxyProtocol !== false && !this.nativeProxyProtocol ? new ProxyProtocolFront(deps.trusted, proxyProtocol === true, () => this.innerPort, deps.log) : null;
    const secureApp = tls && sslApp(tls);
    this.app = secureApp || uws.App();
    this.addRoutes();
    // Certificates chosen by SNI: uWS keeps routes per name, so each gets the same ones.
    if (tls && secureApp) serveByName(secureApp, tls, tlsOptions(tls), () => this.addRoutes());
  }

  /** The upgrade and HTTP handlers, on the app's current routes (the default ones, or an SNI name's). */
  private addRoutes(): void {
    const deps = this.deps;
    // One ws() behaviour per distinct route path: uWS fixes client-side settings per URL pattern.
    const seen = new Set<string>();
    const byPath = [...deps.config.routes].sort((a, b) => b.path.length - a.path.length);
    for (const route of byPath) {
      const path = route.path.length > 1 ? route.path.replace(/\/+$/, '') : '/';
      if (seen.has(path)) continue;
      seen.add(path);
      const behavior = this.behavior(route);
      if (path === '/') this.app.ws('/*', behavior);
      else this.app.ws(path, behavior).ws(`${path}/*`, behavior);
    }
    if (!seen.has('/')) this.app.ws('/*', this.behavior(deps.config.routes[0])); // 404s for unrouted upgrades
    this.app.any('/*', (res, req) => this.onHttpRequest(res, req));
  }

  private behavior(route: RouteConfig): WebSocketBehavior<ClientData> {
    return {
      // uWS drops a connection whose message exceeds maxPayloadLength without a close frame (the client
      // sees 1006). With headroom, a message up to twice the limit (up to 1 MiB over it) reaches the
      // tunnel, which closes both sides with a proper 1009; only a grossly oversized one is cut by uWS.
      // uWS holds a message whole until its last byte: this is what one connection can make it hold.
      maxPayloadLength: route.maxPayload + Math.min(route.maxPayload, 1024 * 1024),
      idleTimeout: idleSeconds(route.idleTimeout),
      sendPingsAutomatically: true,
      compression: route.compression ? uws.SHARED_COMPRESSOR : uws.DISABLED,
      // We stop reading the backend at clientBufferLimit; one more read and one more whole
      // message may still arrive, so uWS must never drop below that.
      maxBackpressure: route.clientBufferLimit + route.maxPayload + 128 * 1024,
      closeOnBackpressureLimit: false,
      upgrade: (res, req, context) => this.onUpgrade(res, req, context),
      open: recordOpened, // the tunnel attaches after upgradeLater() returns (see src/uws.ts)
      message: (ws, message, isBinary) => ws.getUserData().tunnel.fromClient(message, isBinary),
      drain: (ws) => ws.getUserData().tunnel.onClientDrain(),
      close: (ws, code, message) => ws.getUserData().tunnel.onClientClose(code, message),
    };
  }

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: SocketContext): void {
    const request = captureRequest(req, res, this.secure);
    if (!this.admitConnection(res, request)) return;
    const defect = defectOf(request);
    if (defect !== undefined) return this.reject(res, request, defect);
    const key = header(request, 'sec-websocket-key');
    const protocols = header(request, 'sec-websocket-protocol');
    const extensions = header(request, 'sec-websocket-extensions');
    if (!isValidClientKey(key) || request.method !== 'GET' || !isUpgradeHandshake(request)) return this.reject(res, request, Outcomes.badRequest);
    if (header(request, 'sec-websocket-version') !== '13') return this.reject(res, request, Outcomes.badRequest, [['sec-websocket-version', '13']]);
    const route = this.deps.routes.match(header(request, 'host'), request.url);
    if (route === undefined) return this.reject(res, request, Outcomes.noRoute);
    if (route.config.mode === 'http') return this.reject(res, request, Outcomes.notWebSocket);
    if (this.draining) return this.reject(res, request, Outcomes.draining);
    if (this.connections >= this.workerConnections) return this.reject(res, request, Outcomes.workerFull);

    const startedAt = performance.now();
    const pool = route.pool.name;
    const { log, trusted, clientLimits } = this.deps;
    const ip = clientIp(request, trusted);
    const refusal = clientLimits === undefined ? null : clientLimits.admit(ip, startedAt);
    if (refusal !== null) return this.refuseClient(res, request, ip, refusal, startedAt, pool);
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    this.opening++;
    const ends = route.pool.sendsProxyProtocol ? this.tunnelEnds(ip) : undefined;
    openBackend(route.pool, route.pool.keyOf(request, ip), request.url, forwardedHeaders(request, trusted), protocols, log, ends).then(
      (result) => {
        this.opening--;
        if (result.kind !== 'upgraded' || aborted || this.draining) clientLimits?.release(ip);
        if (result.kind === 'failed') {
          if (!aborted) this.reject(res, request, result.outcome, result.retryAfter === undefined ? [] : [['retry-after', String(result.retryAfter)]], startedAt, pool);
          else this.logAccess(request, 0, OutcomeLabels.clientGone, startedAt, pool);
          return;
        }
        if (result.kind === 'refused') {
          counters.upgrades[Outcomes.backendRefused.label]++;
          if (!aborted) passRefusal(res, result.refused);
          this.logAccess(request, aborted ? 0 : result.refused.head.status, Outcomes.backendRefused.label, startedAt, pool, result.backend.name);
          return;
        }
        const { backend, upgraded } = result;
        if (aborted || this.draining) {
          backend.active--;
          upgraded.socket.destroy();
          if (!aborted) this.reject(res, request, Outcomes.draining, [], startedAt, pool);
          else this.logAccess(request, 0, OutcomeLabels.clientGone, startedAt, pool, backend.name);
          return;
        }
        counters.upgrades.ok++; // OutcomeLabels.ok
        const tunnel = new Tunnel(upgraded.socket, backend, route.config, this, upgraded.leftover);
        tunnel.clientIp = ip;
        if (this.deps.accessLog) tunnel.access = { ...accessEntry(request, ip, startedAt), pool };
        this.tunnels.add(tunnel);
        if (!tunnel.attach(upgradeLater<ClientData>(res, { tunnel }, key, upgraded.protocol, extensions, context))) {
          log.warn({ backend: backend.name, peer: request.peerIp }, 'client connection closed during its upgrade (uWS; see docs/design.md "uWebSockets.js binding")');
        }
        observeUpgrade(route.pool.name, (performance.now() - startedAt) / 1000);
      },
      (err: unknown) => {
        this.opening--;
        clientLimits?.release(ip);
        log.error({ err }, 'upgrade failed unexpectedly');
        if (!aborted) this.reject(res, request, Outcomes.backendUnreachable, [], startedAt, pool);
      },
    );
  }

  /** For a PROXY protocol header to a backend: the client, and the listener's address (0.0.0.0 for a host name). */
  private tunnelEnds(client: string): TunnelEnds {
    const { host, port } = this.deps.config.listen;
    return { client, listenHost: isIP(host) === 0 ? '0.0.0.0' : host, listenPort: port };
  }

  private onHttpRequest(res: HttpResponse, req: HttpRequest): void {
    const request = captureRequest(req, res, this.secure);
    if (!this.admitConnection(res, request)) return;
    const defect = defectOf(request);
    if (defect !== undefined) return this.reject(res, request, defect);
    if (header(request, 'upgrade') !== '') {
      // An upgrade uWS did not route to a ws() handler: its key is missing or malformed.
      return this.reject(res, request, Outcomes.badRequest);
    }
    const route = this.deps.routes.match(header(request, 'host'), request.url);
    if (route === undefined) return this.reject(res, request, Outcomes.noRoute);
    if (route.config.mode === 'websocket') return this.reject(res, request, Outcomes.upgradeRequired, [['upgrade', 'websocket'], ['connection', 'Upgrade']]);
    if (this.draining) return this.reject(res, request, Outcomes.draining);
    if (this.connections >= this.workerConnections) return this.reject(res, request, Outcomes.workerFull);
    this.deps.httpProxy.handle(res, request, route.pool);
  }

  /**
   * listen.proxyProtocol: the request's peerIp becomes the client address its connection's PROXY
   * header carried, which uWS parsed (v2, native) or the front read (src/proxy-protocol-front.ts).
   * Without the key, uWS still parses a v2 header from any peer: such a connection is refused.
   * False when the connection was closed.
   */
  private admitConnection(res: HttpResponse, request: ClientRequest): boolean {
    const raw = res.getProxiedRemoteAddress();
    let refusal: Outcome;
    if (this.front === null) {
      if (!this.nativeProxyProtocol) {
        if (raw.byteLength === 0) return true;
        refusal = ProxyProtocolRefusals.notConfigured;
      } else {
        const client = proxiedClient(request.peerIp, raw.byteLength === 0 ? '' : formatPeerAddress(new Uint8Array(raw)), this.deps.trusted);
        if (typeof client === 'string') {
          request.peerIp = client;
          return true;
        }
        refusal = client;
      }
    } else {
      const client = this.front.clientOf(request.peerIp);
      if (client !== undefined && raw.byteLength === 0) {
        request.peerIp = client;
        return true;
      }
      // A second header after the one the front took, or a connection that bypassed the front.
      refusal = client === undefined ? ProxyProtocolRefusals.notFromFront : ProxyProtocolRefusals.badHeader;
    }
    counters.proxyProtocolRefused[refusal.label]++;
    this.deps.log.debug({ code: refusal.code, peer: request.peerIp }, refusal.message);
    res.close();
    return false;
  }

  /** Every refused upgrade or request: its status, a debug line, an access-log line and a count by label. */
  private reject(res: HttpResponse, request: ClientRequest, outcome: Outcome, headers: readonly (readonly [string, string])[] = [], startedAt?: number, pool?: string): void {
    if (header(request, 'upgrade') !== '') counters.upgrades[outcome.label]++;
    else countHttpAnswer(outcome);
    this.deps.log.debug({ code: outcome.code, status: outcome.status, method: request.method, url: request.url, peer: request.peerIp }, outcome.message);
    this.logAccess(request, outcome.status, outcome.label, startedAt, pool);
    respondOutcome(res, outcome, headers, this.retiring);
  }

  /** An upgrade over its client IP's limit: 429 and Retry-After; a warning now and then, counting the others. */
  private refuseClient(res: HttpResponse, request: ClientRequest, ip: string, refusal: ClientRefusal, now: number, pool: string): void {
    this.clientsRefusedUnlogged++;
    if (now - this.clientLimitLoggedAt >= CLIENT_LIMIT_LOG_MS) {
      this.deps.log.warn({ client: ip, outcome: refusal.outcome.label, refused: this.clientsRefusedUnlogged }, `${refusal.outcome.message}: 429 (refused: upgrades refused by client limits since the last such line)`);
      this.clientLimitLoggedAt = now;
      this.clientsRefusedUnlogged = 0;
    }
    this.reject(res, request, refusal.outcome, [['retry-after', String(refusal.retryAfter)]], now, pool);
  }

  /** The access-log line of an upgrade or request that got no tunnel; `status` 0: the client left first. */
  private logAccess(request: ClientRequest, status: number, outcome: string, startedAt = performance.now(), pool?: string, backend?: string): void {
    const accessLog = this.deps.accessLog;
    if (!accessLog) return;
    accessLog.request(accessEntry(request, clientIp(request, this.deps.trusted), startedAt), header(request, 'upgrade') !== '' ? 'upgrade' : 'http', status, outcome, pool, backend);
  }

  onTunnelClosed(tunnel: Tunnel): void {
    if (tunnel.access !== null) this.deps.accessLog?.tunnel(tunnel.access, tunnel.backend.name, tunnel.closeSide, tunnel.firstCloseCode, tunnel);
    tunnel.backend.active--;
    this.deps.clientLimits?.release(tunnel.clientIp);
    this.tunnels.delete(tunnel);
    if (this.tunnels.size === 0) this.onIdle?.();
  }

  /** Descriptors one client connection holds in this worker: two, four behind the PROXY protocol front (both ends of the inner connection). */
  get descriptorsPerConnection(): number {
    return this.front === null ? 2 : 4;
  }

  /** Ends the tunnels to these backends, which left their pool (DNS discovery, after its drainTimeout). */
  closeTunnelsTo(backends: readonly Backend[]): void {
    const gone = new Set(backends);
    for (const t of this.tunnels) if (gone.has(t.backend)) t.removeBackend();
  }

  get tunnelCount(): number {
    return this.tunnels.size;
  }

  /** Client connections counted against workerConnections. */
  get connections(): number {
    return this.opening + this.tunnels.size + this.deps.httpProxy.requestsInFlight;
  }

  async listen(host: string, port: number): Promise<number> {
    const front = this.front;
    const bound = await this.listenApp(front === null ? host : '127.0.0.1', front === null ? port : 0);
    if (front !== null) this.innerPort = bound;
    const publicPort = front === null ? bound : await front.listen(host, port);
    this.listenOn = { host, port: publicPort };
    this.startIdleSweep();
    return publicPort;
  }

  /** The uWS app listens: on the public port, or behind the front on an internal loopback one. */
  private listenApp(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (socket) => {
        if (!socket) return reject(new Error(`cannot listen on ${host}:${port}`));
        this.listenSocket = socket;
        resolve(listenSocketPort(socket));
      });
    });
  }

  /** The accept guard: out of descriptors, stop listening (src/accept-guard.ts). */
  pauseAccepting(): void {
    this.stopAccepting();
  }

  /** The accept guard: descriptors are free again. Never while draining or retired. */
  resumeAccepting(): Promise<boolean> {
    const on = this.listenOn;
    if (this.draining || this.retiring || on === null) return Promise.resolve(false);
    if (this.listenSocket !== null) return Promise.resolve(true);
    const front = this.front;
    if (front !== null) {
      const again = async (): Promise<boolean> => {
        this.innerPort = await this.listenApp('127.0.0.1', 0);
        await front.listen(on.host, on.port);
        return true;
      };
      return again().catch(() => false);
    }
    return new Promise((resolve) => {
      this.app.listen(on.host, on.port, (socket) => {
        if (socket) this.listenSocket = socket;
        resolve(socket !== false);
      });
    });
  }

  private startIdleSweep(): void {
    const timeouts = this.deps.config.routes.map((r) => r.backendIdleTimeout).filter((t) => t > 0);
    if (timeouts.length === 0) return;
    setInterval(sweepIdleBackends, idleSweepInterval(Math.min(...timeouts)), this.tunnels).unref();
  }

  /**
   * After a reload: stop accepting; tunnels and requests in flight go on, and plain responses now
   * carry `Connection: close`, so kept-alive clients reconnect to the new workers. Resolves when every
   * tunnel has closed, every request has its answer and no kept-alive client can still be waiting
   * to send one more (uWS closes an idle HTTP connection after httpIdleCloseMs), or after `timeoutMs`.
   */
  async retire(timeoutMs: number): Promise<void> {
    this.retiring = true;
    this.deps.httpProxy.closeConnections = true;
    this.stopAccepting();
    const deadline = Date.now() + timeoutMs;
    // Connections accepted in the instant before the listen socket closed send their request just
    // after; a worker that answered plain requests may have kept-alive clients about to send another,
    // which get their answer (and Connection: close) rather than a reset. Answers are read from the
    // counters once a second, so the hot path pays nothing for this.
    let answers = keptAliveAnswers();
    let quietUntil = Date.now() + (answers > 0 ? KEPT_ALIVE_MS : ACCEPTED_GRACE_MS);
    for (;;) {
      await this.whenIdle(deadline - Date.now());
      const seen = keptAliveAnswers();
      if (seen !== answers) {
        answers = seen;
        quietUntil = Math.max(quietUntil, Date.now() + KEPT_ALIVE_MS);
      }
      const wait = Math.min(quietUntil, deadline) - Date.now();
      if (wait <= 0) return;
      await delay(Math.min(wait, 1000));
    }
  }

  /**
   * Stop accepting, send 1001 on every tunnel, spread over closeSpread (src/close-spread.ts; new
   * plain requests get 503); resolves when every tunnel is closed and every plain HTTP request in
   * flight has its response, or after `timeoutMs`.
   */
  drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    this.stopAccepting();
    const tunnels = [...this.tunnels];
    const window = closeWindow(tunnels.length, this.deps.config.closeSpread, timeoutMs);
    if (window === 0) for (const t of tunnels) t.shutdown();
    else {
      const stop = spreadCloses(tunnels, closeTimes(tunnels.length, window, Math.random), shutDown);
      const idle = this.whenIdle(timeoutMs);
      void idle.then(stop);
      return idle;
    }
    return this.whenIdle(timeoutMs);
  }

  private stopAccepting(): void {
    this.front?.close();
    if (this.listenSocket) closeListenSocket(this.listenSocket);
    this.listenSocket = null;
  }

  private whenIdle(timeoutMs: number): Promise<void> {
    const http = this.deps.httpProxy;
    const idle = (): boolean => this.tunnels.size === 0 && http.requestsInFlight === 0;
    if (idle()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.onIdle = http.onIdle = () => {
        if (!idle()) return;
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
