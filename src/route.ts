// Host + path prefix -> route (and so pool). Most specific wins: a route naming the host beats a
// wildcard one, then the longer path prefix. Prefixes match on segment boundaries, so /chat serves
// /chat, /chat/room?x and /chat?x but not /chatroom. Host names are compared without case, port or
// a trailing dot ("chat.example." is the fully qualified form of "chat.example", RFC 1034 3.1).
import type { RouteConfig } from './config/schema';
import type { Pool } from './upstream/pool';

export interface Route {
  readonly index: number;
  readonly host: string | undefined;
  readonly path: string;
  readonly pool: Pool;
  readonly config: RouteConfig;
}

export class RouteTable {
  private readonly routes: Route[];

  constructor(configs: readonly RouteConfig[], pools: ReadonlyMap<string, Pool>) {
    this.routes = configs
      .map((config, index) => ({
        index,
        host: config.host === undefined || config.host === '*' ? undefined : hostName(config.host),
        path: config.path.length > 1 ? config.path.replace(/\/+$/, '') : config.path,
        pool: pools.get(config.pool)!,
        config,
      }))
      .sort((a, b) => Number(b.host !== undefined) - Number(a.host !== undefined) || b.path.length - a.path.length || a.index - b.index);
  }

  /** `host` is the Host header (any port is ignored); `url` the path, with or without query. */
  match(host: string, url: string): Route | undefined {
    const h = hostName(host);
    for (const r of this.routes) {
      if (r.host !== undefined && r.host !== h) continue;
      if (pathMatches(r.path, url)) return r;
    }
    return undefined;
  }
}

export function pathMatches(prefix: string, url: string): boolean {
  if (prefix === '/') return true;
  if (!url.startsWith(prefix)) return false;
  const next = url.charCodeAt(prefix.length);
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}

/** A Host header's name: lower case, without port or trailing dot. */
function hostName(host: string): string {
  let name = host;
  if (host.startsWith('[')) name = host.slice(0, host.indexOf(']') + 1);
  else {
    const colon = host.indexOf(':');
    if (colon !== -1) name = host.slice(0, colon);
  }
  if (name.length > 1 && name.charCodeAt(name.length - 1) === 46 /* . */) name = name.slice(0, -1);
  return name.toLowerCase();
}
