// The backends of bench/storm.ts, in their own process, so that the times at which they accept
// upgrades are not those at which a busy client process gets round to them. Forked with IPC:
// starts three echo backends and sends their URLs; on {kill: i} closes backend i (every tunnel's TCP
// dropped, the port closed); on {report: true} sends each backend's upgrade times (epoch ms).
import { startEchoBackend, type EchoBackend } from '../test/helpers/backends';

type Command = { kill: number } | { report: true };

async function main(): Promise<void> {
  const upgradesAt: number[][] = [[], [], []];
  const backends: EchoBackend[] = [];
  for (let i = 0; i < 3; i++) backends.push(await startEchoBackend({ name: `storm${i}`, onConnection: () => upgradesAt[i].push(Date.now()) }));
  process.on('message', (m: Command) => {
    if ('kill' in m) {
      const at = Date.now();
      void backends[m.kill].close().then(() => process.send?.({ killedAt: at }));
    } else process.send?.({ upgradesAt });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ urls: backends.map((b) => b.url) });
}

void main();
