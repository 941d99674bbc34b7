// PROXY protocol on the listener (listen.proxyProtocol): behind HAProxy's send-proxy-v2 the client
// address the header carries is the client's for X-Forwarded-For, X-Real-IP, per-client limits and
// the access log; only trustedProxies may send the header, and they must; with the key off, any
// PROXY header closes its connection.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBalancer, type Balancer, type LogLine } from '../helpers/balancer';
import { closeAll, startEchoBackend, startEchoBackends, type EchoBackend } from '../helpers/backends';
import { startHaproxyTcp, type TcpFront } from '../helpers/haproxy';
import { scrape } from '../helpers/metrics';
import { connect as tlsConnect } from 'node:tls';
import { openSocket, proxyV1Header, proxyV2Header, rawWebSocket, readResponseHead, untilClosed, upgradeRequest } from '../helpers/raw-client';
import { certificateDir, makeCertificate } from '../helpers/tls';
import { waitFor, withTimeout } from '../helpers/wait';
import { closeClients, connect, UpgradeRejected, type TestClient } from '../helpers/ws-client';

const isAccess = (l: LogLine): boolean => l.log === 'access';

/** Sends `prefix` and an upgrade request from `localAddress`; resolves with what came back before the balancer closed the connection. */
async function closedAfter(port: number, localAddress: string, prefix: Buffer): Promise<Buffer> {
  const socket = await openSocket(port, localAddress);
  try {
    socket.write(Buffer.concat([prefix, Buffer.from(upgradeRequest({ path: '/chat' }).text)]));
    return await untilClosed(socket);
  } finally {
    socket.destroy();
  }
}

/** Sends `prefix` and an upgrade request from `localAddress`; the status of the answer. */
async function tunnelStatus(port: number, localAddress: string, prefix: Buffer, path: string): Promise<number> {
  const socket = await openSocket(port, localAddress);
  try {
    socket.write(Buffer.concat([prefix, Buffer.from(upgradeRequest({ path }).text)]));
    return (await readResponseHead(socket)).status;
  } finally {
    socket.destroy();
  }
}

async function refusedCount(balancer: Balancer, reason: string): Promise<number> {
  return (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_proxy_protocol_refused_total', { reason });
}

void describe('PROXY protocol on the listener', { timeout: 120_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;
  let haproxy: TcpFront;
  const clients: TestClient[] = [];

  before(async () => {
    backend = await startEchoBackend({ name: 'a' });
    balancer = await startBalancer({
      config: {
        listen: { proxyProtocol: true },
        trustedProxies: ['127.0.0.1'],
        accessLog: true,
        clientLimits: { maxTunnels: 1 },
        pools: { chat: { backends: [{ url: backend.url }] } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    haproxy = await startHaproxyTcp(balancer.port, 'send-proxy-v2');
  });

  after(async () => {
    await closeClients(clients);
    await haproxy?.stop();
    await balancer?.stop();
    await closeAll(backend);
  });

  void it("takes the client address from HAProxy's send-proxy-v2: X-Forwarded-For, X-Real-IP, the access log, plain requests too", async () => {
    const client = await connect(`ws://127.0.0.1:${haproxy.port}/chat?via=haproxy`, { localAddress: '127.0.0.3' });
    assert.equal((await client.request('hello')).text, 'hello');
    const seen = backend.connections.find((c) => c.url === '/chat?via=haproxy');
    assert.ok(seen);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.3');
    assert.equal(seen.headers['x-real-ip'], '127.0.0.3');
    await client.close(1000, '', 2000);
    const line = await balancer.waitForLog((l) => isAccess(l) && l.msg === 'tunnel' && l.url === '/chat?via=haproxy', 5000, 'the tunnel line');
    assert.equal(line.client, '127.0.0.3');

    const socket = await openSocket(haproxy.port, '127.0.0.6');
    try {
      socket.write('GET /plain HTTP/1.1\r\nHost: chat.example\r\n\r\n');
      assert.equal((await readResponseHead(socket)).status, 200);
    } finally {
      socket.destroy();
    }
    const plain = backend.httpRequests.find((r) => r.url === '/plain');
    assert.ok(plain);
    assert.equal(plain.headers['x-real-ip'], '127.0.0.6');
    assert.equal(plain.headers['x-forwarded-for'], '127.0.0.6');
  });

  void it('counts per-client limits by the carried address, not by the proxy that sent it', async () => {
    // maxTunnels 1: every client behind HAProxy shares its TCP peer, 127.0.0.1, but not its limit.
    clients.push(await connect(`ws://127.0.0.1:${haproxy.port}/chat`, { localAddress: '127.0.0.4' }));
    clients.push(await connect(`ws://127.0.0.1:${haproxy.port}/chat`, { localAddress: '127.0.0.5' }));
    await assert.rejects(connect(`ws://127.0.0.1:${haproxy.port}/chat`, { localAddress: '127.0.0.4' }), (err: unknown) => err instanceof UpgradeRejected && err.status === 429);
    await closeClients(clients.splice(0));
  });

  void it('takes a raw v2 header from a trusted peer', async () => {
    assert.equal(await tunnelStatus(balancer.port, '127.0.0.1', proxyV2Header('198.51.100.7'), '/chat?raw=v2'), 101);
    const seen = await waitFor(() => backend.connections.find((c) => c.url === '/chat?raw=v2'), 5000, 'the tunnel at the backend');
    assert.equal(seen.headers['x-real-ip'], '198.51.100.7');
  });

  void it('takes a raw v1 header, and a v1 header from HAProxy (send-proxy)', async () => {
    assert.equal(await tunnelStatus(balancer.port, '127.0.0.1', proxyV1Header('198.51.100.11'), '/chat?raw=v1'), 101);
    const seen = await waitFor(() => backend.connections.find((c) => c.url === '/chat?raw=v1'), 5000, 'the tunnel at the backend');
    assert.equal(seen.headers['x-real-ip'], '198.51.100.11');

    const v1 = await startHaproxyTcp(balancer.port, 'send-proxy');
    try {
      const client = await connect(`ws://127.0.0.1:${v1.port}/chat?via=send-proxy`, { localAddress: '127.0.0.8' });
      await client.close(1000, '', 2000);
    } finally {
      await v1.stop();
    }
    assert.equal(backend.connections.find((c) => c.url === '/chat?via=send-proxy')?.headers['x-real-ip'], '127.0.0.8');
  });

  void it("serves a trusted peer's LOCAL header (a health check of the proxy's own) as the proxy itself", async () => {
    const local = Buffer.concat([proxyV2Header('1.2.3.4').subarray(0, 12), Buffer.from([0x20, 0x00, 0, 0])]);
    const socket = await openSocket(balancer.port, '127.0.0.1');
    try {
      socket.write(Buffer.concat([local, Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')]));
      assert.equal((await readResponseHead(socket)).status, 200);
    } finally {
      socket.destroy();
    }
    assert.equal(backend.httpRequests.find((r) => r.url === '/health')?.headers['x-real-ip'], '127.0.0.1');
  });

  void it('closes a PROXY header from a peer not in trustedProxies, and a trusted peer that sends none; serves other peers as clients', async () => {
    const untrustedBefore = await refusedCount(balancer, 'untrusted_peer');
    assert.equal((await closedAfter(balancer.port, '127.0.0.2', proxyV2Header('198.51.100.8'))).length, 0, 'no answer to an untrusted PROXY header');
    await waitFor(async () => (await refusedCount(balancer, 'untrusted_peer')) === untrustedBefore + 1, 5000, 'untrusted_peer counted');

    const missingBefore = await refusedCount(balancer, 'missing_header');
    assert.equal((await closedAfter(balancer.port, '127.0.0.1', Buffer.alloc(0))).length, 0, 'no answer to a trusted peer without the header');
    await waitFor(async () => (await refusedCount(balancer, 'missing_header')) === missingBefore + 1, 5000, 'missing_header counted');

    // A trusted peer that sends nothing at all is closed once the header's 10 s are up.
    const silentBefore = await refusedCount(balancer, 'missing_header');
    const silent = await openSocket(balancer.port, '127.0.0.1');
    assert.equal((await untilClosed(silent, 20_000)).length, 0);
    await waitFor(async () => (await refusedCount(balancer, 'missing_header')) === silentBefore + 1, 5000, 'the silent peer counted');

    const direct = await rawWebSocket(balancer.port, { path: '/chat?direct', localAddress: '127.0.0.2' });
    direct.socket.destroy();
    const seen = await waitFor(() => backend.connections.find((c) => c.url === '/chat?direct'), 5000, 'the direct tunnel at the backend');
    assert.equal(seen.headers['x-real-ip'], '127.0.0.2');

    const status = (await (await fetch(balancer.adminUrl('/status'))).json()) as { listen: { proxyProtocol: { mode: boolean | string; trustedProxies: string[]; refused: Record<string, number> } } };
    assert.equal(status.listen.proxyProtocol.mode, true);
    assert.deepEqual(status.listen.proxyProtocol.trustedProxies, ['127.0.0.1']);
    assert.ok(status.listen.proxyProtocol.refused.untrusted_peer >= 1);
  });
});

void describe('PROXY protocol v2 only (proxyProtocol: v2; uWS reads it itself on a plain listener with the current build)', { timeout: 120_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;
  let haproxy: TcpFront;

  before(async () => {
    backend = await startEchoBackend({ name: 'a' });
    balancer = await startBalancer({
      config: { listen: { proxyProtocol: 'v2' }, trustedProxies: ['127.0.0.1'], pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'chat' }] },
    });
    haproxy = await startHaproxyTcp(balancer.port, 'send-proxy-v2');
  });

  after(async () => {
    await haproxy?.stop();
    await balancer?.stop();
    await closeAll(backend);
  });

  void it("takes HAProxy's send-proxy-v2 (the header in a segment of its own), and refuses v1, untrusted headers and trusted peers without one", async () => {
    const client = await connect(`ws://127.0.0.1:${haproxy.port}/chat?v2only`, { localAddress: '127.0.0.10' });
    assert.equal((await client.request('v2')).text, 'v2');
    await client.close(1000, '', 2000);
    assert.equal(backend.connections.find((c) => c.url === '/chat?v2only')?.headers['x-real-ip'], '127.0.0.10');
    assert.equal(await tunnelStatus(balancer.port, '127.0.0.1', proxyV2Header('198.51.100.31'), '/chat?raw'), 101);
    assert.equal(backend.connections.find((c) => c.url === '/chat?raw')?.headers['x-real-ip'], '198.51.100.31');

    for (const [from, prefix] of [['127.0.0.1', proxyV1Header('198.51.100.32')], ['127.0.0.2', proxyV2Header('198.51.100.33')], ['127.0.0.1', Buffer.alloc(0)]] as const) {
      const answer = (await closedAfter(balancer.port, from, prefix)).toString('latin1');
      assert.ok(!answer.startsWith('HTTP/1.1 101'), `${from} ${prefix.subarray(0, 5).toString('latin1')}: ${answer.slice(0, 40)}`);
    }
    assert.equal(backend.connections.length, 2);
  });
});

void describe('PROXY protocol: hash keys and TLS', { timeout: 120_000 }, () => {
  let backends: EchoBackend[] = [];
  let balancer: Balancer;
  let haproxy: TcpFront;
  const certs = certificateDir();
  const certificate = makeCertificate(certs.dir, 'listener');

  before(async () => {
    backends = await startEchoBackends(2);
    balancer = await startBalancer({
      config: {
        listen: { proxyProtocol: true, tls: { cert: certificate.cert, key: certificate.key } },
        trustedProxies: ['127.0.0.1'],
        pools: { chat: { algorithm: 'hash', hashKey: 'ip', backends: backends.map((b) => ({ url: b.url })) } },
        routes: [{ path: '/', pool: 'chat' }],
      },
    });
    haproxy = await startHaproxyTcp(balancer.port, 'send-proxy-v2');
  });

  after(async () => {
    await haproxy?.stop();
    await balancer?.stop();
    await closeAll(...backends);
    certs.cleanup();
  });

  /** An upgrade over TLS after `header`, from 127.0.0.1; the status line's code. */
  async function tlsUpgrade(header: Buffer, path: string): Promise<number> {
    const socket = await openSocket(balancer.port, '127.0.0.1');
    try {
      socket.write(header);
      const tls = tlsConnect({ socket, rejectUnauthorized: false, servername: 'localhost' });
      tls.on('error', () => {});
      await withTimeout(new Promise((resolve, reject) => tls.once('secureConnect', resolve).once('error', reject)), 5000, 'the TLS handshake');
      tls.write(upgradeRequest({ path }).text);
      const head = await withTimeout(
        new Promise<string>((resolve) => {
          let text = '';
          tls.on('data', (d: Buffer) => {
            text += d.toString('latin1');
            if (text.includes('\r\n\r\n')) resolve(text);
          });
        }),
        5000,
        'the upgrade answer',
      );
      tls.destroy();
      return Number(head.split(' ')[1]);
    } finally {
      socket.destroy();
    }
  }

  void it('takes the address before the TLS handshake: HAProxy send-proxy-v2 (TCP) and a raw v1 header', async () => {
    const client = await connect(`wss://127.0.0.1:${haproxy.port}/chat?tls=haproxy`, { localAddress: '127.0.0.9', ca: certificate.pem });
    assert.equal((await client.request('over tls')).text, 'over tls');
    await client.close(1000, '', 2000);
    const viaHaproxy = backends.flatMap((b) => b.connections).find((c) => c.url === '/chat?tls=haproxy');
    assert.equal(viaHaproxy?.headers['x-real-ip'], '127.0.0.9');
    assert.equal(viaHaproxy?.headers['x-forwarded-proto'], 'https');

    assert.equal(await tlsUpgrade(proxyV1Header('198.51.100.21'), '/chat?tls=v1'), 101);
    const viaV1 = await waitFor(() => backends.flatMap((b) => b.connections).find((c) => c.url === '/chat?tls=v1'), 5000, 'the v1 tunnel');
    assert.equal(viaV1.headers['x-real-ip'], '198.51.100.21');
  });

  void it('hashes on the carried address: one address lands on one backend, many spread over both', async () => {
    for (let i = 1; i <= 8; i++) assert.equal(await tlsUpgrade(proxyV2Header(`198.51.100.${100 + i}`), `/chat?hash=${i}`), 101);
    for (let i = 1; i <= 3; i++) assert.equal(await tlsUpgrade(proxyV2Header('198.51.100.101'), `/chat?same=${i}`), 101);
    const where = (url: string): string | undefined => backends.find((b) => b.connections.some((c) => c.url === url))?.name;
    await waitFor(() => where('/chat?same=3'), 5000, 'the last tunnel at a backend');
    const spread = new Set(Array.from({ length: 8 }, (_, i) => where(`/chat?hash=${i + 1}`)));
    assert.equal(spread.size, 2, 'eight client addresses behind one proxy use both backends');
    for (let i = 1; i <= 3; i++) assert.equal(where(`/chat?same=${i}`), where('/chat?hash=1'));
  });
});

void describe('PROXY protocol off (the default)', { timeout: 60_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;

  before(async () => {
    backend = await startEchoBackend({ name: 'a' });
    balancer = await startBalancer({
      config: { trustedProxies: ['127.0.0.1'], pools: { chat: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'chat' }] },
    });
  });

  after(async () => {
    await balancer?.stop();
    await closeAll(backend);
  });

  void it('closes a connection that opens with a PROXY v2 header, even from a trusted proxy', async () => {
    assert.equal((await closedAfter(balancer.port, '127.0.0.1', proxyV2Header('198.51.100.9'))).length, 0);
    await waitFor(async () => (await refusedCount(balancer, 'not_configured')) === 1, 5000, 'not_configured counted');
    assert.equal(backend.connections.length, 0);
    const direct = await rawWebSocket(balancer.port, { path: '/chat' });
    direct.socket.destroy();
  });
});
