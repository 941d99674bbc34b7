// The second runtime of the benchmark: a Debian 13 root filesystem with Node 24 and the current
// uWebSockets.js build, next to this machine's Node and build. scripts/run-leg makes it (once) and
// keeps it mounted while the run lasts (--hold, held open by our pipe to its standard input, so it
// unmounts even when the runner dies); scripts/in-rootfs starts a process inside. A chroot shares
// this machine's network and /proc, so the proxy listens on the same loopback and its process tree
// is measured as any other; it does not share /tmp, so the run's files live under the root.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');

/** Switchyard's runtimes in a root filesystem: the name suffix a proxy takes there, and the run-leg leg. */
export const ROOTFS_LEG = 'trixie';
/** The Node major version run-leg puts in it. */
const ROOTFS_NODE = '24';

export interface Rootfs {
  /** The root filesystem's directory on this machine (SWITCHYARD_ROOTFS, or run-leg's default). */
  root: string;
  /** What runs inside, as run-leg reports it: Node's version and the C library's. */
  runtime: string;
  /** A path under `root`, as a process inside sees it. */
  inside(path: string): string;
  /** The command line that runs `command args…` inside with the same pid (scripts/in-rootfs). */
  command(command: string, args: string[]): [string, string[]];
  /** Ends the hold: run-leg kills whatever still runs inside and unmounts. */
  release(): Promise<void>;
}

/**
 * Mounts the root filesystem for this run (making it first if it does not exist: a few minutes).
 * run-leg refuses a root another run holds; SWITCHYARD_ROOTFS names another one.
 */
export function holdRootfs(timeoutMs = 15 * 60_000): Promise<Rootfs> {
  const child = spawn(join(ROOT, 'scripts/run-leg'), [ROOTFS_LEG, '--node', ROOTFS_NODE, '--hold'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let out = '';
    const fail = (why: string): void => {
      clearTimeout(timer);
      child.stdin.end();
      reject(new Error(`scripts/run-leg ${ROOTFS_LEG} --hold: ${why}`));
    };
    const timer = setTimeout(() => fail(`not mounted within ${timeoutMs / 1000} s`), timeoutMs);
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        const held = /^run-leg: holding (\/\S+) \((.*)\) until standard input closes$/.exec(line);
        if (!held) {
          process.stderr.write(`${line}\n`); // making the root filesystem, fetching Node
          continue;
        }
        clearTimeout(timer);
        // "Node v24.1.0, ldd (Debian GLIBC 2.41-12) 2.41" -> "Node v24.1.0, glibc 2.41"
        resolve(rootfs(held[1], held[2].replace(/ldd .* ([\d.]+)$/, 'glibc $1'), child, exited));
      }
    });
    child.once('exit', (code) => fail(`exited with code ${code} before the root filesystem was mounted`));
  });
}

function rootfs(root: string, runtime: string, holder: ChildProcess, exited: Promise<void>): Rootfs {
  return {
    root,
    runtime,
    inside(path) {
      if (!path.startsWith(`${root}/`)) throw new Error(`${path} is outside the root filesystem ${root}`);
      return path.slice(root.length);
    },
    command: (command, args) => [join(ROOT, 'scripts/in-rootfs'), [root, command, ...args]],
    async release() {
      holder.stdin!.end();
      await exited;
    },
  };
}

/** Which uWebSockets.js binding Switchyard loads with `node` (on this machine, or in `rootfs`). */
export function bindingName(rootfs?: Rootfs): string {
  const args = ['-p', "require('./dist/src/uws.js').uwsBindingName"];
  const [command, argv] = rootfs ? rootfs.command('node', args) : [process.execPath, args];
  return execFileSync(command, argv, { cwd: ROOT, encoding: 'utf8' }).trim();
}
