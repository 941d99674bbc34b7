// What the primary tells the operator about the host and the config, at start and on reload: the
// descriptor limit, certificates close to expiry, and kernel settings that would reset connections.
import { readFileSync } from 'node:fs';
import { daysUntil } from '../admin/status';
import type { LoadedConfig } from '../config/load';
import { autoWorkerConnections, descriptorsNeeded, readDescriptorLimit, UNKNOWN_LIMIT_CONNECTIONS } from '../descriptors';
import type { WorkerMessage } from '../ipc';
import type { Logger } from '../log';

/** Days left under which the certificate's log line is a warning (Let's Encrypt renews at 30). */
const CERTIFICATE_WARN_DAYS = 14;

/**
 * With SO_REUSEPORT, a listen socket that closes drops the connections queued on it (they are
 * reset), unless the kernel moves them to another listener of the port: net.ipv4.tcp_migrate_req
 * (Linux 5.14+). Said once per reload, when it is off.
 */
export function warnIfQueuesDrop(log: Logger): void {
  let value: string;
  try {
    value = readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  } catch {
    return; // not Linux 5.14+: nothing to suggest
  }
  if (value === '0') log.warn('net.ipv4.tcp_migrate_req is 0: connections queued on an old worker when it stops listening are reset; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1)');
}

/** Logs each certificate the listener serves, with a warning when it has expired or soon will. */
export function announceCertificates(config: LoadedConfig, log: Logger): void {
  for (const cert of config.certificates ?? []) {
    const daysLeft = daysUntil(cert.notAfter, Date.now());
    const served = cert.names.length === 0 ? {} : { names: cert.names.join(' ') };
    const fields = { key: cert.key, cert: cert.file, ...served, subject: cert.subject, altNames: cert.altNames, validTo: cert.validTo, daysLeft, fingerprint256: cert.fingerprint256 };
    if (daysLeft < 0) log.warn(fields, 'TLS certificate has expired: clients will refuse it');
    else if (daysLeft < CERTIFICATE_WARN_DAYS) log.warn(fields, 'TLS certificate expires soon');
    else log.info(fields, 'TLS certificate');
  }
}

/**
 * The descriptor limit every process runs with. Node has raised the soft limit to the hard one
 * already (src/descriptors.ts); said here with both numbers, and a warning if that did not happen.
 */
export function announceDescriptorLimit(log: Logger): void {
  const limit = readDescriptorLimit();
  if (limit === undefined) return log.warn(`descriptor limit unknown (no /proc/self/limits): workerConnections "auto" is ${UNKNOWN_LIMIT_CONNECTIONS}`);
  const fields = { soft: limit.soft, hard: limit.hard };
  if (limit.soft < limit.hard) log.warn(fields, 'descriptor limit: the soft limit could not be raised to the hard one');
  else log.info(fields, 'descriptor limit (soft raised to hard at start; raise hard with LimitNOFILE= or ulimit -Hn)');
}

/** A configured workerConnections that the descriptor limit cannot hold, as NGINX warns "worker_connections exceed open file resource limit". */
export function warnIfDescriptorsShort(config: LoadedConfig, m: Extract<WorkerMessage, { type: 'listening' }>, log: Logger): void {
  const d = m.descriptors;
  if (config.workerConnections === 'auto' || d === undefined) return;
  const needed = descriptorsNeeded(config.workerConnections, d.inUse);
  if (needed > d.soft) {
    log.warn(
      { workerConnections: config.workerConnections, descriptorsNeeded: needed, soft: d.soft, auto: autoWorkerConnections(d, d.inUse) },
      'workerConnections exceeds what the descriptor limit holds: connections past the limit fail with 503 local_resources',
    );
  }
}
