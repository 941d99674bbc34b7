// Several certificates on the TLS listener (listen.tls.certificates), as `openssl s_client
// -servername` sees them: each name gets its certificate, ignoring case, `*.` for one label; no name
// or an unknown one gets the default; nothing but JSON log lines reaches stdout meanwhile (uWS can
// print on SNI); each certificate is in `switchyard check`, /status and the expiry metric; a reload
// changes the names.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { runCli, startBalancer, writeConfig } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { certificateDir, makeCertificate } from '../helpers/tls';
import { connect } from '../helpers/ws-client';

/** The SHA-256 fingerprint of the certificate `openssl s_client` is served with this SNI (none: no SNI at all). */
function servedTo(port: number, serverName: string | undefined): Promise<string> {
  const sni = serverName === undefined ? ['-noservername'] : ['-servername', serverName];
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...sni], { timeout: 10_000 }, (err, stdout) => {
      const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout);
      if (pem) resolve(new X509Certificate(pem[0]).fingerprint256);
      else reject(new Error(`openssl s_client -servername ${serverName}: no certificate (${err?.message ?? stdout.slice(0, 200)})`));
    });
    child.stdin?.end(); // s_client ends once its input does
  });
}

void describe('certificates by SNI', { timeout: 120_000 }, () => {
  void it('serves each name its certificate, in any case, wildcards for one label, the default otherwise; stdout stays JSON', async (t) => {
    const { dir, cleanup: removeCertificates } = certificateDir();
    const backend = await startEchoBackend({ name: 'a' });
    const fallback = makeCertificate(dir, 'default');
    const chat = makeCertificate(dir, 'chat', { altNames: 'DNS:chat.example,DNS:*.chat.example' });
    const api = makeCertificate(dir, 'api', { altNames: 'DNS:unused.example' });
    const tls = { cert: fallback.cert, key: fallback.key, certificates: [{ cert: chat.cert, key: chat.key }, { cert: api.cert, key: api.key, names: ['API.Example'] }] };
    const config = { listen: { tls }, pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'chat' }] };
    const { file, cleanup } = writeConfig(config);
    const balancer = await startBalancer({ workers: 2, config });
    t.after(async () => {
      await balancer.stop();
      await closeAll(backend);
      cleanup();
      removeCertificates();
    });

    const expected: [string | undefined, string][] = [
      [undefined, fallback.fingerprint256],
      ['localhost', fallback.fingerprint256],
      ['chat.example', chat.fingerprint256],
      ['Chat.Example', chat.fingerprint256],
      ['CHAT.EXAMPLE', chat.fingerprint256],
      ['room.chat.example', chat.fingerprint256],
      ['Room.CHAT.example', chat.fingerprint256],
      ['a.room.chat.example', fallback.fingerprint256],
      ['api.example', api.fingerprint256],
      ['Api.Example', api.fingerprint256],
      ['unused.example', fallback.fingerprint256], // its names replace the subjectAltName's
      ['unknown.example', fallback.fingerprint256],
    ];
    // Twice over: a name in another case is served the same whichever worker takes it, first time or not.
    for (const round of [1, 2]) {
      for (const [name, fingerprint] of expected) assert.equal(await servedTo(balancer.port, name), fingerprint, `round ${round}: ${name ?? 'no SNI'}`);
    }

    // A tunnel over a name-chosen certificate carries traffic.
    const client = await connect(`wss://127.0.0.1:${balancer.port}/sni`, { ca: chat.pem, servername: 'Room.Chat.Example' });
    t.after(() => client.close());
    assert.equal(await client.whoami(), 'a');

    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as { tls: { fingerprint256: string; certificates: { key: string; names: string[]; fingerprint256: string; daysLeft: number }[] } };
    assert.equal(status.tls.fingerprint256, fallback.fingerprint256);
    assert.deepEqual(
      status.tls.certificates.map((c) => [c.key, c.names, c.fingerprint256, c.daysLeft]),
      [
        ['listen.tls', [], fallback.fingerprint256, 1],
        ['listen.tls.certificates[0]', ['chat.example', '*.chat.example'], chat.fingerprint256, 1],
        ['listen.tls.certificates[1]', ['api.example'], api.fingerprint256, 1],
      ],
    );
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    for (const c of [fallback, chat, api]) assert.equal(metrics.sum('switchyard_tls_certificate_expiry_timestamp_seconds', { file: c.cert }), c.notAfter, c.cert);
    assert.deepEqual(
      balancer.logs.filter((l) => l.msg === 'TLS certificate expires soon').map((l) => [l.key, l.names]),
      [['listen.tls', undefined], ['listen.tls.certificates[0]', 'chat.example *.chat.example'], ['listen.tls.certificates[1]', 'api.example']],
    );
    const check = await runCli(['check', '-c', file]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /^TLS certificate for chat\.example \*\.chat\.example \(listen\.tls\.certificates\[0\]\): CN=switchyard test chat, valid to \d{4}-/m);
    assert.match(check.stdout, /^TLS certificate for api\.example \(listen\.tls\.certificates\[1\]\): CN=switchyard test api, valid to /m);

    // A reload changes the names: api.example goes to the default, Api2.example to api's certificate.
    balancer.rewriteConfig({ ...config, listen: { tls: { ...tls, certificates: [tls.certificates[0], { ...tls.certificates[1], names: ['api2.example'] }] } } });
    const reload = await runCli(['reload', ...balancer.adminArgs()], 25_000);
    assert.equal(reload.code, 0, reload.stderr);
    assert.equal(await servedTo(balancer.port, 'Api2.Example'), api.fingerprint256);
    assert.equal(await servedTo(balancer.port, 'api.example'), fallback.fingerprint256);

    // uWS prints debug lines to stdout on SNI when asked to route by it; nothing of the kind here.
    // The workers' C stdio is flushed when they exit, so stop first, then read every line.
    await balancer.stop();
    const lines = balancer.stdout().split('\n').filter((l) => l !== '');
    assert.ok(lines.length > 10);
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `a line on stdout that is not JSON: ${line}`);
  });
});
