// Several certificates on one TLS listener, chosen by the name the client sends (SNI), ignoring case
// as DNS does. uWS matches names as registered, case-sensitively: the names are registered
// lower-case, and a name sent in another case is added, as sent, from uWS's missing-name callback,
// which serves the handshake that asked (measured on both builds).
import type { AppOptions, SslApp } from './uws';
import type { SniCertificateConfig, TlsConfig } from './config/schema';

/**
 * How many names in an unusual case a worker adds (each costs uWS a TLS context). Browsers and most
 * clients send names lower-case; beyond this many other spellings, one gets the default certificate,
 * so that a client cycling through spellings cannot grow a worker's memory.
 */
export const MAX_CASE_VARIANTS = 64;

/** Which of `certificates` serves `name` (any case): an exact name first, then `*.` for its first label; -1 for none. */
export function certificateFor(certificates: readonly Pick<SniCertificateConfig, 'names'>[], name: string): number {
  const lower = name.toLowerCase();
  const dot = lower.indexOf('.');
  const wildcard = dot > 0 ? `*${lower.slice(dot)}` : undefined;
  let wild = -1;
  for (let i = 0; i < certificates.length; i++) {
    const names = certificates[i].names ?? [];
    if (names.includes(lower)) return i;
    if (wild < 0 && wildcard !== undefined && names.includes(wildcard)) wild = i;
  }
  return wild;
}

/**
 * Registers listen.tls.certificates on `app` by their names (filled in by the primary, lower-case),
 * each with the listener's routes: uWS keeps routes per name, and `addRoutes` registers them anew
 * (call it after the default routes). `options` gives uWS's options for a pair (its files and the
 * listener's TLS settings).
 */
export function serveByName(app: SslApp, tls: TlsConfig, options: (pair: SniCertificateConfig) => AppOptions, addRoutes: () => void): void {
  if (tls.certificates.length === 0) return;
  const add = (name: string, pair: SniCertificateConfig): void => {
    app.addServerName(name, options(pair)).domain(name);
    addRoutes();
  };
  for (const pair of tls.certificates) for (const name of pair.names ?? []) add(name, pair);
  let added = 0;
  app.missingServerName((name) => {
    if (added >= MAX_CASE_VARIANTS || name === name.toLowerCase()) return; // a lower-case name uWS did not match matches nothing
    const i = certificateFor(tls.certificates, name);
    if (i < 0) return;
    added++;
    add(name, tls.certificates[i]);
  });
}
