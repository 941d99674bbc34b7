// The last resort of every process, primary and worker: a promise rejected with nobody to hear it is
// logged and the process carries on (the failed chain unwound normally, nothing is half done); an
// exception that reached the event loop is logged and the process exits, since nothing says what it
// left half done (a worker is restarted by the primary). Every known path handles its own errors;
// a line here is a defect to fix.
import type { Logger } from './log';

export function installLastResort(log: Logger): void {
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled promise rejection (a defect): carrying on');
  });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception (a defect): exiting');
    process.exit(1);
  });
}
