// Self-signed certificates made by Debian's `openssl` for the TLS tests (nothing is committed: a
// checked-in certificate would expire and a checked-in key would look like a leaked secret).
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificate {
  cert: string;
  key: string;
  /** The PEM text of `cert`, to trust as a client (`ca`). */
  pem: string;
  fingerprint256: string;
  notAfter: number;
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('the TLS tests need the `openssl` command (apt-get install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString().trim() ?? e.message}`);
  }
}

/** A scratch directory for certificates; remove it after the test. */
export function certificateDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-tls-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Writes `<name>.pem` and `<name>.key` in `dir`: a P-256 certificate for localhost and 127.0.0.1
 * (or the subjectAltName given, e.g. "DNS:chat.example,DNS:*.chat.example"), valid `days` from now.
 * With `passphrase`, the key is encrypted with it.
 */
export function makeCertificate(dir: string, name: string, options: { days?: number; passphrase?: string; altNames?: string } = {}): TestCertificate {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-days', String(options.days ?? 2),
    '-subj', `/CN=switchyard test ${name}`, '-addext', `subjectAltName=${options.altNames ?? 'DNS:localhost,IP:127.0.0.1'}`,
    '-keyout', key, '-out', cert,
    ...(options.passphrase ? ['-passout', `pass:${options.passphrase}`] : ['-noenc']),
  ]);
  const pem = readFileSync(cert, 'utf8');
  const x509 = new X509Certificate(pem);
  return { cert, key, pem, fingerprint256: x509.fingerprint256, notAfter: Math.floor(new Date(x509.validTo).getTime() / 1000) };
}

/** A test certificate authority: `<name>.pem` (its certificate, the `ca` to trust) and `<name>.key`. */
export function makeCa(dir: string, name: string): TestCertificate {
  return makeCertificate(dir, name, { altNames: `DNS:${name}.invalid` });
}

/**
 * A certificate signed by `ca`, for `altNames` (default localhost and 127.0.0.1). `days` below 0
 * makes one that has already expired.
 */
export function makeSignedCertificate(dir: string, name: string, ca: TestCertificate, options: { days?: number; altNames?: string } = {}): TestCertificate {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${options.altNames ?? 'DNS:localhost,IP:127.0.0.1'}\n`);
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-subj', `/CN=switchyard test ${name}`, '-keyout', key, '-out', csr, '-noenc']);
  const sign = ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(Date.now()), '-extfile', ext, '-out', cert];
  const days = options.days ?? 2;
  if (days >= 0) openssl([...sign, '-days', String(days)]);
  else {
    // Expired: OpenSSL 3.4+ (Debian 13) takes explicit dates and refuses negative days; 3.0 (Debian 12) the reverse.
    try {
      openssl([...sign, '-not_before', '20200101000000Z', '-not_after', '20200102000000Z']);
    } catch {
      openssl([...sign, '-days', String(days)]);
    }
  }
  const pem = readFileSync(cert, 'utf8');
  const x509 = new X509Certificate(pem);
  return { cert, key, pem, fingerprint256: x509.fingerprint256, notAfter: Math.floor(new Date(x509.validTo).getTime() / 1000) };
}
