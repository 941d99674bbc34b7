// Plain-HTTP failures on the backend hop: errors and timeouts feed outlier detection (NGINX's
// max_fails rule: 5xx answers and keep-alive races do not count), and a connect that hangs ends at
// the pool's connectTimeout with a 502, or a retry on another backend for an idempotent request.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { backendStatus } from '../helpers/admin';
import { startBalancer, stopAll, type Balancer, type LogLine } from '../helpers/balancer';
import { closeAll, startRawHttpBackend, startUnacceptingServer, type RawHttpBackend, type UnacceptingServer } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { freePort } from '../helpers/ports';
import { openSocket, readResponseHead } from '../helpers/raw-client';
import { waitFor } from '../helpers/wait';

const answer = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

/** Paths: /503 answers 503; /flaky answers on a fresh connection and drops a reused one unanswered. */
function lenientAnswer(socket: Socket, head: string, nth: number): void {
  const path = head.split(' ')[1] ?? '';
  if (path.startsWith('/lenient/503')) socket.write('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy');
  else if (nth === 1) socket.write(answer('lenient'));
  else socket.destroy(); // its keep-alive timeout struck just as the request came
}

void describe('HTTP backend failures', { timeout: 90_000 }, () => {
  let good: RawHttpBackend;
  let bad: RawHttpBackend;
  let lenient: RawHttpBackend;
  let hung: UnacceptingServer;
  let uploads: RawHttpBackend;
  let balancer: Balancer;
  let adminPort: number;
  const client = new Agent({ pipelining: 0 });
  const get = async (path: string): Promise<{ status: number; text: string }> => {
    const res = await request(balancer.httpUrl(path), { dispatcher: client, headersTimeout: 20_000, bodyTimeout: 20_000 });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const name = (b: { port: number }): string => `127.0.0.1:${b.port}`;
  const ejected = (backend: string, pool: string) => (l: LogLine): boolean =>
    l.msg === 'outlier detection: backend ejected' && l.backend === backend && l.pool === pool;
  const connectTimedOut = (pool: string) => (l: LogLine): boolean =>
    l.msg === 'http backend request failed' && l.pool === pool && l.backend === name(hung) && l.failure === 'connect' && l.err === 'ETIMEDOUT';
  /** A POST of `total` bytes to /upload, its body written in `pieces` pieces `gapMs` apart (only the first few when `stallAfter`). */
  const upload = async (pieces: number, gapMs: number, stallAfter = pieces) => {
    const socket = await openSocket(balancer.port);
    const piece = 'x'.repeat(5);
    socket.write(`POST /upload/x HTTP/1.1\r\nHost: t\r\nContent-Length: ${pieces * piece.length}\r\n\r\n`);
    for (let i = 0; i < stallAfter; i++) {
      await new Promise((r) => setTimeout(r, gapMs));
      socket.write(piece);
    }
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    return { head: await readResponseHead(socket, 20_000), socket, closed };
  };

  before(async () => {
    good = await startRawHttpBackend((socket) => socket.write(answer('good')));
    bad = await startRawHttpBackend((socket) => socket.write('this is not HTTP\r\n\r\n'));
    lenient = await startRawHttpBackend(lenientAnswer);
    hung = await startUnacceptingServer();
    uploads = await startRawHttpBackend((socket) => socket.write(answer('got it')));
    adminPort = await freePort();
    const eagerOutliers = { consecutiveFailures: 1, baseEjectionTime: '60s', maxEjectionPercent: 100 };
    balancer = await startBalancer({
      // One worker: its failure reports reach the primary in the order they happened.
      workers: 1,
      config: {
        admin: { port: adminPort },
        pools: {
          mixed: {
            algorithm: 'round-robin',
            retries: 0,
            backends: [{ url: bad.url }, { url: good.url }],
            outlierDetection: { consecutiveFailures: 3, window: '10s', baseEjectionTime: '60s', maxEjectionPercent: 50 },
          },
          // One failure would eject: 503s and stale keep-alive connections must not count.
          lenient: { backends: [{ url: lenient.url }], outlierDetection: eagerOutliers },
          // A failure reported after the lenient pool's requests: once its ejection is logged, the
          // primary has heard everything that came before it.
          marker: { backends: [{ url: bad.url }], outlierDetection: eagerOutliers },
          marker2: { backends: [{ url: bad.url }], outlierDetection: eagerOutliers },
          hung: { connectTimeout: '500ms', backends: [{ url: hung.url }] },
          // responseTimeout counts from the request's last byte; one failure would eject.
          upload: { responseTimeout: '1s', backends: [{ url: uploads.url }], outlierDetection: eagerOutliers },
          failover: { algorithm: 'round-robin', retries: 1, connectTimeout: '500ms', backends: [{ url: hung.url }, { url: good.url }] },
        },
        routes: ['mixed', 'lenient', 'marker', 'marker2', 'hung', 'failover', 'upload'].map((pool) => ({ path: `/${pool}`, pool, mode: 'http' })),
      },
    });
  });

  after(async () => {
    await client.close();
    await stopAll(balancer);
    await closeAll(good, bad, lenient, hung, uploads);
  });

  void it('ejects a backend that answers plain HTTP with garbage; then every request goes to the other', async () => {
    let garbage = 0;
    await waitFor(async () => {
      const res = await get('/mixed/x');
      assert.ok(res.status === 200 || res.status === 502, `status ${res.status}`);
      if (res.status === 502) garbage++;
      return balancer.logs.some(ejected(name(bad), 'mixed'));
    }, 10_000, 'the bad backend ejected');
    assert.ok(garbage >= 3, `ejected after ${garbage} malformed responses (consecutiveFailures 3)`);
    const st = await backendStatus(adminPort, 'mixed', name(bad));
    assert.deepEqual([st.ejected, st.ejections, st.health], [true, 1, 'down']);
    const asked = bad.heads.length;
    for (let i = 0; i < 8; i++) assert.deepEqual(await get(`/mixed/after/${i}`), { status: 200, text: 'good' });
    assert.equal(bad.heads.length, asked, 'no request reached the ejected backend');
  });

  void it('counts neither 5xx answers nor a reused connection the backend closed unanswered', async () => {
    for (let i = 0; i < 3; i++) assert.deepEqual(await get('/lenient/503'), { status: 503, text: 'busy' });
    const accepted = lenient.accepted();
    // The first goes on the connection the 503s kept alive, which the backend drops: retried fresh.
    for (let i = 0; i < 2; i++) assert.deepEqual(await get(`/lenient/flaky/${i}`), { status: 200, text: 'lenient' });
    assert.ok(lenient.accepted() - accepted >= 2, 'reused connections were dropped and the requests retried on fresh ones');
    assert.equal((await get('/marker/x')).status, 502);
    await balancer.waitForLog(ejected(name(bad), 'marker'), 5000, 'the marker ejection');
    assert.equal(balancer.logs.filter(ejected(name(lenient), 'lenient')).length, 0, 'the lenient backend was not ejected');
    assert.deepEqual(await get('/lenient/503'), { status: 503, text: 'busy' }, 'still the backend answering');
  });

  void it("answers 502 when the only backend's TCP connect hangs past connectTimeout", async () => {
    const started = Date.now();
    const res = await get('/hung/x');
    const took = Date.now() - started;
    assert.equal(res.status, 502);
    // Without the timeout the kernel's SYN retries would hold it for about two minutes.
    assert.ok(took < 10_000, `502 after ${took} ms (connectTimeout 500 ms)`);
    await balancer.waitForLog(connectTimedOut('hung'), 5000, 'the connect timeout logged');
  });

  void it('retries a GET on another backend after the connect timeout', async () => {
    for (let i = 0; i < 4; i++) assert.deepEqual(await get(`/failover/${i}`), { status: 200, text: 'good' });
    // Round-robin over one worker: two of the four first tries went to the hung backend.
    await balancer.waitForLog(connectTimedOut('failover'), 5000, 'the hung backend tried and timed out');
  });

  void it('lets a slow upload take longer than responseTimeout: the timeout counts from its last byte', async () => {
    // 8 pieces 500 ms apart: 4 s of body against a 1 s responseTimeout.
    const { head, socket } = await upload(8, 500);
    socket.destroy();
    assert.equal(head.status, 200);
  });

  void it('answers 408 and closes when the client stops sending its body, without blaming the backend', async () => {
    const { head, socket, closed } = await upload(8, 100, 2);
    socket.resume();
    assert.equal(head.status, 408);
    await closed;
    await balancer.waitForLog((l) => l.msg === 'http client stopped sending its request body: 408' && l.pool === 'upload', 5000, 'the stall logged');
    // The worker counted it before answering; this is the file's only 408.
    const metrics = await scrape(balancer.adminUrl('/metrics'));
    assert.equal(metrics.sum('switchyard_http_requests_total', { outcome: 'client_timeout' }), 1);
    // A failure reported after the stall: once its ejection is logged, the primary heard everything before it.
    assert.equal((await get('/marker2/x')).status, 502);
    await balancer.waitForLog(ejected(name(bad), 'marker2'), 5000, 'the marker ejection');
    assert.equal(balancer.logs.filter(ejected(name(uploads), 'upload')).length, 0, 'the upload backend was not ejected');
    const { head: next, socket: s2 } = await upload(1, 0);
    s2.destroy();
    assert.equal(next.status, 200, 'the backend still takes requests');
  });
});
