// Who may use the admin listener. A web page open in the operator's browser must not drive it (a
// cross-origin POST) nor read it (DNS rebinding: its own name resolved to 127.0.0.1): every write
// needs the admin token in Authorization (which no page can send cross-origin without a preflight),
// and every request's Host must be one the listener answers to. Reads stay open to scrapers and
// probes; with no token, writes are refused, except on admin.socket, whose file mode is the credential.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { request } from 'undici';
import { runCli, startBalancer, type Balancer, type LogLine } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { freePort } from '../helpers/ports';
import { waitFor, withTimeout } from '../helpers/wait';
import { closeClients, connect, type TestClient } from '../helpers/ws-client';

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request with exactly these bytes (any Host, or none), read to the end (Connection: close). */
async function raw(target: { port: number; host?: string } | { path: string }, text: string): Promise<Answer> {
  const socket = 'path' in target ? netConnect({ path: target.path }) : netConnect({ port: target.port, host: target.host ?? '127.0.0.1' });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('close', () => resolve());
      socket.write(text);
    }),
    5000,
    `answer to ${text.split('\r\n')[0]}`,
  );
  const all = Buffer.concat(chunks).toString('latin1');
  const [head, ...rest] = all.split('\r\n\r\n');
  const [statusLine, ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

/** An HTTP/1.1 request with these header lines (Host among them, or not). */
const http11 = (method: string, path: string, ...headers: string[]): string => `${method} ${path} HTTP/1.1\r\n${[...headers, 'Connection: close'].join('\r\n')}\r\n\r\n`;

const errorOf = (a: Answer): string => (JSON.parse(a.body) as { error: string }).error;

async function oneBackend(t: TestContext): Promise<EchoBackend> {
  const a = await startEchoBackend({ name: 'a' });
  const clients: TestClient[] = [];
  t.after(async () => {
    await closeClients(clients);
    await closeAll(a);
  });
  return a;
}

const poolOf = (a: EchoBackend): Record<string, unknown> => ({ pools: { chat: { backends: [{ url: a.url }] } }, routes: [{ path: '/', pool: 'chat' }] });

/** The upgrade still reaches backend a (it was not put in maintenance). */
async function stillServes(balancer: Balancer): Promise<void> {
  const c = await connect(balancer.url('/'));
  try {
    assert.equal(await c.whoami(), 'a');
  } finally {
    await c.close();
  }
}

void describe('admin listener access', { timeout: 180_000 }, () => {
  void it('answers only Hosts it may: a rebinding name gets 421 on reads and writes; loopback names, its own address and admin.allowedHosts pass', async (t) => {
    const a = await oneBackend(t);
    const balancer = await startBalancer({ workers: 1, config: { ...poolOf(a), admin: { port: 0, allowedHosts: ['lb1.internal'] } } });
    t.after(() => balancer.stop());
    const port = balancer.adminPort!;
    const maintenance = `/admin?pool=chat&backend=127.0.0.1:${a.port}&state=maintenance`;

    // What a page at http://rebind.example:PORT/ makes the browser send once its name points at 127.0.0.1.
    const write = await raw({ port }, http11('POST', maintenance, `Host: rebind.example:${port}`, 'Origin: http://rebind.example', `Authorization: Bearer ${balancer.adminToken}`));
    assert.equal(write.status, 421);
    assert.match(errorOf(write), /Host "rebind\.example:\d+" is not one this admin listener answers to: .*admin\.allowedHosts/);
    await stillServes(balancer);
    for (const path of ['/status', '/status/history', '/metrics', '/', '/readyz', '/healthz']) {
      const read = await raw({ port }, http11('GET', path, `Host: rebind.example:${port}`));
      assert.equal(read.status, 421, `GET ${path}`);
      assert.doesNotMatch(read.body, /127\.0\.0\.1:\d+|"pools"/, 'nothing of the status leaks');
    }
    for (const host of ['evil.example', 'localhost.evil.example', '127.0.0.1.evil.example:80', 'user@localhost', '[::1', 'lb1.internal.evil']) {
      assert.equal((await raw({ port }, http11('GET', '/status', `Host: ${host}`))).status, 421, `Host: ${host}`);
    }

    // Scrapers and probes: by loopback name or address (any port, IPv6 in brackets, a trailing dot), the listed name, or no Host at all (HTTP/1.0).
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', 'localhost.', `[::1]:${port}`, '127.0.0.2', `lb1.internal:${port}`, 'LB1.Internal.']) {
      assert.equal((await raw({ port }, http11('GET', '/status', `Host: ${host}`))).status, 200, `Host: ${host}`);
    }
    assert.equal((await raw({ port }, 'GET /metrics HTTP/1.0\r\n\r\n')).status, 200, 'HTTP/1.0 without Host');
    // The token (SWITCHYARD_ADMIN_TOKEN here) stays in the primary: no worker has it in its environment.
    assert.ok(readFileSync(`/proc/${balancer.pid}/environ`, 'latin1').includes(balancer.adminToken!));
    assert.ok(!readFileSync(`/proc/${balancer.initialPids[0]}/environ`, 'latin1').includes(balancer.adminToken!), "not in a worker's environment");

    // Counted per refusal; logged once per reason and 10 s, however many come.
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_admin_requests_refused_total', { reason: 'misdirected' }), 13);
    const misdirected = (l: LogLine): boolean => l.msg === 'admin request refused: the Host is not one the admin listener answers to';
    await balancer.waitForLog(misdirected, 5000, 'the refusal logged');
    const lines = balancer.logs.filter(misdirected);
    assert.equal(lines.length, 1, 'one line for 13 refusals within 10 s');
    assert.equal(lines[0].host, `rebind.example:${port}`);
    assert.equal(lines[0].origin, 'http://rebind.example');
  });

  void it('answers to the address it was reached on when bound to every interface (Prometheus scraping 10.0.0.5:PORT); other names need admin.allowedHosts', async (t) => {
    const external = Object.values(networkInterfaces()).flat().find((i) => i?.family === 'IPv4' && !i.internal)?.address;
    assert.ok(external, 'this test needs a non-loopback IPv4 address on this machine, and found none');
    const a = await oneBackend(t);
    const adminPort = await freePort();
    const balancer = await startBalancer({ workers: 1, config: { ...poolOf(a), admin: { host: '0.0.0.0', port: adminPort } } });
    t.after(() => balancer.stop());
    assert.equal((await raw({ port: adminPort, host: external }, http11('GET', '/metrics', `Host: ${external}:${adminPort}`))).status, 200);
    const byName = await raw({ port: adminPort, host: external }, http11('GET', '/metrics', 'Host: lb1.example.com'));
    assert.equal(byName.status, 421);
    assert.match(errorOf(byName), /admin\.allowedHosts/);
  });

  void it('writes need the admin token: 401 with WWW-Authenticate without it or with a wrong one, counted and logged; `switchyard admin` and `reload` send it', async (t) => {
    const a = await oneBackend(t);
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const token = 'c0ffee'.repeat(8);
    writeFileSync(join(dir, 'admin-token'), `${token}\n`, { mode: 0o600 });
    const balancer = await startBalancer({ workers: 1, config: { ...poolOf(a), admin: { port: 0, tokenFile: join(dir, 'admin-token') } } });
    t.after(() => balancer.stop());
    assert.equal(balancer.logs.find((l) => l.msg === 'switchyard ready')?.adminWrites, 'token from admin.tokenFile');
    const port = balancer.adminPort!;
    const maintenance = `/admin?pool=chat&backend=127.0.0.1:${a.port}&state=maintenance`;
    const host = `Host: 127.0.0.1:${port}`;

    // The issue's cross-origin POST, now with a Host the listener answers to: still no token.
    const none = await raw({ port }, http11('POST', maintenance, host, 'Origin: http://evil.example'));
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="switchyard admin"');
    assert.match(errorOf(none), /this needs the admin token: send Authorization: Bearer <token>/);
    const wrong = await raw({ port }, http11('POST', maintenance, host, `Authorization: Bearer ${token.slice(0, -1)}x`));
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="switchyard admin", error="invalid_token"');
    assert.equal(errorOf(wrong), 'the admin token does not match');
    for (const auth of [`Basic ${Buffer.from(`x:${token}`).toString('base64')}`, `Bearer ${token} extra`, `Bearer ${token}${token}`, 'Bearer']) {
      assert.equal((await raw({ port }, http11('POST', maintenance, host, `Authorization: ${auth}`))).status, 401, auth);
    }
    const reload = await raw({ port }, http11('POST', '/reload', host));
    assert.equal(reload.status, 401, 'POST /reload too');
    await stillServes(balancer);
    assert.equal(balancer.logs.filter((l) => l.msg === 'reload refused: still running the previous config' || l.msg === 'reloading: starting new workers').length, 0);

    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_admin_requests_refused_total', { reason: 'missing_token' }), 5, 'no header (twice), Basic, two words, a bare Bearer');
    assert.equal(metrics.sum('switchyard_admin_requests_refused_total', { reason: 'wrong_token' }), 2);
    const refusedLine = (l: LogLine): boolean => typeof l.msg === 'string' && l.msg.startsWith('admin request refused');
    await waitFor(() => balancer.logs.filter(refusedLine).length >= 2, 5000, 'both refusals logged');
    const logged = balancer.logs.filter(refusedLine);
    assert.deepEqual(logged.map((l) => l.reason).sort(), ['missing_token', 'wrong_token'], 'one line per reason');

    // The right token: the write happens.
    const ok = await raw({ port }, http11('POST', `/admin?pool=chat&backend=127.0.0.1:${a.port}&state=drain`, host, `authorization: bearer   ${token}`));
    assert.equal(ok.status, 200, ok.body);

    // The CLI reads the same token: from the running balancer's config, from --token-file, from the environment.
    let cli = await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'ready', '--admin', `127.0.0.1:${port}`]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /^switchyard: this needs the admin token/);
    cli = await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'ready', '--admin', `127.0.0.1:${port}`, '--token-file', join(dir, 'admin-token')]);
    assert.equal(cli.code, 0, cli.stderr);
    // (admin.port is 0 in this config, so --admin says where; the token comes from the config's tokenFile.)
    cli = await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'drain', '--config', balancer.configFile!, '--admin', `127.0.0.1:${port}`]);
    assert.equal(cli.code, 0, cli.stderr);
    cli = await runCli(['reload', '--admin', `127.0.0.1:${port}`], 25_000, { SWITCHYARD_ADMIN_TOKEN: token });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^reloaded: generation 2/);
    cli = await runCli(['reload', '--admin', `127.0.0.1:${port}`], 25_000, { SWITCHYARD_ADMIN_TOKEN: 'not-the-token-at-all' });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /reload refused: the admin token does not match/);
  });

  void it('a reload rotates the token: after the file changes and a reload, the old token is refused and the new one works', async (t) => {
    const a = await oneBackend(t);
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'admin-token');
    const [first, second] = ['1'.repeat(32), '2'.repeat(32)];
    writeFileSync(file, first);
    const balancer = await startBalancer({ workers: 1, config: { ...poolOf(a), admin: { port: 0, tokenFile: file } } });
    t.after(() => balancer.stop());
    const post = async (path: string, token: string): Promise<number> => {
      const res = await request(balancer.adminUrl(path), { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      return res.statusCode;
    };
    writeFileSync(file, second);
    assert.equal(await post('/reload', first), 200, 'the token in force until the reload');
    assert.equal(await post(`/admin?pool=chat&backend=127.0.0.1:${a.port}&state=drain`, first), 401);
    assert.equal(await post(`/admin?pool=chat&backend=127.0.0.1:${a.port}&state=drain`, second), 200);
    // A token file that no longer validates refuses the reload and keeps the token in force.
    writeFileSync(file, 'short');
    assert.equal(await post('/reload', second), 409);
    const refusal = await balancer.waitForLog((l) => l.msg === 'reload refused: still running the previous config', 5000, 'the reload refused');
    assert.match(String(refusal.error), /^config error: admin\.tokenFile \(.*\): must be at least 16 characters/);
    assert.equal(await post(`/admin?pool=chat&backend=127.0.0.1:${a.port}&state=ready`, second), 200);
  });

  void it('with no token, writes get 403 saying how to configure one; reads, the status page and the quick start with --backend keep working', async (t) => {
    const a = await oneBackend(t);
    const balancer = await startBalancer({ workers: 1, adminToken: false, args: ['--backend', a.url] });
    t.after(() => balancer.stop());
    const port = balancer.adminPort!;
    assert.equal(balancer.logs.find((l) => l.msg === 'switchyard ready')?.adminWrites, 'off (no admin token)');
    for (const path of ['/reload', `/admin?pool=default&backend=127.0.0.1:${a.port}&state=maintenance`]) {
      // Whatever Authorization says: there is no token to match.
      const refused = await raw({ port }, http11('POST', path, `Host: 127.0.0.1:${port}`, 'Authorization: Bearer 0123456789abcdef0123'));
      assert.equal(refused.status, 403, path);
      assert.equal(errorOf(refused), 'admin writes are off: no admin token is configured; set admin.tokenFile, admin.token or SWITCHYARD_ADMIN_TOKEN');
    }
    await stillServes(balancer);
    for (const path of ['/', '/status', '/status/history', '/metrics', '/healthz', '/readyz']) {
      const res = await request(balancer.adminUrl(path));
      await res.body.dump();
      assert.equal(res.statusCode, 200, path);
    }
    const cli = await runCli(['reload', '--admin', `127.0.0.1:${port}`], 25_000, { SWITCHYARD_ADMIN_TOKEN: '0123456789abcdef0123' });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /^switchyard: reload refused: admin writes are off: no admin token is configured/);
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_admin_requests_refused_total', { reason: 'writes_off' }), 3);
  });

  void it('admin.socket: a 0600 Unix socket takes writes without a token (its mode is the credential); the CLI uses it from --config; it goes when the balancer stops', async (t) => {
    const a = await oneBackend(t);
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const socket = join(dir, 'admin.sock');
    writeFileSync(socket, ''); // not a socket: refused at start, naming the key
    let failed = await runCli(['start', '--port', String(await freePort()), '--backend', a.url, '--admin-port', '0', '--config', writeSocketConfig(dir, a, socket)]);
    assert.equal(failed.code, 1);
    assert.equal(failed.stderr.trim(), `switchyard: admin.socket: ${socket} exists and is not a socket`);
    rmSync(socket);

    const balancer = await startBalancer({ workers: 1, adminToken: false, config: { ...poolOf(a), admin: { port: 0, socket } } });
    t.after(() => balancer.stop());
    assert.equal(balancer.logs.find((l) => l.msg === 'switchyard ready')?.adminWrites, `admin.socket ${socket}`);
    const mode = statSync(socket);
    assert.ok(mode.isSocket());
    assert.equal(mode.mode & 0o777, 0o600);

    // Writes on the socket need no token and no particular Host; on TCP they are still refused.
    const drain = await raw({ path: socket }, http11('POST', `/admin?pool=chat&backend=127.0.0.1:${a.port}&state=drain`, 'Host: anything.example'));
    assert.equal(drain.status, 200, drain.body);
    const tcp = await raw({ port: balancer.adminPort! }, http11('POST', `/admin?pool=chat&backend=127.0.0.1:${a.port}&state=ready`, 'Host: localhost'));
    assert.equal(tcp.status, 403);
    assert.match(errorOf(tcp), /or write through admin\.socket \(.*admin\.sock\)$/);

    let cli = await runCli(['admin', 'chat', `127.0.0.1:${a.port}`, 'ready', '--config', balancer.configFile!]);
    assert.equal(cli.code, 0, cli.stderr);
    cli = await runCli(['status', '--admin-socket', socket]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`127\\.0\\.0\\.1:${a.port}\\s+up.*\\bready\\b`));
    await stillServes(balancer);

    // A second balancer cannot take a socket that answers.
    failed = await runCli(['start', '--port', String(await freePort()), '--admin-port', '0', '--config', writeSocketConfig(dir, a, socket)]);
    assert.equal(failed.code, 1);
    assert.equal(failed.stderr.trim(), `switchyard: admin.socket: ${socket} is in use by another process`);

    await balancer.stop();
    assert.equal(existsSync(socket), false, 'the socket file is removed at exit');
  });
});

function writeSocketConfig(dir: string, a: EchoBackend, socket: string): string {
  const file = join(dir, 'switchyard.json');
  writeFileSync(file, JSON.stringify({ ...poolOf(a), workers: 1, admin: { socket } }));
  return file;
}
