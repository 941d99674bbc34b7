// The one place the uWebSockets.js binding is loaded; every other file imports uWS from here.
//
// The official package ships from GitHub only and its current binaries need glibc >= 2.38.
// Two npm packages carry prebuilt binaries; we try them in order and say which one loaded:
//   1. uWebSockets.js               - the official build, if an operator installed it
//   2. @btc-vision/uwebsockets.js   - uWS.js v20.57 (Node 20-25, glibc >= 2.38)
//   3. @rjweb/uws                   - uWS.js v20 build (Node 16/18/20, glibc >= 2.27): our dependency
// Their APIs differ in two names (closing and port-reading a listen socket), normalised below.
import type * as RjwebUws from '@rjweb/uws';

export type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  WebSocket,
  WebSocketBehavior,
  us_listen_socket as ListenSocket,
  us_socket_context_t as SocketContext,
} from '@rjweb/uws';

type Binding = typeof RjwebUws & {
  us_listen_socket_close?: (s: RjwebUws.us_listen_socket) => void;
  us_socket_local_port?: (s: RjwebUws.us_listen_socket) => number;
};

const CANDIDATES = ['uWebSockets.js', '@btc-vision/uwebsockets.js', '@rjweb/uws'] as const;

function load(): { uws: Binding; name: string } {
  const failures: string[] = [];
  for (const name of CANDIDATES) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return { uws: require(name) as Binding, name };
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String((err as Error).message).includes(`'${name}'`)
        ? 'not installed'
        : String((err as Error).message).split('\n').find((l) => l.trim() !== '') ?? 'failed to load';
      failures.push(`${name}: ${why}`);
    }
  }
  throw new Error(
    'no uWebSockets.js binding could be loaded (Node ' + process.version + '). Needs either @rjweb/uws (Node 16/18/20, glibc >= 2.27) ' +
      'or @btc-vision/uwebsockets.js (Node 20+, glibc >= 2.38). Tried: ' + failures.join('; '),
  );
}

const loaded = load();

/** The loaded binding. */
export const uws: Binding = loaded.uws;
/** Which package supplied it, for the startup log. */
export const uwsBindingName: string = loaded.name;

export function closeListenSocket(socket: RjwebUws.us_listen_socket): void {
  if (uws.us_listen_socket_close) uws.us_listen_socket_close(socket);
  else uws.closeSocket(socket);
}

export function listenSocketPort(socket: RjwebUws.us_listen_socket): number {
  return uws.us_socket_local_port ? uws.us_socket_local_port(socket) : uws.getSocketPort(socket);
}

// ---- Completing an upgrade after the handler returned ----
//
// uWS v20's HttpResponse.cork() tells an upgraded socket from an HTTP response by its address. The
// upgrade reallocs the socket smaller, glibc keeps the address, and cork() then reads the HTTP
// "state" from memory the realloc gave back; if those bytes look like `Connection: close` it closes
// the new WebSocket right after its 101 (the client sees 1006). uNetworking/uWebSockets#1928, fixed
// upstream by #1929, not in @rjweb/uws 1.5.0. The bytes stay stale (harmless) unless something
// allocates between the upgrade and the end of the cork, and JavaScript does: V8 compiles functions
// that turn hot there (caught under gdb). So nothing written in JavaScript runs in that window: the
// cork callback is res.upgrade bound to its arguments, and the `open` handler is Reflect.set bound
// to a slot, both native. The caller attaches the socket after cork() has returned.
// Upgrading without cork() is safe too, but each header line then goes out in its own send(): twice
// the CPU per upgrade in bench/ churn.

const openedSlot: { ws: unknown } = { ws: null };

/** The `open` handler of every ws() behaviour whose upgrades finish with upgradeLater(). */
export const recordOpened = Reflect.set.bind(null, openedSlot, 'ws') as (ws: unknown) => void;

/** res.upgrade() after the upgrade handler returned; the open client socket, or null if uWS did not open one. */
export function upgradeLater<T>(
  res: RjwebUws.HttpResponse,
  userData: T,
  key: string,
  protocol: string,
  extensions: string,
  context: RjwebUws.us_socket_context_t,
): RjwebUws.WebSocket<T> | null {
  openedSlot.ws = null;
  res.cork(res.upgrade.bind(res, userData, key, protocol, extensions, context));
  const ws = openedSlot.ws as RjwebUws.WebSocket<T> | null;
  openedSlot.ws = null;
  return ws;
}
