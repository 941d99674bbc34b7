// Soak check (not part of npm test) for a defect found and fixed this session: a freshly upgraded
// tunnel was sometimes closed with 1006 by uWS inside res.upgrade() (the close handler ran
// synchronously from the upgrade's .then in listener.ts), around the 25th-35th open-request-close
// cycle, when the backend socket kept reading between its 101 and the tunnel taking it over. With the
// socket paused in that window (backend-socket.ts) it stays at 0 failures; run it after touching
// the upgrade path.
// Usage: node --import tsx test/soak/upgrade-churn.ts [hc|no] [scrape interval ms] [seconds]
import { closeAll, startEchoBackend } from '../helpers/backends';
import { startBalancer } from '../helpers/balancer';
import { connect, type TestClient } from '../helpers/ws-client';

async function main(): Promise<void> {
  const healthCheck = process.argv[2] === 'hc' ? { healthCheck: { type: 'tcp', interval: '200ms' } } : {};
  const scrapeMs = Number(process.argv[3] ?? 1000);
  const seconds = Number(process.argv[4] ?? 20);
  const backend = await startEchoBackend({ name: 'soak' });
  const balancer = await startBalancer({
    config: { admin: { port: 0 }, pools: { chat: { backends: [{ url: backend.url }], ...healthCheck } }, routes: [{ path: '/', pool: 'chat' }] },
  });
  const scraper = setInterval(() => void fetch(balancer.adminUrl('/metrics')).then((r) => r.text()).catch(() => undefined), scrapeMs);
  const steady: TestClient[] = [];
  for (let i = 0; i < 4; i++) steady.push(await connect(balancer.url(`/steady?i=${i}`)));
  let failures = 0;
  let cycles = 0;
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    cycles++;
    try {
      const c = await connect(balancer.url(`/short?r=${cycles}`));
      await c.request('hello');
      await c.close(cycles % 2 === 0 ? 1000 : 4000);
      for (const s of steady) await s.request(`m${cycles}`);
    } catch (err) {
      failures++;
      if (failures <= 3) console.log(`cycle ${cycles}: ${(err as Error).message}`);
    }
  }
  console.log(`${cycles} cycles, ${failures} failures`);
  clearInterval(scraper);
  await balancer.stop();
  await closeAll(backend);
}

void main();
