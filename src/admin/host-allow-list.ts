// Which Host headers the admin listener answers to. A web page can make the operator's browser send
// requests to 127.0.0.1 under its own name (DNS rebinding: evil.example resolves to 127.0.0.1), and
// then read the answers as same-origin; the browser always sends that name in Host. So the listener
// answers only to names that cannot be rebound: localhost, IP literals of loopback or of the address
// the request came in on, its configured address, and the names the operator lists. Pure: no I/O.
import { isIP } from 'node:net';

/** A Host header split into its name (lower case, IPv6 without brackets, no trailing dot) and port. */
export interface ParsedHost {
  name: string;
  port: number | undefined;
}

// reg-name or IPv4 (RFC 3986 host), or an IPv6 literal in brackets; then an optional port.
const HOST_HEADER = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::(\d{1,5}))?$/;

/** Parses a Host header; null when it is not a plain host[:port] (userinfo, paths, spaces, bad IPv6). */
export function parseHost(header: string): ParsedHost | null {
  const m = HOST_HEADER.exec(header);
  if (!m) return null;
  const port = m[3] === undefined ? undefined : Number(m[3]);
  if (port !== undefined && port > 65535) return null;
  if (m[1] !== undefined) {
    if (isIP(m[1]) !== 6) return null;
    return { name: canonicalIp(m[1]), port };
  }
  const name = m[2].toLowerCase().replace(/\.$/, '');
  return name === '' ? null : { name, port };
}

/** One spelling per address: ::1 and 0:0:0:0:0:0:0:1 compare equal; an IPv4-mapped IPv6 address is its IPv4 address. */
export function canonicalIp(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (isIP(address) !== 6) return address.toLowerCase();
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

function isLoopback(name: string): boolean {
  return name === 'localhost' || name === '::1' || (isIP(name) === 4 && name.startsWith('127.'));
}

export class HostAllowList {
  private readonly names: ReadonlySet<string>;

  /**
   * `host`: admin.host (a wildcard address adds nothing: the address a request came in on is allowed
   * per request); `allowedHosts`: admin.allowedHosts.
   */
  constructor(host: string, allowedHosts: readonly string[]) {
    const names = new Set<string>();
    for (const h of [host, ...allowedHosts]) {
      const parsed = parseHost(isIP(h) === 6 ? `[${h}]` : h);
      if (parsed && parsed.name !== '0.0.0.0' && parsed.name !== '::') names.add(parsed.name);
    }
    this.names = names;
  }

  /**
   * `hostHeader`: the request's Host (undefined for an HTTP/1.0 request without one: no browser sends
   * that, so it cannot be a rebinding); `localAddress`: the address the connection came in on.
   */
  allows(hostHeader: string | undefined, localAddress: string | undefined): boolean {
    if (hostHeader === undefined) return true;
    const parsed = parseHost(hostHeader);
    if (parsed === null) return false;
    const { name } = parsed;
    if (isLoopback(name) || this.names.has(name)) return true;
    // Scraping by the machine's address (admin.host 0.0.0.0, Prometheus targets 10.0.0.5:8405): an IP
    // literal is never a rebound name, and this one is where the request arrived.
    return localAddress !== undefined && isIP(name) !== 0 && canonicalIp(localAddress) === name;
  }
}
