// `switchyard check`'s one lookup of each DNS source: what the balancer would find now, or why not.
// A failed lookup is a warning, not a config error: the name may resolve only where the balancer runs.
import type { PoolConfig } from '../config/schema';
import { addressName } from './backend-set';
import { sourcesOf } from './discovery';
import { createResolver, lookup } from './dns-lookup';

/** One line per DNS source of every pool: its addresses (with SRV weights), or a warning naming the pool, the name and the error. */
export async function checkDnsSources(pools: Readonly<Record<string, PoolConfig>>): Promise<string[]> {
  const checks = Object.entries(pools).flatMap(([pool, pc]) =>
    sourcesOf(pc).map(async (source): Promise<string> => {
      // One try, so the check waits at most `timeout` per name.
      const resolver = createResolver(source, 1);
      try {
        const { addresses } = await lookup(resolver, source);
        const found = addresses.map((a) => `${addressName(a)}${a.weight === undefined ? '' : ` weight ${a.weight}`}`);
        return `pool ${pool}: DNS ${source.dns} gives ${found.join(', ')}`;
      } catch (err) {
        const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        return `warning: pool ${pool}: DNS lookup of ${source.dns} failed here (${reason}); the balancer keeps asking at run time (a name may resolve only from where the balancer runs)`;
      } finally {
        resolver.cancel();
      }
    }),
  );
  return Promise.all(checks);
}
