// The one place the uWebSockets.js binding is loaded; every other file imports uWS from here, and
// sees only what both supported builds have in common.
//
// uWebSockets.js ships its binaries from GitHub only; two npm packages republish builds of it, and
// both are dependencies (exact versions). They are tried in this order and the primary logs which one
// loaded ("uWebSockets.js binding loaded"):
//   1. @btc-vision/uwebsockets.js 20.57.0 - uWS.js v20.57.0 (Node 20, 22, 24, 25; glibc >= 2.38)
//   2. @rjweb/uws 1.5.0                   - an older uWS.js v20 fork (Node 16, 18, 20; glibc >= 2.27),
//                                           the fallback for Node 20 on an older C library
// SWITCHYARD_UWS_BINDING=<package> loads that one only (tests, and operators who must pin one).
// The two differ in three names (reading a request's headers, closing a listen socket and reading
// its port), normalised below, and in the defects docs/design.md lists: `oldBuild` says which
// workarounds apply.
import type * as Current from '@btc-vision/uwebsockets.js';
import type * as Old from '@rjweb/uws';

/** A request; read its headers with forEachHeader() below (the builds name that method differently). */
export type HttpRequest = Omit<Current.HttpRequest, 'forEach'>;
export type HttpResponse = Current.HttpResponse;
export type WebSocket<T> = Current.WebSocket<T>;
export type ListenSocket = Current.us_listen_socket;
export type SocketContext = Current.us_socket_context_t;
/** `dropped` exists in the current build only; `closeOnBackpressureLimit` is typed differently by each (a flag in both). */
export type WebSocketBehavior<T> = Omit<Current.WebSocketBehavior<T>, 'dropped' | 'closeOnBackpressureLimit' | 'upgrade'> & {
  closeOnBackpressureLimit?: boolean;
  upgrade?: (res: HttpResponse, req: HttpRequest, context: SocketContext) => void | Promise<void>;
};
/** An app as both builds have it: no `filter`, `close` (current build) or `clear` (old build). */
export interface TemplatedApp {
  listen(host: string, port: number, cb: (listenSocket: ListenSocket | false) => void | Promise<void>): TemplatedApp;
  ws<T>(pattern: string, behavior: WebSocketBehavior<T>): TemplatedApp;
  any(pattern: string, handler: (res: HttpResponse, req: HttpRequest) => void | Promise<void>): TemplatedApp;
  get(pattern: string, handler: (res: HttpResponse, req: HttpRequest) => void | Promise<void>): TemplatedApp;
}
/**
 * A TLS app's certificates chosen by SNI (both builds, same names). uWS matches names as given
 * (case-sensitively; `*.` for one label). Each name has its own routes: requests on a connection
 * whose name was added find only those registered after `domain(name)`, none otherwise (uWS closes
 * the connection). `domain()` prints debug lines to stdout with C stdio on both builds: the workers'
 * stdout goes nowhere (src/primary/ipc.ts).
 */
export interface SslApp extends TemplatedApp {
  addServerName(hostname: string, options: AppOptions): SslApp;
  /** Routes registered from now on are those of connections that sent this (added) name. */
  domain(hostname: string): SslApp;
  /** Called, before the handshake goes on, for a name nothing matches; a name added from here serves that handshake. */
  missingServerName(cb: (hostname: string) => void): SslApp;
}
export type AppOptions = Current.AppOptions;

/** The loaded module, as far as this project uses it. */
interface Binding {
  App(options?: AppOptions): TemplatedApp;
  SSLApp(options: AppOptions): SslApp;
  readonly DISABLED: number;
  readonly SHARED_COMPRESSOR: number;
}

export const BINDINGS = ['@btc-vision/uwebsockets.js', '@rjweb/uws'] as const;
export type BindingName = (typeof BINDINGS)[number];
/** The environment variable that restricts loading to one binding. */
export const BINDING_ENV = 'SWITCHYARD_UWS_BINDING';

/**
 * The largest request head uWS takes, read by the current build from the environment when it loads
 * (the old build has its own fixed limits: docs/design.md). Its default, 4 KiB, refuses with 431 a
 * browser with a few large cookies that NGINX (8 KiB a line) and HAProxy (16 KiB a head) serve;
 * 16 KiB is HAProxy's. An operator's own UWS_HTTP_MAX_HEADERS_SIZE is kept.
 */
export const MAX_REQUEST_HEAD = 16 * 1024;
process.env.UWS_HTTP_MAX_HEADERS_SIZE ??= String(MAX_REQUEST_HEAD);

function load(): { module: unknown; name: BindingName } {
  const wanted = process.env[BINDING_ENV];
  if (wanted !== undefined && wanted !== '' && !(BINDINGS as readonly string[]).includes(wanted)) {
    throw new Error(`${BINDING_ENV}=${wanted}: must be one of ${BINDINGS.join(', ')}`);
  }
  const candidates = wanted ? [wanted as BindingName] : BINDINGS;
  const failures: string[] = [];
  for (const name of candidates) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return { module: require(name) as unknown, name };
    } catch (err) {
      const message = String((err as Error).message);
      const why =
        (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && message.includes(`'${name}'`)
          ? 'not installed'
          : // The packages wrap the loader's error in their own text; its "Error: " line says what was
            // missing (the .node file for this Node's ABI, or GLIBC_2.38).
            (message.split('\n').find((l) => l.startsWith('Error: '))?.slice('Error: '.length) ?? message.split('\n')[0]);
      failures.push(`${name}: ${why}`);
    }
  }
  throw new Error(
    `no uWebSockets.js binding could be loaded on Node ${process.version}. Supported: @btc-vision/uwebsockets.js ` +
      '(Node 20, 22, 24, 25 with glibc >= 2.38) or @rjweb/uws (Node 20 with glibc >= 2.27). Tried: ' +
      failures.join('; '),
  );
}

const loaded = load();

/** The loaded binding. */
export const uws = loaded.module as Binding;
/** Which package supplied it, for the startup log. */
export const uwsBindingName: BindingName = loaded.name;
/**
 * The old build (@rjweb/uws) is loaded: its own defects apply (505 on HTTP/1.0 and on a request
 * line split across reads, the 16 KiB send fast path); docs/design.md lists them.
 */
export const oldBuild: boolean = loaded.name === '@rjweb/uws';

/**
 * The longest uWS keeps an HTTP connection that is idle (kept alive after a response, or waiting for
 * the rest of a request) before closing it without an answer, as measured on each build: the old
 * one closes after ~10 s on a 4 s tick (9.4-11.9 s seen), the current one after ~30 s (28-32 s).
 */
export const httpIdleCloseMs: number = oldBuild ? 12_000 : 32_000;

type HeaderVisitor = (key: string, value: string) => void;

/** Calls `visit` with each header of `req` (lower-case name, value), in arrival order. */
export const forEachHeader: (req: HttpRequest, visit: HeaderVisitor) => void = oldBuild
  ? (req, visit) => (req as unknown as Old.HttpRequest).forEachHeader(visit)
  : (req, visit) => (req as unknown as Current.HttpRequest).forEach(visit);

const closeListen: (socket: ListenSocket) => void = oldBuild
  ? (loaded.module as typeof Old).closeSocket
  : (loaded.module as typeof Current).us_listen_socket_close;

const localPort: (socket: ListenSocket) => number = oldBuild
  ? (loaded.module as typeof Old).getSocketPort
  : (loaded.module as typeof Current).us_socket_local_port;

/** Stops listening; connections already accepted go on. */
export function closeListenSocket(socket: ListenSocket): void {
  closeListen(socket);
}

/** The port a listen socket is bound to (the one the kernel chose for port 0). */
export function listenSocketPort(socket: ListenSocket): number {
  return localPort(socket);
}

// ---- Completing an upgrade after the handler returned ----
//
// uWS v20's HttpResponse.cork() tells an upgraded socket from an HTTP response by its address. The
// upgrade reallocs the socket smaller, glibc keeps the address, and cork() then reads the HTTP
// "state" from memory the realloc gave back; if those bytes look like `Connection: close` it closes
// the new WebSocket right after its 101 (the client sees 1006). uNetworking/uWebSockets#1928, fixed
// upstream by #1929, which neither build has (both predate it). The bytes stay stale (harmless) unless something
// allocates between the upgrade and the end of the cork, and JavaScript does: V8 compiles functions
// that turn hot there (caught under gdb). So nothing written in JavaScript runs in that window: the
// cork callback is res.upgrade bound to its arguments, and the `open` handler is Reflect.set bound
// to a slot, both native. The caller attaches the socket after cork() has returned.
// Upgrading inside cork() is what sends the 101 in one write (without it, a send() per header line).

const openedSlot: { ws: unknown } = { ws: null };

/** The `open` handler of every ws() behaviour whose upgrades finish with upgradeLater(). */
export const recordOpened = Reflect.set.bind(null, openedSlot, 'ws') as (ws: unknown) => void;

/** res.upgrade() after the upgrade handler returned; the open client socket, or null if uWS did not open one. */
export function upgradeLater<T>(res: HttpResponse, userData: T, key: string, protocol: string, extensions: string, context: SocketContext): WebSocket<T> | null {
  openedSlot.ws = null;
  res.cork(res.upgrade.bind(res, userData, key, protocol, extensions, context));
  const ws = openedSlot.ws as WebSocket<T> | null;
  openedSlot.ws = null;
  return ws;
}
