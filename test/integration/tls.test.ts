// TLS termination (listen.tls, --tls-cert/--tls-key): wss:// tunnels and https:// requests end at
// the balancer and go on to ws:// backends with X-Forwarded-Proto: https; a plaintext client on the
// TLS port gets nothing and disturbs nobody; a reload serves a renewed certificate from the same
// path while open tunnels keep theirs, and refuses a key that does not match or settings the new
// workers cannot load.
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { Agent, request } from 'undici';
import { runCli, startBalancer, writeConfig, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { freePort } from '../helpers/ports';
import { openSocket, rawRequest, socketClosed } from '../helpers/raw-client';
import { certificateDir, makeCertificate, type TestCertificate } from '../helpers/tls';
import { httpIdleCloseMs } from '../../src/uws';
import { closeClients, connect, type TestClient } from '../helpers/ws-client';

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is served. */
async function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

async function setUp(t: TestContext): Promise<{ dir: string; a: EchoBackend; clients: TestClient[] }> {
  const { dir, cleanup } = certificateDir();
  const a = await startEchoBackend({ name: 'a' });
  const clients: TestClient[] = [];
  t.after(async () => {
    await closeClients(clients);
    await closeAll(a);
    cleanup();
  });
  return { dir, a, clients };
}

/** An OpenSSL cipher string that BoringSSL (in uWS) does not parse: no security levels there. */
const BORINGSSL_REJECTS = 'DEFAULT@SECLEVEL=1';

const wss = (balancer: Balancer, path: string): string => `wss://127.0.0.1:${balancer.port}${path}`;

void describe('TLS termination', { timeout: 90_000 }, () => {
  void it('wss:// and https:// reach ws:// backends as https; a plaintext client gets nothing and harms nobody', async (t) => {
    const { dir, a, clients } = await setUp(t);
    const cert = makeCertificate(dir, 'served');
    const balancer = await startBalancer({ workers: 2, args: ['--backend', a.url, '--tls-cert', cert.cert, '--tls-key', cert.key] });
    t.after(() => balancer.stop());
    assert.equal(balancer.logs.find((l) => l.msg === 'switchyard ready')?.tls, true);
    // A client that starts its handshake and stalls (a slow-loris on TLS) is closed by uWS's idle
    // timeout (~10 s on the old build, ~30 s on the current one: src/uws.ts).
    const stalled = await openSocket(balancer.port);
    stalled.on('error', () => undefined);
    stalled.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // the start of a ClientHello record
    const stalledAt = Date.now();
    const stalledClosed = socketClosed(stalled, httpIdleCloseMs + 8000);

    const client = await connect(wss(balancer, '/chat?room=1'), { ca: cert.pem });
    clients.push(client);
    assert.equal(await client.whoami(), 'a');
    assert.equal((await client.request('hello over tls')).text, 'hello over tls');
    const tunnel = a.connections.at(-1);
    assert.equal(tunnel?.url, '/chat?room=1');
    assert.equal(tunnel?.headers['x-forwarded-proto'], 'https');

    const agent = new Agent({ connect: { ca: cert.pem } });
    t.after(() => agent.close());
    const res = await request(`https://127.0.0.1:${balancer.port}/page?q=1`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    const seen = (await res.body.json()) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/page?q=1');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');

    // A client that does not trust the certificate fails its handshake; the balancer answers nothing in clear.
    await assert.rejects(connect(wss(balancer, '/untrusted')), /self-signed certificate/);
    const plain = await openSocket(balancer.port);
    let answered = '';
    plain.on('data', (d: Buffer) => (answered += d.toString('latin1')));
    plain.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await socketClosed(plain, 5000);
    assert.doesNotMatch(answered, /HTTP\/1\.1/, 'no HTTP answer in clear on the TLS port');
    assert.equal((await client.request('still here')).text, 'still here', 'the open tunnel is undisturbed');

    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_tls_certificate_expiry_timestamp_seconds', { file: cert.cert }), cert.notAfter);
    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as { tls: { fingerprint256: string; daysLeft: number; subject: string } | null };
    assert.equal(status.tls?.fingerprint256, cert.fingerprint256);
    assert.equal(status.tls?.daysLeft, 1, 'a certificate made for 2 days has 1 whole day left');
    assert.equal(status.tls?.subject, 'CN=switchyard test served');
    const announced = balancer.logs.find((l) => l.msg === 'TLS certificate expires soon');
    assert.equal(announced?.fingerprint256, cert.fingerprint256, 'a certificate valid for 2 days is announced with a warning');

    await stalledClosed;
    const stalledFor = Date.now() - stalledAt;
    assert.ok(stalledFor > 5000, `the stalled handshake was given uWS's idle timeout, not cut at once (${stalledFor} ms)`);
    assert.equal((await client.request('after the stall')).text, 'after the stall');
  });

  void it('a worker that cannot load the TLS settings stops the start with one line', async (t) => {
    const { dir, a } = await setUp(t);
    const cert = makeCertificate(dir, 'ciphers');
    const { file, cleanup } = writeConfig({ listen: { tls: { cert: cert.cert, key: cert.key, ciphers: BORINGSSL_REJECTS } }, pools: { chat: { backends: [{ url: a.url }] } }, routes: [{ path: '/', pool: 'chat' }] });
    t.after(cleanup);
    const run = await runCli(['start', '--config', file, '--host', '127.0.0.1', '--port', String(await freePort()), '--workers', '1', '--no-admin'], 20_000);
    assert.equal(run.code, 1);
    assert.match(run.stderr.trim(), /^switchyard: cannot listen on 127\.0\.0\.1:\d+: listen\.tls: uWS could not load .*ciphers\.pem and .*ciphers\.key with the ciphers in listen\.tls\.ciphers$/);
  });

  void it('redirectHttpPort: plain HTTP on another port gets a 301 to the same host and URL over https://', async (t) => {
    const { dir, a, clients } = await setUp(t);
    const cert = makeCertificate(dir, 'redirect');
    const httpPort = await freePort();
    const balancer = await startBalancer({
      workers: 2,
      config: { listen: { tls: { cert: cert.cert, key: cert.key, redirectHttpPort: httpPort } }, pools: { chat: { backends: [{ url: a.url }] } }, routes: [{ path: '/', pool: 'chat' }] },
    });
    t.after(() => balancer.stop());
    assert.equal(balancer.logs.find((l) => l.msg === 'switchyard ready')?.redirectHttpPort, httpPort);
    const ask = async (request: string): Promise<{ status: number; headers: Record<string, string> }> => {
      const res = await rawRequest(httpPort, request);
      res.socket.destroy();
      return res;
    };
    const cases: [string, string][] = [
      [`chat.example.com:${httpPort}`, `https://chat.example.com:${balancer.port}/room/7?x=1&y=%20`],
      ['chat.example.com', `https://chat.example.com:${balancer.port}/room/7?x=1&y=%20`],
      [`[::1]:${httpPort}`, `https://[::1]:${balancer.port}/room/7?x=1&y=%20`],
    ];
    for (const [host, location] of cases) {
      const res = await ask(`GET /room/7?x=1&y=%20 HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      assert.equal(res.status, 301, host);
      assert.equal(res.headers.location, location, host);
    }
    // An upgrade on the plain port is redirected too (a client can then retry with wss://); a bad Host is a 400.
    const upgrade = await ask(`GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    assert.equal(upgrade.status, 301);
    assert.equal(upgrade.headers.location, `https://localhost:${balancer.port}/chat`);
    assert.equal((await ask('GET / HTTP/1.1\r\nHost: evil.example/x\r\n\r\n')).status, 400);
    assert.equal(a.httpRequests.length + a.connections.length, 0, 'nothing reached the backend from the plain port');
    // The https side works as ever.
    const client = await connect(wss(balancer, '/'), { ca: cert.pem });
    clients.push(client);
    assert.equal(await client.whoami(), 'a');
    // After a reload the new workers answer on the plain port; the old ones stopped listening there.
    const reloaded = await runCli(['reload', ...balancer.adminArgs()], 25_000);
    assert.equal(reloaded.code, 0, reloaded.stderr);
    for (let i = 0; i < 6; i++) assert.equal((await ask('GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n')).headers.location, `https://localhost:${balancer.port}/again`);
    assert.equal(await client.whoami(), 'a', 'the tunnel opened before the reload lives on');
  });

  void it('redirectHttpPort taken by another program: the start fails with one line naming the key', async (t) => {
    const { dir, a } = await setUp(t);
    const cert = makeCertificate(dir, 'taken');
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const taken = (squatter.address() as AddressInfo).port;
    const { file, cleanup } = writeConfig({ listen: { tls: { cert: cert.cert, key: cert.key, redirectHttpPort: taken } }, pools: { chat: { backends: [{ url: a.url }] } }, routes: [{ path: '/', pool: 'chat' }] });
    t.after(cleanup);
    const run = await runCli(['start', '--config', file, '--host', '127.0.0.1', '--port', String(await freePort()), '--workers', '1', '--no-admin'], 20_000);
    assert.equal(run.code, 1);
    assert.equal(run.stderr.trim(), `switchyard: port ${taken} on 127.0.0.1 is already in use (listen.tls.redirectHttpPort)`);
  });

  void it('serves an encrypted key given its passphrase', async (t) => {
    const { dir, a, clients } = await setUp(t);
    const cert = makeCertificate(dir, 'locked', { passphrase: 'open sesame', days: 90 });
    const balancer = await startBalancer({
      workers: 1,
      config: { listen: { tls: { cert: cert.cert, key: cert.key, passphrase: 'open sesame' } }, pools: { chat: { backends: [{ url: a.url }] } }, routes: [{ path: '/', pool: 'chat' }] },
    });
    t.after(() => balancer.stop());
    const client = await connect(wss(balancer, '/'), { ca: cert.pem });
    clients.push(client);
    assert.equal(await client.whoami(), 'a');
    assert.ok(balancer.logs.some((l) => l.msg === 'TLS certificate' && l.daysLeft === 89), 'a certificate with 90 days left is announced as info');
    const check = await runCli(['check', '--config', balancer.configFile!]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /: ok \(1 pools, 1 backends, 1 routes; TLS certificate CN=switchyard test locked, valid to \d{4}-\d\d-\d\dT/);
  });

  void it('reload serves a renewed certificate from the same path; open tunnels keep theirs; a mismatched key or turning TLS off is refused', async (t) => {
    const { dir, a, clients } = await setUp(t);
    const first = makeCertificate(dir, 'first');
    const live: TestCertificate = { ...first, cert: join(dir, 'live.pem'), key: join(dir, 'live.key') };
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    const pools = { pools: { chat: { backends: [{ url: a.url }] } }, routes: [{ path: '/', pool: 'chat' }] };
    const config = { listen: { tls: { cert: live.cert, key: live.key } }, ...pools };
    const balancer = await startBalancer({ workers: 2, config });
    t.after(() => balancer.stop());
    const admin = balancer.adminArgs();
    assert.equal(await servedFingerprint(balancer.port), first.fingerprint256);
    const old = await connect(wss(balancer, '/old'), { ca: first.pem });
    clients.push(old);

    // As certbot renews: new files written over the live ones, then a reload.
    const renewed = makeCertificate(dir, 'renewed', { days: 60 });
    copyFileSync(renewed.cert, live.cert);
    copyFileSync(renewed.key, live.key);
    let cli = await runCli(['reload', ...admin], 25_000);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(await servedFingerprint(balancer.port), renewed.fingerprint256);
    const fresh = await connect(wss(balancer, '/fresh'), { ca: renewed.pem });
    clients.push(fresh);
    assert.equal(await fresh.whoami(), 'a');
    assert.equal(await old.whoami(), 'a', 'the tunnel opened with the old certificate lives on');
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_tls_certificate_expiry_timestamp_seconds', { file: live.cert }), renewed.notAfter);

    // A certificate whose key was not renewed with it: refused, the renewed one is still served.
    writeFileSync(live.cert, makeCertificate(dir, 'stray').pem);
    cli = await runCli(['reload', ...admin], 25_000);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /reload refused: config error: listen\.tls\.key: .*live\.key does not match the certificate in .*live\.pem/);
    assert.equal(await servedFingerprint(balancer.port), renewed.fingerprint256);

    copyFileSync(renewed.cert, live.cert);
    // Ciphers Node's OpenSSL accepts (so the primary's check passes) and uWS's BoringSSL does not: the
    // new workers cannot build their listener, the reload is refused, the old workers serve on.
    balancer.rewriteConfig({ ...config, listen: { tls: { ...config.listen.tls, ciphers: BORINGSSL_REJECTS } } });
    cli = await runCli(['reload', ...admin], 25_000);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /reload refused: a new worker could not listen: listen\.tls: uWS could not load .* with the ciphers in listen\.tls\.ciphers/);
    assert.equal(await servedFingerprint(balancer.port), renewed.fingerprint256);
    assert.equal(await old.whoami(), 'a');
    assert.equal(await fresh.whoami(), 'a');

    balancer.rewriteConfig(pools);
    cli = await runCli(['reload', ...admin], 25_000);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /listen\.tls: TLS cannot be turned on or off on reload; restart switchyard to change it/);
    assert.equal(await servedFingerprint(balancer.port), renewed.fingerprint256);
    assert.equal(await old.whoami(), 'a');
  });
});
