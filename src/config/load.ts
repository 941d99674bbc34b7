// Config is read and validated once, in the primary, then frozen and handed to workers over IPC.
// Nothing else reads files or the environment for settings.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from './config-error';
import { adminToken, configSchema, type Config } from './schema';
import { checkBackendTlsFiles, checkTlsFiles, type CertificateInfo } from './tls-files';

export { ConfigError };

/** Flags of `switchyard start`; each overrides the matching key of the file. */
export interface ConfigFlags {
  config?: string;
  host?: string;
  port?: number;
  tlsCert?: string;
  tlsKey?: string;
  backend?: string[];
  algorithm?: string;
  workers?: string;
  drainTimeout?: string;
  idleTimeout?: string;
  logLevel?: string;
  accessLog?: boolean;
  adminHost?: string;
  adminPort?: number;
  adminTokenFile?: string;
  /** false from --no-admin. */
  admin?: boolean;
}

/** The admin token in force and where it came from (a config key or the environment variable), for `check` and the ready line. */
export interface AdminToken {
  readonly value: string;
  readonly from: 'admin.token' | 'admin.tokenFile' | typeof ADMIN_TOKEN_ENV;
}

/**
 * The validated config plus the resolved worker count, with TLS the certificates it serves (the default first), and the
 * admin token (read from admin.tokenFile or the environment). The token stays in the primary: the
 * workers' copy of the config goes without it.
 */
export type LoadedConfig = Readonly<Config & { workerCount: number; certificates?: readonly CertificateInfo[]; adminToken?: AdminToken }>;

/** The environment variable that gives the admin token when the file names none (as REDIS_URL gives redis.url). */
export const ADMIN_TOKEN_ENV = 'SWITCHYARD_ADMIN_TOKEN';

type Raw = Record<string, unknown>;

export function readConfigFile(file: string): Raw {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config error: cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text); // YAML is a superset of JSON, so .json files parse too
  } catch (err) {
    const first = (err as Error).message.split('\n')[0];
    throw new ConfigError(`config error: ${file} is not valid YAML/JSON: ${first}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config error: ${file}: the top level must be a mapping of keys`);
  return raw as Raw;
}

function applyFlags(raw: Raw, flags: ConfigFlags): Raw {
  const out: Raw = { ...raw };
  if (flags.host !== undefined || flags.port !== undefined || flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
    const listen = { ...((raw.listen as Raw | undefined) ?? {}) };
    if (flags.host !== undefined) listen.host = flags.host;
    if (flags.port !== undefined) listen.port = flags.port;
    if (flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
      const tls = { ...((listen.tls as Raw | undefined) ?? {}) };
      if (flags.tlsCert !== undefined) tls.cert = resolve(flags.tlsCert);
      if (flags.tlsKey !== undefined) tls.key = resolve(flags.tlsKey);
      listen.tls = tls;
    }
    out.listen = listen;
  }
  if (flags.backend && flags.backend.length > 0) {
    // Quick case: the flags describe the whole upstream, one pool behind one catch-all route.
    out.pools = { default: { backends: flags.backend.map((url) => ({ url })) } };
    out.routes = [{ path: '/', pool: 'default' }];
  }
  if (flags.algorithm !== undefined && out.pools && typeof out.pools === 'object') {
    out.pools = Object.fromEntries(
      Object.entries(out.pools as Record<string, Raw>).map(([name, pool]) => [name, { ...pool, algorithm: flags.algorithm }]),
    );
  }
  if (flags.idleTimeout !== undefined && Array.isArray(out.routes)) {
    out.routes = (out.routes as Raw[]).map((r) => ({ ...r, idleTimeout: flags.idleTimeout }));
  }
  if (flags.adminHost !== undefined || flags.adminPort !== undefined || flags.adminTokenFile !== undefined || flags.admin === false) {
    const admin = { ...((raw.admin as Raw | undefined) ?? {}) };
    if (flags.adminHost !== undefined) admin.host = flags.adminHost;
    if (flags.adminPort !== undefined) admin.port = flags.adminPort;
    if (flags.adminTokenFile !== undefined) {
      delete admin.token; // the flag overrides the file's token, whichever key gave it
      admin.tokenFile = resolve(flags.adminTokenFile);
    }
    if (flags.admin === false) admin.enabled = false;
    out.admin = admin;
  }
  if (flags.workers !== undefined) out.workers = /^\d+$/.test(flags.workers) ? Number(flags.workers) : flags.workers;
  if (flags.drainTimeout !== undefined) out.drainTimeout = flags.drainTimeout;
  if (flags.logLevel !== undefined) out.logLevel = flags.logLevel;
  if (flags.accessLog) out.accessLog = true;
  return out;
}

/** "routes[0].pool" from zod's path. */
function keyOf(path: readonly PropertyKey[]): string {
  let key = '';
  for (const part of path) key += typeof part === 'number' ? `[${part}]` : key === '' ? String(part) : `.${String(part)}`;
  return key || '(top level)';
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (issue.code === 'unrecognized_keys') {
    const parent = keyOf(issue.path);
    const keys = issue.keys.map((k) => (parent === '(top level)' ? k : `${parent}.${k}`)).join(', ');
    return `config error: ${keys}: unknown key`;
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return `config error: ${keyOf(issue.path)}: is required`;
  return `config error: ${keyOf(issue.path)}: ${issue.message}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Validates an already-merged raw config (used by workers too, which receive it over IPC). */
export function validateConfig(raw: unknown): LoadedConfig {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) throw new ConfigError(firstIssue(result.error));
  const cfg = result.data;
  const workerCount = cfg.workers === 'auto' ? availableParallelism() : cfg.workers;
  return deepFreeze({ ...cfg, workerCount });
}

export function loadConfig(flags: ConfigFlags): LoadedConfig {
  const raw = flags.config ? withFilePathsFrom(dirname(resolve(flags.config)), readConfigFile(flags.config)) : {};
  const merged = applyFlags(raw, flags);
  if (!merged.pools && !merged.routes) {
    throw new ConfigError('config error: pools: no backends; give --backend ws://host:port (repeatable) or --config FILE');
  }
  const config = validateConfig(withRedisEnv(merged, process.env.REDIS_URL));
  const token = resolveAdminToken(config.admin, process.env);
  checkBackendTlsFiles(config.pools);
  const checked = config.listen.tls ? checkTlsFiles(config.listen.tls) : undefined;
  if (!token && !checked) return config;
  // With SNI certificates, listen.tls carries the names read from their files (the workers register those).
  const tls = checked && { listen: { ...config.listen, tls: checked.tls }, certificates: checked.certificates };
  return deepFreeze({ ...config, ...tls, ...(token && { adminToken: token }) });
}

/**
 * The admin token: admin.token, else the first line of admin.tokenFile, else SWITCHYARD_ADMIN_TOKEN;
 * undefined when none is given (writes are then refused on TCP). Also used by `switchyard admin` and
 * `switchyard reload` without a config file.
 */
export function resolveAdminToken(admin: { token?: string; tokenFile?: string }, env: NodeJS.ProcessEnv): AdminToken | undefined {
  if (admin.token !== undefined) return { value: admin.token, from: 'admin.token' };
  if (admin.tokenFile !== undefined) return { value: readAdminTokenFile(admin.tokenFile, 'admin.tokenFile'), from: 'admin.tokenFile' };
  const fromEnv = env[ADMIN_TOKEN_ENV];
  if (fromEnv === undefined || fromEnv === '') return undefined;
  return { value: checkAdminToken(fromEnv, ADMIN_TOKEN_ENV), from: ADMIN_TOKEN_ENV };
}

/** Reads a token file: one line (a trailing newline is allowed, as `openssl rand -hex 32 > file` writes it). */
export function readAdminTokenFile(file: string, key: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config error: ${key}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return checkAdminToken(text.replace(/\r?\n$/, ''), `${key} (${file})`);
}

function checkAdminToken(value: string, key: string): string {
  const result = adminToken.safeParse(value);
  if (!result.success) throw new ConfigError(`config error: ${key}: ${result.error.issues[0].message}`);
  return result.data;
}

/** The file's relative paths (listen.tls, backend tls, admin.tokenFile, admin.socket), made absolute from its directory (as NGINX reads them from its conf dir). */
function withFilePathsFrom(dir: string, raw: Raw): Raw {
  const absolute = (v: unknown): unknown => (typeof v === 'string' && v !== '' ? resolve(dir, v) : v);
  const out = { ...raw };
  const listen = raw.listen as Raw | undefined;
  const tls = listen?.tls as Raw | undefined;
  const pairs = (pair: Raw): Raw => ({ ...pair, cert: absolute(pair.cert), key: absolute(pair.key) });
  if (tls && typeof tls === 'object') {
    const more = Array.isArray(tls.certificates) ? { certificates: tls.certificates.map((c: unknown) => (c && typeof c === 'object' ? pairs(c as Raw) : c)) } : {};
    out.listen = { ...listen, tls: { ...pairs(tls), ...more } };
  }
  // Backend TLS files (pools.NAME.tls and pools.NAME.backends[i].tls: ca, cert, key).
  const backendTls = (tls: unknown): unknown => {
    if (!tls || typeof tls !== 'object') return tls;
    const t = { ...(tls as Raw) };
    for (const key of ['ca', 'cert', 'key']) if (key in t) t[key] = absolute(t[key]);
    return t;
  };
  if (raw.pools && typeof raw.pools === 'object') {
    out.pools = Object.fromEntries(
      Object.entries(raw.pools as Raw).map(([name, pool]) => {
        if (!pool || typeof pool !== 'object') return [name, pool];
        const p = { ...(pool as Raw) };
        if ('tls' in p) p.tls = backendTls(p.tls);
        if (Array.isArray(p.backends)) p.backends = p.backends.map((b: unknown) => (b && typeof b === 'object' && 'tls' in b ? { ...(b as Raw), tls: backendTls((b as Raw).tls) } : b));
        return [name, p];
      }),
    );
  }
  const admin = raw.admin as Raw | undefined;
  if (admin && typeof admin === 'object') {
    const paths: Raw = {};
    for (const key of ['tokenFile', 'socket']) if (key in admin) paths[key] = absolute(admin[key]);
    out.admin = { ...admin, ...paths };
  }
  return out;
}

/** REDIS_URL turns on shared state when the file names no Redis URL (the file wins when it does). */
function withRedisEnv(raw: Raw, redisUrl: string | undefined): Raw {
  if (!redisUrl) return raw;
  const redis = raw.redis;
  if (redis === undefined || redis === null) return { ...raw, redis: { url: redisUrl } };
  if (typeof redis === 'object' && !('url' in redis)) return { ...raw, redis: { ...redis, url: redisUrl } };
  return raw;
}

/**
 * Settings a reload cannot change, because a process holds them: the public port (shared by both
 * generations of workers during a reload), the admin listener and the shared-state connection (the
 * primary's). Throws a ConfigError naming the first one changed.
 */
export function checkReloadable(running: LoadedConfig, next: LoadedConfig): void {
  // listen.tls's files and settings may change (a renewed certificate); turning TLS on or off may not.
  // The admin token and allowed hosts are read per request, so a reload may change them (rotate a token).
  const held = (c: LoadedConfig) => ({
    listen: { host: c.listen.host, port: c.listen.port, tls: c.listen.tls !== undefined, redirect: c.listen.tls?.redirectHttpPort, proxyProtocol: c.listen.proxyProtocol },
    admin: { enabled: c.admin.enabled, host: c.admin.host, port: c.admin.port, socket: c.admin.socket },
    redis: c.redis,
  });
  const [a, b] = [held(running), held(next)];
  for (const key of ['listen', 'admin', 'redis'] as const) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      // With proxyProtocol the public port is a Node server's (shared by the workers through the
      // primary), without it uWS's (SO_REUSEPORT): the two generations could not share it.
      const what =
        key === 'listen' && a.listen.tls !== b.listen.tls
          ? 'listen.tls: TLS cannot be turned on or off'
          : key === 'listen' && a.listen.proxyProtocol !== b.listen.proxyProtocol
            ? 'listen.proxyProtocol: cannot change'
            : `${key}: cannot change`;
      throw new ConfigError(`config error: ${what} on reload; restart switchyard to change it`);
    }
  }
}
