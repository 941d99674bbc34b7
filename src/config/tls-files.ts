// The listener's certificates and keys, and the backends' CA files and client certificates,
// checked in the primary before any worker reads them, so a
// missing, unreadable or mismatched file is a one-line config error (at start, or a refused reload)
// rather than workers that cannot start; and the server names each SNI certificate is for, from its
// subjectAltName unless the config lists them. uWS reads the files itself when a worker builds its app.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { SERVER_NAME, serviceName, TLS_SCHEMES, type BackendTlsConfig, type PoolConfig, type TlsConfig } from './schema';
import { ConfigError } from './config-error';

/** What the operator is told about each certificate served (log line, /status and the status page, metric, `switchyard check`). */
export interface CertificateInfo {
  /** The config key it comes from: listen.tls (the default) or listen.tls.certificates[i]. */
  key: string;
  file: string;
  /** The server names (SNI) it is served for, lower-case; empty for the default certificate. */
  names: string[];
  subject: string;
  /** Subject alternative names as the certificate lists them, e.g. "DNS:chat.example.com". */
  altNames: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  /** validTo as Unix seconds. */
  notAfter: number;
  fingerprint256: string;
}

/** listen.tls with every certificate's names filled in (from its subjectAltName where the config gave none). */
export interface CheckedTls {
  tls: TlsConfig;
  /** The default certificate first, then listen.tls.certificates in order. */
  certificates: CertificateInfo[];
}

function read(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config error: ${key}: cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Reads and cross-checks one certificate/key pair; `at` is its config key (listen.tls or listen.tls.certificates[i]). */
function checkPair(pair: { cert: string; key: string; passphrase?: string }, at: string, keys = { cert: `${at}.cert`, key: `${at}.key` }): X509Certificate {
  const certPem = read(pair.cert, keys.cert);
  const keyPem = read(pair.key, keys.key);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem); // the first certificate of the chain is the server's
  } catch {
    throw new ConfigError(`config error: ${keys.cert}: ${pair.cert} holds no PEM certificate`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, passphrase: pair.passphrase });
  } catch (err) {
    const encrypted = /ENCRYPTED/.test(keyPem);
    const why = encrypted ? (pair.passphrase ? 'the passphrase does not decrypt it' : `it is encrypted and ${at}.passphrase is not set`) : `holds no PEM private key (${(err as Error).message})`;
    throw new ConfigError(`config error: ${keys.key}: ${pair.key}: ${why}`);
  }
  if (!cert.checkPrivateKey(key)) throw new ConfigError(`config error: ${keys.key}: ${pair.key} does not match the certificate in ${pair.cert}`);
  return cert;
}

function describe(cert: X509Certificate, file: string, key: string, names: string[]): CertificateInfo {
  const validTo = new Date(cert.validTo);
  return {
    key,
    file,
    names,
    subject: cert.subject.replace(/\n/g, ', '),
    altNames: cert.subjectAltName ?? '',
    issuer: cert.issuer.replace(/\n/g, ', '),
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: validTo.toISOString(),
    notAfter: Math.floor(validTo.getTime() / 1000),
    fingerprint256: cert.fingerprint256,
  };
}

/** The DNS names of a certificate's subjectAltName that SNI can carry (IP entries and odd names left out), lower-case. */
function namesOf(cert: X509Certificate): string[] {
  const names = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice('DNS:'.length).toLowerCase())
    .filter((name) => SERVER_NAME.test(name));
  return [...new Set(names)];
}

/** Reads and cross-checks listen.tls's files; throws a ConfigError naming the key at fault. */
export function checkTlsFiles(tls: TlsConfig): CheckedTls {
  const certificates = [describe(checkPair(tls, 'listen.tls'), tls.cert, 'listen.tls', [])];
  if (tls.ciphers !== undefined) {
    try {
      createSecureContext({ ciphers: tls.ciphers });
    } catch {
      throw new ConfigError(`config error: listen.tls.ciphers: no cipher matches "${tls.ciphers}"`);
    }
  }
  const owner = new Map<string, string>();
  const resolved = tls.certificates.map((pair, i) => {
    const at = `listen.tls.certificates[${i}]`;
    const cert = checkPair(pair, at);
    const names = pair.names ?? namesOf(cert);
    if (names.length === 0) throw new ConfigError(`config error: ${at}.names: ${pair.cert} has no DNS name in its subjectAltName; list the names it is for`);
    for (const name of names) {
      const first = owner.get(name);
      if (first !== undefined) throw new ConfigError(`config error: ${at}.names: ${name} is already served by ${first}; a name may belong to one certificate only`);
      owner.set(name, at);
    }
    certificates.push(describe(cert, pair.cert, at, names));
    return { ...pair, names };
  });
  return { tls: { ...tls, certificates: resolved }, certificates };
}

/** What `switchyard check` says of a TLS backend: the settings it will use, files read and checked. */
export interface BackendTlsInfo {
  pool: string;
  url: string;
  verify: boolean;
  /** The SNI sent and the name required of the certificate (the URL's host unless serverName is set). */
  serverName: string;
  /** "system" or the CA file, with how many certificates it holds. */
  ca: string;
  /** The client certificate's file and subject, when it presents one (mutual TLS). */
  clientCert?: string;
}

/** The PEM certificates a CA file holds (throws a ConfigError naming `at` when it holds none). */
function readCaFile(file: string, at: string): X509Certificate[] {
  const pem = read(file, at);
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const certs: X509Certificate[] = [];
  for (const block of blocks) {
    try {
      certs.push(new X509Certificate(block));
    } catch {
      throw new ConfigError(`config error: ${at}: ${file} holds a certificate that does not parse`);
    }
  }
  if (certs.length === 0) throw new ConfigError(`config error: ${at}: ${file} holds no PEM certificate`);
  return certs;
}

/**
 * Reads and checks every TLS backend's files (CA, client certificate and key), as listen.tls's, so
 * that a missing or mismatched file is a one-line error naming its key at start and on reload.
 */
export function checkBackendTlsFiles(pools: Readonly<Record<string, PoolConfig>>): BackendTlsInfo[] {
  const infos: BackendTlsInfo[] = [];
  const checkedCa = new Map<string, number>();
  const checkedCert = new Map<string, string>();
  for (const [name, pool] of Object.entries(pools)) {
    // Discovered backends over TLS (discovery.tls) use the pool's settings: checked as a written one's.
    const written: { url: string; tls?: BackendTlsConfig }[] = pool.backends;
    const entries = pool.discovery?.tls ? [...written, { url: `wss://${serviceName(pool.discovery.dns)}` }] : written;
    entries.forEach((backend, i) => {
      const u = new URL(backend.url);
      if (!TLS_SCHEMES.includes(u.protocol)) return;
      // Each key is blamed where it was written: the backend's own tls, else the pool's.
      const at = (key: 'ca' | 'cert' | 'key'): string => (backend.tls?.[key] !== undefined ? `pools.${name}.backends[${i}].tls.${key}` : `pools.${name}.tls.${key}`);
      const tls = { ...pool.tls, ...backend.tls };
      let ca = 'system';
      if (tls.ca !== undefined) {
        const count = checkedCa.get(tls.ca) ?? readCaFile(tls.ca, at('ca')).length;
        checkedCa.set(tls.ca, count);
        ca = `${tls.ca} (${count} certificate${count === 1 ? '' : 's'})`;
      }
      let clientCert: string | undefined;
      if (tls.cert !== undefined && tls.key !== undefined) {
        const pairKey = `${tls.cert}\n${tls.key}`;
        clientCert = checkedCert.get(pairKey);
        if (clientCert === undefined) {
          const certAt = at('cert');
          const cert = checkPair({ cert: tls.cert, key: tls.key }, certAt.slice(0, -'.cert'.length), { cert: certAt, key: at('key') });
          clientCert = `${tls.cert} (${cert.subject.replace(/\n/g, ', ')}, valid to ${new Date(cert.validTo).toISOString()})`;
          checkedCert.set(pairKey, clientCert);
        }
      }
      const host = u.hostname.replace(/^\[|\]$/g, '');
      infos.push({ pool: name, url: backend.url, verify: tls.verify ?? true, serverName: tls.serverName ?? host, ca, clientCert });
    });
  }
  return infos;
}
