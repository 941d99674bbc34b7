// The listener's certificate and key, checked in the primary before any worker reads them, so a
// missing, unreadable or mismatched file is a one-line config error (at start, or a refused reload)
// rather than workers that cannot start. uWS reads the files itself when a worker builds its app.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { TlsConfig } from './schema';
import { ConfigError } from './config-error';

/** What the operator is told about the certificate being served (log line, /status and the status page, metric). */
export interface CertificateInfo {
  file: string;
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

function read(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config error: ${key}: cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Reads and cross-checks listen.tls's files; throws a ConfigError naming the key at fault. */
export function checkTlsFiles(tls: TlsConfig): CertificateInfo {
  const certPem = read(tls.cert, 'listen.tls.cert');
  const keyPem = read(tls.key, 'listen.tls.key');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem); // the first certificate of the chain is the server's
  } catch {
    throw new ConfigError(`config error: listen.tls.cert: ${tls.cert} holds no PEM certificate`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, passphrase: tls.passphrase });
  } catch (err) {
    const encrypted = /ENCRYPTED/.test(keyPem);
    const why = encrypted ? (tls.passphrase ? 'the passphrase does not decrypt it' : 'it is encrypted and listen.tls.passphrase is not set') : `holds no PEM private key (${(err as Error).message})`;
    throw new ConfigError(`config error: listen.tls.key: ${tls.key}: ${why}`);
  }
  if (!cert.checkPrivateKey(key)) throw new ConfigError(`config error: listen.tls.key: ${tls.key} does not match the certificate in ${tls.cert}`);
  if (tls.ciphers !== undefined) {
    try {
      createSecureContext({ ciphers: tls.ciphers });
    } catch {
      throw new ConfigError(`config error: listen.tls.ciphers: no cipher matches "${tls.ciphers}"`);
    }
  }
  const validTo = new Date(cert.validTo);
  return {
    file: tls.cert,
    subject: cert.subject.replace(/\n/g, ', '),
    altNames: cert.subjectAltName ?? '',
    issuer: cert.issuer.replace(/\n/g, ', '),
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: validTo.toISOString(),
    notAfter: Math.floor(validTo.getTime() / 1000),
    fingerprint256: cert.fingerprint256,
  };
}
