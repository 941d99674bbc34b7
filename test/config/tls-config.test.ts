// listen.tls: paths relative to the config file, flags, and one line naming the key for every file
// that cannot serve (missing, not PEM, encrypted without its passphrase, mismatched, bad ciphers);
// a reload may change the files but not turn TLS on or off.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkReloadable, ConfigError, loadConfig, type ConfigFlags, type LoadedConfig } from '../../src/config/load';
import { certificateDir, makeCertificate } from '../helpers/tls';

const { dir, cleanup } = certificateDir();
after(cleanup);
const good = makeCertificate(dir, 'good');
const other = makeCertificate(dir, 'other');
const locked = makeCertificate(dir, 'locked', { passphrase: 'open sesame' });

const BACKENDS = 'pools: { chat: { backends: [{ url: "ws://127.0.0.1:9001" }] } }\nroutes: [{ path: /, pool: chat }]\n';
let n = 0;
function configFile(listen: string, where = dir): string {
  const path = join(where, `c${n++}.yaml`);
  writeFileSync(path, `listen: ${listen}\n${BACKENDS}`);
  return path;
}
const tls = (fields: Record<string, string>): string => `{ port: 8443, tls: ${JSON.stringify(fields)} }`;

function errorOf(flags: ConfigFlags): string {
  try {
    loadConfig(flags);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'error must be one line');
    return err.message;
  }
  assert.fail('expected a config error');
}

void describe('listen.tls', () => {
  void it('reads paths relative to the config file, and describes the certificate', () => {
    const sub = join(dir, 'etc');
    mkdirSync(sub);
    copyFileSync(good.cert, join(sub, 'chain.pem'));
    copyFileSync(good.key, join(sub, 'chain.key'));
    const cfg = loadConfig({ config: configFile(tls({ cert: 'chain.pem', key: './chain.key' }), sub) });
    assert.equal(cfg.listen.tls?.cert, join(sub, 'chain.pem'));
    assert.equal(cfg.listen.tls?.key, join(sub, 'chain.key'));
    assert.equal(cfg.certificates?.[0].fingerprint256, good.fingerprint256);
    assert.equal(cfg.certificates?.[0].notAfter, good.notAfter);
    assert.equal(cfg.certificates?.[0].subject, 'CN=switchyard test good');
    assert.match(cfg.certificates?.[0].altNames ?? '', /DNS:localhost/);
  });

  void it('takes --tls-cert and --tls-key, and an encrypted key with its passphrase', () => {
    const cfg = loadConfig({ backend: ['ws://127.0.0.1:9001'], tlsCert: good.cert, tlsKey: good.key });
    assert.deepEqual(cfg.listen.tls, { cert: good.cert, key: good.key, certificates: [] });
    const unlocked = loadConfig({ config: configFile(tls({ cert: locked.cert, key: locked.key, passphrase: 'open sesame' })) });
    assert.equal(unlocked.certificates?.[0].fingerprint256, locked.fingerprint256);
    assert.equal(loadConfig({ backend: ['ws://127.0.0.1:9001'] }).certificates, undefined, 'no TLS, no certificate');
  });

  void it('names the key at fault in one line', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ cert: join(dir, 'missing.pem'), key: good.key }, /^config error: listen\.tls\.cert: cannot read .*missing\.pem: ENOENT/],
      [{ cert: good.cert, key: join(dir, 'missing.key') }, /^config error: listen\.tls\.key: cannot read .*missing\.key/],
      [{ cert: good.key, key: good.key }, /^config error: listen\.tls\.cert: .*good\.key holds no PEM certificate$/],
      [{ cert: good.cert, key: good.cert }, /^config error: listen\.tls\.key: .*good\.pem: holds no PEM private key/],
      [{ cert: good.cert, key: other.key }, /^config error: listen\.tls\.key: .*other\.key does not match the certificate in .*good\.pem$/],
      [{ cert: locked.cert, key: locked.key }, /^config error: listen\.tls\.key: .*locked\.key: it is encrypted and listen\.tls\.passphrase is not set$/],
      [{ cert: locked.cert, key: locked.key, passphrase: 'wrong' }, /^config error: listen\.tls\.key: .*: the passphrase does not decrypt it$/],
      [{ cert: good.cert, key: good.key, ciphers: 'NOT-A-CIPHER' }, /^config error: listen\.tls\.ciphers: no cipher matches "NOT-A-CIPHER"$/],
      [{ cert: good.cert }, /^config error: listen\.tls\.key: is required$/],
      [{ cert: good.cert, key: good.key, redirectHttpPort: 8443 } as unknown as Record<string, string>, /^config error: listen\.tls\.redirectHttpPort: must differ from listen\.port and admin\.port$/],
      [{ cert: good.cert, key: good.key, ca: good.cert }, /^config error: listen\.tls\.ca: unknown key$/],
    ];
    for (const [fields, expected] of cases) assert.match(errorOf({ config: configFile(tls(fields)) }), expected, JSON.stringify(fields));
    assert.match(errorOf({ backend: ['ws://127.0.0.1:9001'], tlsKey: good.key }), /^config error: listen\.tls\.cert: is required$/);
    // A backend URL of another scheme is refused, and the message lists those accepted (wss:// among them).
    assert.match(errorOf({ backend: ['tcp://127.0.0.1:9001'] }), /^config error: pools\.default\.backends\[0\]\.url: must be ws:\/\/host:port, .*wss:\/\/host\[:port\]/);
    assert.equal(loadConfig({ backend: ['wss://127.0.0.1'] }).pools.default.backends[0].url, 'wss://127.0.0.1');
  });

  void it('a reload may change the files but not turn TLS on or off', () => {
    const withTls = (c: { cert: string; key: string }): LoadedConfig => loadConfig({ config: configFile(tls({ cert: c.cert, key: c.key })) });
    const plain = loadConfig({ config: configFile('{ port: 8443 }') });
    assert.doesNotThrow(() => checkReloadable(withTls(good), withTls(other)));
    for (const [from, to] of [[plain, withTls(good)], [withTls(good), plain]]) {
      assert.throws(() => checkReloadable(from, to), { message: 'config error: listen.tls: TLS cannot be turned on or off on reload; restart switchyard to change it' });
    }
    const moved = loadConfig({ config: configFile(`{ port: 8444, tls: ${JSON.stringify({ cert: good.cert, key: good.key })} }`) });
    assert.throws(() => checkReloadable(withTls(good), moved), { message: 'config error: listen: cannot change on reload; restart switchyard to change it' });
    const redirecting = loadConfig({ config: configFile(`{ port: 8443, tls: ${JSON.stringify({ cert: good.cert, key: good.key, redirectHttpPort: 8080 })} }`) });
    assert.throws(() => checkReloadable(withTls(good), redirecting), { message: 'config error: listen: cannot change on reload; restart switchyard to change it' });
    assert.doesNotThrow(() => checkReloadable(redirecting, redirecting));
  });

  void it('listen.tls.certificates: names from the subjectAltName or the config, lower-case, relative paths, each described', () => {
    const sub = join(dir, 'sni');
    mkdirSync(sub);
    const chat = makeCertificate(sub, 'chat', { altNames: 'DNS:Chat.Example,DNS:*.chat.example,IP:127.0.0.1' });
    const api = makeCertificate(sub, 'api', { altNames: 'DNS:api.example' });
    const certificates = [{ cert: 'chat.pem', key: 'chat.key' }, { cert: api.cert, key: api.key, names: ['API.example', '*.api.example'] }];
    const cfg = loadConfig({ config: configFile(`{ port: 8443, tls: ${JSON.stringify({ cert: good.cert, key: good.key, certificates })} }`, sub) });
    assert.deepEqual(cfg.listen.tls?.certificates, [
      { cert: chat.cert, key: chat.key, names: ['chat.example', '*.chat.example'] },
      { cert: api.cert, key: api.key, names: ['api.example', '*.api.example'] },
    ]);
    assert.deepEqual(
      cfg.certificates?.map((c) => [c.key, c.file, c.names, c.fingerprint256, c.notAfter]),
      [
        ['listen.tls', good.cert, [], good.fingerprint256, good.notAfter],
        ['listen.tls.certificates[0]', chat.cert, ['chat.example', '*.chat.example'], chat.fingerprint256, chat.notAfter],
        ['listen.tls.certificates[1]', api.cert, ['api.example', '*.api.example'], api.fingerprint256, api.notAfter],
      ],
    );
  });

  void it('listen.tls.certificates: one line naming the certificate at fault', () => {
    const ipOnly = makeCertificate(dir, 'ip-only', { altNames: 'IP:127.0.0.1' });
    const pair = { cert: good.cert, key: good.key };
    const withSni = (certificates: unknown[]): string => configFile(`{ port: 8443, tls: ${JSON.stringify({ ...pair, certificates })} }`);
    const cases: [unknown[], RegExp][] = [
      [[pair, { cert: other.cert, key: good.key }], /^config error: listen\.tls\.certificates\[1\]\.key: .*good\.key does not match the certificate in .*other\.pem$/],
      [[{ cert: join(dir, 'missing.pem'), key: good.key }], /^config error: listen\.tls\.certificates\[0\]\.cert: cannot read .*missing\.pem/],
      [[{ cert: locked.cert, key: locked.key }], /^config error: listen\.tls\.certificates\[0\]\.key: .*locked\.key: it is encrypted and listen\.tls\.certificates\[0\]\.passphrase is not set$/],
      [[{ ...pair, names: ['chat.example', 'bad name'] }], /^config error: listen\.tls\.certificates\[0\]\.names\[1\]: must be a DNS name such as chat\.example\.com, or \*\.example\.com for one label$/],
      [[{ ...pair, names: ['a.*.example'] }], /^config error: listen\.tls\.certificates\[0\]\.names\[0\]: must be a DNS name/],
      [[{ ...pair, names: [] }], /^config error: listen\.tls\.certificates\[0\]\.names: /],
      [[{ cert: ipOnly.cert, key: ipOnly.key }], /^config error: listen\.tls\.certificates\[0\]\.names: .*ip-only\.pem has no DNS name in its subjectAltName; list the names it is for$/],
      [[pair, { cert: other.cert, key: other.key }], /^config error: listen\.tls\.certificates\[1\]\.names: localhost is already served by listen\.tls\.certificates\[0\]; a name may belong to one certificate only$/],
      [[{ ...pair, names: ['a.example'], ca: good.cert }], /^config error: listen\.tls\.certificates\[0\]\.ca: unknown key$/],
    ];
    for (const [certificates, expected] of cases) assert.match(errorOf({ config: withSni(certificates) }), expected, JSON.stringify(certificates));
    // Its passphrase is its own.
    const cfg = loadConfig({ config: withSni([{ cert: locked.cert, key: locked.key, passphrase: 'open sesame', names: ['locked.example'] }]) });
    assert.equal(cfg.certificates?.[1].fingerprint256, locked.fingerprint256);
  });
});
