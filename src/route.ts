// Host + path prefix -> route (and so pool). Most specific wins: a route naming the host beats a
// wildcard one, then the longer path prefix. Prefixes match on segment boundaries, so /chat serves
// /chat, /chat/room?x and /chat?x but not /chatroom.
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
        host: config.host === undefined || config.host === '*' ? undefined : config.host.toLowerCase(),
        path: config.path.length > 1 ? config.path.replace(/\/+$/, '') : config.path,
        pool: pools.get(config.pool)!,
        config,
      }))
      .sort((a, b) => Number(b.host !== undefined) - Number(a.host !== undefined) || b.path.length - a.path.length || a.index - b.index);
  }

  /** `host` is the Host header (any port is ignored); `url` the path, with or without query. */
  match(host: string, url: string): Route | undefined {
    const h = stripPort(host).toLowerCase();
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

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
