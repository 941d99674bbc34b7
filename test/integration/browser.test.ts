// A real browser (Debian's Chromium, headless) chats through the balancer: the demo page and its
// WebSocket both come through Switchyard, two tabs land on different backends, and a message typed
// in one appears in the other. Chromium offers permessage-deflate, as browsers do. The same page over
// a TLS listener (https:// and wss://) too. (Playwright gives each launch a fresh temporary profile.)
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT, startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { freePort } from '../helpers/ports';
import { certificateDir, makeCertificate } from '../helpers/tls';
import { waitFor } from '../helpers/wait';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

async function startChatBackend(port: number, name: string, peer: number): Promise<ChildProcess> {
  const script = join(REPO_ROOT, 'dist', 'examples', 'chat-backend.js');
  const proc = spawn(process.execPath, [script, '--port', String(port), '--name', name, '--peer', `ws://127.0.0.1:${peer}/peer`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('listening'), 10_000, `chat backend ${name} to listen`);
  return proc;
}

void describe('browser: the demo chat through the balancer', { timeout: 90_000 }, () => {
  let browser: Browser | undefined;
  let balancer: Balancer | undefined;
  let tlsBalancer: Balancer | undefined;
  /** Serves the page, but its /ws pool's only backend is a port nothing listens on: every upgrade fails. */
  let refusing: Balancer | undefined;
  const backends: ChildProcess[] = [];
  const certs = certificateDir();

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install it with "apt-get install -y chromium" (.ci/run does), or set CHROMIUM_PATH`);
    const [a, b] = [await freePort(), await freePort()];
    backends.push(await startChatBackend(a, 'alpha', b), await startChatBackend(b, 'beta', a));
    const backendList = [{ url: `ws://127.0.0.1:${a}` }, { url: `ws://127.0.0.1:${b}` }];
    // Page and WebSocket on separate pools, so the page's HTTP requests don't shift the round-robin of tunnels.
    const config = {
      pools: { web: { backends: backendList }, chat: { algorithm: 'round-robin', backends: backendList } },
      routes: [{ path: '/ws', pool: 'chat', mode: 'websocket' }, { path: '/', pool: 'web', mode: 'http' }],
    };
    balancer = await startBalancer({ config, workers: 1 });
    const cert = makeCertificate(certs.dir, 'browser');
    // A second certificate, served to chat.example by SNI (the browser resolves that name to 127.0.0.1).
    const sni = makeCertificate(certs.dir, 'sni-chat', { altNames: 'DNS:chat.example' });
    const tls = { cert: cert.cert, key: cert.key, certificates: [{ cert: sni.cert, key: sni.key }] };
    tlsBalancer = await startBalancer({ config: { ...config, listen: { tls } }, workers: 1 });
    const nobody = await freePort();
    refusing = await startBalancer({
      config: { ...config, pools: { ...config.pools, chat: { backends: [{ url: `ws://127.0.0.1:${nobody}` }] } } },
      workers: 1,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--host-resolver-rules=MAP chat.example 127.0.0.1', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    await stopAll(balancer, tlsBalancer, refusing);
    for (const p of backends) p.kill('SIGTERM');
    certs.cleanup();
  });

  /** Opens the demo page; `sockets` collects the URLs of the WebSockets it opens. */
  async function openTab(url = balancer!.httpUrl('/'), sockets: string[] = []): Promise<Page> {
    // The TLS listener's certificate is self-signed: this page ignores certificate errors.
    const page = await browser!.newPage({ ignoreHTTPSErrors: true });
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(url);
    await page.waitForFunction("document.getElementById('status').textContent.startsWith('connected via backend')", undefined, { timeout: 10_000 });
    return page;
  }

  void it('two tabs on different backends chat with each other', async () => {
    const tab1 = await openTab();
    const tab2 = await openTab();
    const served1 = await tab1.textContent('#status');
    const served2 = await tab2.textContent('#status');
    assert.notEqual(served1?.split(' ')[3], served2?.split(' ')[3], `round-robin should put the tabs on different backends: ${served1} / ${served2}`);

    await tab1.fill('#name', 'ann');
    await tab1.fill('#text', 'hello from tab one');
    await tab1.click('#send');
    await tab2.waitForFunction("document.getElementById('log').textContent.includes('hello from tab one')", undefined, { timeout: 10_000 });
    const line = await tab2.textContent('#log');
    assert.match(line ?? '', /ann:hello from tab one/);
  });

  void it('over TLS: the page by https:// and its WebSocket by wss://, ended at the balancer', async () => {
    const sockets: string[] = [];
    const tab = await openTab(`https://127.0.0.1:${tlsBalancer!.port}/`, sockets);
    assert.deepEqual(sockets, [`wss://127.0.0.1:${tlsBalancer!.port}/ws`]);
    await tab.fill('#name', 'tls');
    await tab.fill('#text', 'hello through wss');
    await tab.click('#send');
    await tab.waitForFunction("document.getElementById('log').textContent.includes('hello through wss')", undefined, { timeout: 10_000 });
  });

  void it('over TLS by name: chat.example gets its certificate by SNI and chats; 127.0.0.1 (no SNI) gets the default', async () => {
    for (const [host, subject] of [['chat.example', 'switchyard test sni-chat'], ['127.0.0.1', 'switchyard test browser']]) {
      const page = await browser!.newPage({ ignoreHTTPSErrors: true });
      const response = await page.goto(`https://${host}:${tlsBalancer!.port}/`);
      assert.equal((await response?.securityDetails())?.subjectName, subject, host);
      await page.waitForFunction("document.getElementById('status').textContent.startsWith('connected via backend')", undefined, { timeout: 10_000 });
    }
  });

  void it('reconnects with jittered exponential backoff while its upgrades fail', async () => {
    // The page cannot see why (a browser hides a refused handshake's status and Retry-After): it
    // waits a random point of the upper half of 1 s, 2 s, 4 s ... between attempts.
    const page = await browser!.newPage();
    const attempts: number[] = [];
    // The page waits at least 500 ms between its attempts; two handshakes the browser reports within
    // 100 ms are one attempt Chromium retried on a fresh connection (seen once in many runs).
    page.on('websocket', () => {
      const now = Date.now();
      if (attempts.length === 0 || now - attempts[attempts.length - 1] >= 100) attempts.push(now);
    });
    await page.goto(refusing!.httpUrl('/'));
    await waitFor(() => attempts.length >= 4, 20_000, `4 WebSocket attempts (${attempts.length} so far)`);
    const gaps = attempts.slice(1, 4).map((at, i) => at - attempts[i]);
    for (const [i, gap] of gaps.entries()) {
      const ceiling = 1000 * 2 ** i;
      assert.ok(gap >= ceiling / 2 - 50 && gap <= ceiling + 1000, `gap ${i + 1}: ${gap} ms, expected ${ceiling / 2}-${ceiling} ms (all: ${gaps.join(', ')})`);
    }
    assert.match((await page.textContent('#status')) ?? '', /reconnecting in \d+\.\ds$/);
    await page.close();
  });
});
