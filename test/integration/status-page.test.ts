// The admin listener's status page in a real browser (Debian's Chromium, headless): it renders
// /status while traffic flows and shows the numbers the balancer really has.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackends, type EchoBackend } from '../helpers/backends';
import { connectMany, type TestClient } from '../helpers/ws-client';
import { delay } from '../helpers/wait';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The cells of a table body, as the page shows them. */
function tableCells(page: Page, id: string): Promise<string[][]> {
  return page.evaluate<string[][]>(`[...document.querySelectorAll('#${id} tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent))`);
}

void describe('browser: the status page', { timeout: 90_000 }, () => {
  let browser: Browser | undefined;
  let balancer: Balancer | undefined;
  let backends: EchoBackend[] = [];
  const clients: TestClient[] = [];
  let stopTraffic = false;
  let traffic: Promise<void> | undefined;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install it with "apt-get install -y chromium" (.ci/run does), or set CHROMIUM_PATH`);
    backends = await startEchoBackends(2, 'sp');
    balancer = await startBalancer({
      config: {
        admin: { port: 0 },
        pools: {
          chat: { algorithm: 'round-robin', backends: backends.map((b, i) => ({ url: b.url, maxConnections: i === 0 ? 100 : 0 })) },
          rooms: { algorithm: 'hash', hashKey: 'path:2', balanceFactor: 1.25, slowStart: '30s', backends: backends.map((b, i) => ({ url: b.url, admin: i === 1 ? 'maintenance' : 'ready' })) },
        },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  after(async () => {
    stopTraffic = true;
    await traffic?.catch(() => undefined);
    for (const c of clients) c.terminate();
    await browser?.close();
    await stopAll(balancer);
    await closeAll(...backends);
  });

  void it('shows the open tunnels, both backends up, messages/s above zero and both workers', async () => {
    const b = balancer!;
    const N = 10;
    clients.push(...(await connectMany(N, (i) => b.url(`/room?i=${i}`))));
    // Messages keep flowing (bounded) while the page watches.
    traffic = (async () => {
      const deadline = Date.now() + 60_000;
      for (let round = 0; !stopTraffic && Date.now() < deadline; round++) {
        for (const c of clients) await c.request(`r${round}`);
        await delay(10);
      }
    })();

    const page = await browser!.newPage();
    await page.goto(b.adminUrl('/'));
    // The page refreshes by itself; wait until it shows a message rate (needs two refreshes).
    await page.waitForFunction("Number(document.getElementById('rate-to-backend').textContent) > 0", undefined, { timeout: 15_000 });

    assert.equal(await page.textContent('#tunnels'), String(N));
    assert.equal(await page.textContent('#readiness'), 'ready');
    assert.equal(await page.textContent('#redis'), 'not configured');
    assert.equal(await page.textContent('#port'), String(b.port));
    assert.ok(Number(await page.textContent('#rate-to-client')) > 0, 'messages/s to clients shown above zero');
    assert.equal(Number(await page.textContent('#upgrades-ok')), N);

    const rows = (await tableCells(page, 'backends')).filter((row) => row[0] === 'chat');
    assert.equal(rows.length, 2);
    // Each backend's tunnel count is what that backend really holds.
    for (const [i, row] of rows.entries()) {
      assert.deepEqual(row.slice(0, 5), ['chat', `127.0.0.1:${backends[i].port}`, 'ready', 'up', String(backends[i].openCount())], `backend row ${i}`);
    }
    assert.equal(rows.reduce((n, row) => n + Number(row[4]), 0), N);
    assert.deepEqual(rows.map((row) => row[7]), ['100', '-'], 'each backend\'s maxConnections');
    assert.deepEqual(await tableCells(page, 'pools'), [
      ['chat', 'round-robin', '-', '-', '-'],
      ['rooms', 'hash', 'path:2', '1.25', '30 s'],
    ]);
    assert.deepEqual(rows.map((row) => row[8]), ['-', '-'], 'nothing ramps at start');

    // A backend back from maintenance ramps: its row says for how long.
    const back = `127.0.0.1:${backends[1].port}`;
    const res = await fetch(b.adminUrl(`/admin?pool=rooms&backend=${back}&state=ready`), { method: 'POST', headers: b.adminHeaders() });
    assert.equal(res.status, 200, await res.text());
    await page.waitForFunction(
      `/^ramping, (2[0-9]|30) s left$/.test(document.querySelector('#backends tr[data-pool="rooms"][data-backend="${back}"] td:nth-child(9)')?.textContent ?? '')`,
      undefined,
      { timeout: 10_000 },
    );
    const workers = await tableCells(page, 'workers');
    assert.deepEqual(workers.map((w) => Number(w[1])).sort(), [...b.initialPids].sort());
    for (const w of workers) assert.equal(w[2], 'yes');
    assert.equal(await page.textContent('#worker-count'), '2 / 2');

    // It keeps refreshing: one more tunnel appears without a reload.
    clients.push(...(await connectMany(1, () => b.url('/late'))));
    await page.waitForFunction(`document.getElementById('tunnels').textContent === '${N + 1}'`, undefined, { timeout: 10_000 });
    if (process.env.STATUS_SCREENSHOT) await page.screenshot({ path: process.env.STATUS_SCREENSHOT, fullPage: true });
  });
});
