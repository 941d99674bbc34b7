// The admin listener's status page in a real browser (Debian's Chromium, headless): it renders
// /status while traffic flows and shows the numbers the balancer really has, and charts the last
// minutes the primary sampled (/status/history), in a page opened at any time.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackends, type EchoBackend } from '../helpers/backends';
import { connectMany, type TestClient } from '../helpers/ws-client';
import { delay, waitFor } from '../helpers/wait';
import type { History } from '../../src/admin/status-history';
import type { Status } from '../../src/admin/status';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The cells of a table body, as the page shows them. */
function tableCells(page: Page, id: string): Promise<string[][]> {
  return page.evaluate<string[][]>(`[...document.querySelectorAll('#${id} tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent))`);
}

/** What a chart draws of one series: its points (from the path's d) and the latest value. */
interface Drawn {
  points: number;
  latest: number;
  /** Points of the path's d attribute (M and L commands). */
  pathPoints: number;
}

function drawn(page: Page, chart: string, series: string): Promise<Drawn | null> {
  return page.evaluate<Drawn | null>(`(() => {
    const path = document.querySelector(${JSON.stringify(`${chart} path.line[data-series="${series}"]`)});
    if (!path) return null;
    return { points: Number(path.dataset.points), latest: Number(path.dataset.latest), pathPoints: (path.getAttribute('d').match(/[ML]/g) || []).length };
  })()`);
}

/** An upgrade request without Sec-WebSocket-Key: the balancer refuses it (400, bad_request). */
function badUpgrade(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/bad', headers: { connection: 'Upgrade', upgrade: 'websocket' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

void describe('browser: the status page', { timeout: 150_000 }, () => {
  let browser: Browser | undefined;
  let balancer: Balancer | undefined;
  let backends: EchoBackend[] = [];
  const clients: TestClient[] = [];
  let stopTraffic = false;
  let traffic: Promise<void> | undefined;
  /** Console errors and uncaught exceptions of every page opened. */
  const pageErrors: string[] = [];

  /** A new page at `url`, its errors collected; `historyFetches` counts its requests for /status/history. */
  async function openPage(url: string): Promise<{ page: Page; historyFetches: () => number }> {
    const page = await browser!.newPage();
    let fetches = 0;
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/status/history') fetches++;
    });
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (err) => pageErrors.push(`page error: ${err.message}`));
    await page.goto(url);
    return { page, historyFetches: () => fetches };
  }

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install it with "apt-get install -y chromium" (.ci/run does), or set CHROMIUM_PATH`);
    backends = await startEchoBackends(2, 'sp');
    balancer = await startBalancer({
      config: {
        admin: { port: 0 },
        pools: {
          chat: { algorithm: 'round-robin', backends: backends.map((b, i) => ({ url: b.url, maxConnections: i === 0 ? 100 : 0 })) },
          rooms: { algorithm: 'hash', hashKey: 'path:2', balanceFactor: 1.25, slowStart: '30s', maxUpgradesPerSecond: 500, rebalance: { auto: false, maxSkew: 1.5 }, backends: backends.map((b, i) => ({ url: b.url, admin: i === 1 ? 'maintenance' : 'ready' })) },
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
      const deadline = Date.now() + 120_000;
      for (let round = 0; !stopTraffic && Date.now() < deadline; round++) {
        for (const c of clients) await c.request(`r${round}`);
        await delay(10);
      }
    })();

    const { page } = await openPage(b.adminUrl('/'));
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
      ['chat', 'round-robin', '-', '-', '-', '-', '-', 'on command; 0 moved'],
      ['rooms', 'hash', 'path:2', '1.25', '30 s', '500/s a backend, 0 waited', '-', 'on command above 1.5, 50/s; 0 moved'],
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
    assert.deepEqual(pageErrors, [], 'no console errors');
  });

  void it('charts the last minutes from the primary at once in a fresh page; the latest points match /status', async () => {
    const b = balancer!;
    const history = async (): Promise<History> => (await fetch(b.adminUrl('/status/history'))).json() as Promise<History>;
    const status = async (): Promise<Status> => (await fetch(b.adminUrl('/status'))).json() as Promise<Status>;
    // Some refused upgrades for the upgrades chart.
    for (let i = 0; i < 3; i++) assert.equal(await badUpgrade(b.port), 400);
    // The primary samples every 5 s: wait until it has a few under traffic, refusals included.
    await waitFor(
      async () => {
        const h = await history();
        return h.at.length >= 4 && h.messagesPerSecond.toBackend.some((v) => v !== null && v > 0) && h.upgradesPerSecond.refused.some((v) => v !== null && v > 0);
      },
      40_000,
      'the primary to have sampled traffic and refusals',
      500,
    );

    // A page opened now draws those samples on its first refresh, not only what it polls itself.
    const { page, historyFetches } = await openPage(b.adminUrl('/'));
    await page.waitForSelector('#chart-messages path.line[data-series="to_backend"]', { timeout: 10_000 });
    const first = await drawn(page, '#chart-messages', 'to_backend');
    assert.ok(first !== null && first.points >= 3, `points on the first draw: ${JSON.stringify(first)}`);
    assert.ok(first.points > historyFetches(), `${first.points} points after ${historyFetches()} fetch(es) of the history: they come from the primary`);
    assert.equal(first.pathPoints, first.points, 'the path has a point per sample');

    // Per pool, a line per backend; its latest point is the tunnels /status counts (steady now).
    const s = await status();
    const chat = s.pools.find((p) => p.name === 'chat')!;
    for (const backend of chat.backends) {
      assert.ok(backend.tunnels > 0, `${backend.name} holds tunnels`);
      await waitFor(
        async () => (await drawn(page, '.chart[data-pool="chat"]', backend.name))?.latest === backend.tunnels,
        15_000,
        `the chat chart's latest point for ${backend.name} to be ${backend.tunnels} (/status)`,
        200,
      );
      const legend = await page.textContent(`.chart[data-pool="chat"] .legend li[data-series="${backend.name}"] .v`);
      assert.equal(legend, `${backend.tunnels} now`, 'the number is in text beside the chart');
    }
    const rooms = await page.evaluate<string[]>(`[...document.querySelectorAll('.chart[data-pool="rooms"] path.line')].map((p) => p.dataset.latest)`);
    assert.deepEqual(rooms, ['0', '0'], 'the rooms pool has no tunnels');
    const total = chat.backends.reduce((n, x) => n + x.tunnels, 0);
    assert.equal(total, Number(await page.textContent('#tunnels')), 'the tile and the charts agree');

    // Messages flow both ways; upgrades: some refused, and the reason in text.
    for (const series of ['to_backend', 'to_client']) {
      const d = await drawn(page, '#chart-messages', series);
      assert.ok(d !== null && d.latest > 0, `messages/s ${series}: ${JSON.stringify(d)}`);
      const text = await page.textContent(`#chart-messages .legend li[data-series="${series}"] .v`);
      assert.match(text ?? '', /^[\d.]+k?\/s now$/);
    }
    const refused = await drawn(page, '#chart-upgrades', 'refused');
    assert.ok(refused !== null && refused.points >= 3, `refused upgrades drawn: ${JSON.stringify(refused)}`);
    assert.ok(await page.evaluate<boolean>(`[...document.querySelectorAll('#chart-upgrades path[data-series="refused"]')].length === 1`));
    assert.equal(await page.textContent('#refusals'), 'Refused in total: bad_request 3');
    assert.equal(await page.getAttribute('#chart-messages svg.plot', 'role'), 'img');
    assert.equal(await page.getAttribute('#chart-messages svg.plot', 'aria-describedby'), 'chart-messages-legend');

    // Redraws keep the page still: the charts' boxes do not move or change size.
    const boxes = (): Promise<string> => page.evaluate<string>(`JSON.stringify([...document.querySelectorAll('.chart')].map((f) => { const r = f.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }))`);
    const before = await boxes();
    const fetchesBefore = historyFetches();
    await waitFor(() => historyFetches() >= fetchesBefore + 2, 10_000, 'two more refreshes');
    assert.equal(await boxes(), before);

    if (process.env.STATUS_SCREENSHOT) {
      await page.screenshot({ path: process.env.STATUS_SCREENSHOT, fullPage: true });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: process.env.STATUS_SCREENSHOT.replace(/(\.png)?$/, '-dark.png'), fullPage: true });
    }
    assert.deepEqual(pageErrors, [], 'no console errors');
  });
});
