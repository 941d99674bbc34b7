// Plain HTTP on routes in mode http/both: proxied to the pool's backend with status, headers and
// streamed bodies both ways; X-Forwarded-* added; hop-by-hop headers dropped; dead backend -> 502.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startEchoBackend, type EchoBackend } from '../helpers/backends';
import { deadPort } from '../helpers/ports';
import { rawRequest } from '../helpers/raw-client';
import { withTimeout } from '../helpers/wait';

const MiB = 1024 * 1024;

void describe('HTTP proxy', { timeout: 60_000 }, () => {
  let backend: EchoBackend;
  let balancer: Balancer;
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));

  before(async () => {
    backend = await startEchoBackend({
      name: 'http-a',
      onRequest: (req, res) => {
        if (req.url !== '/stream/slow') return false;
        // First chunk now, the rest only once the test saw the first one arrive.
        res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': 'http-a' });
        res.write('first-chunk;');
        void released.then(() => res.end('second-chunk'));
        return true;
      },
    });
    const dead = await deadPort();
    balancer = await startBalancer({
      config: {
        pools: {
          api: { backends: [{ url: backend.url }] },
          dead: { retries: 1, backends: [{ url: `ws://127.0.0.1:${dead}` }] },
          // Round-robin over a dead and a live backend: every worker alternates between them.
          half: { algorithm: 'round-robin', retries: 1, backends: [{ url: `ws://127.0.0.1:${dead}` }, { url: backend.url }] },
        },
        routes: [
          { path: '/api', pool: 'api', mode: 'http' },
          { path: '/stream', pool: 'api', mode: 'both' },
          { path: '/echo', pool: 'api', mode: 'http' },
          { path: '/status', pool: 'api', mode: 'http' },
          { path: '/dead', pool: 'dead', mode: 'http' },
          { path: '/half', pool: 'half', mode: 'http' },
        ],
      },
    });
  });

  after(async () => {
    release();
    await stopAll(balancer);
    await closeAll(backend);
  });

  void it('proxies a GET: status, response headers, body, forwarded request headers', async () => {
    const res = await request(balancer.httpUrl('/api/info?x=1&y=two'), {
      headers: { 'x-custom': 'custom-value', cookie: 'sid=42', authorization: 'Basic dTpw', 'user-agent': 'undici-test' },
      headersTimeout: 5000,
      bodyTimeout: 5000,
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-backend'], 'http-a');
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'], 'both Set-Cookie headers arrive separately');
    const seen = (await res.body.json()) as { name: string; method: string; url: string; headers: Record<string, string> };
    assert.equal(seen.name, 'http-a');
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, '/api/info?x=1&y=two');
    assert.equal(seen.headers['x-custom'], 'custom-value');
    assert.equal(seen.headers.cookie, 'sid=42');
    assert.equal(seen.headers.authorization, 'Basic dTpw');
    assert.equal(seen.headers['user-agent'], 'undici-test');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${balancer.port}`);
  });

  void it("passes the backend's status codes through", async () => {
    for (const status of [201, 404, 500]) {
      const res = await request(balancer.httpUrl(`/status/${status}`), { headersTimeout: 5000, bodyTimeout: 5000 });
      assert.equal(res.statusCode, status);
      assert.equal(await res.body.text(), `status ${status} from http-a`);
    }
  });

  void it('streams a 1 MiB POST body to the backend and the echo back', async () => {
    const payload = randomBytes(MiB);
    const chunks = Array.from({ length: 16 }, (_, i) => payload.subarray(i * 64 * 1024, (i + 1) * 64 * 1024));
    const res = await request(balancer.httpUrl('/echo'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-test' },
      body: Readable.from(chunks), // no content-length: chunked upload
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/x-test');
    const echoed = Buffer.from(await res.body.arrayBuffer());
    assert.equal(echoed.length, MiB);
    assert.equal(createHash('sha256').update(echoed).digest('hex'), createHash('sha256').update(payload).digest('hex'));
  });

  void it('streams the response: the first chunk arrives before the backend finished', async () => {
    const res = await request(balancer.httpUrl('/stream/slow'), { headersTimeout: 5000, bodyTimeout: 10_000 });
    assert.equal(res.statusCode, 200);
    const iterator = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let text = '';
    try {
      while (!text.includes('first-chunk;')) {
        const next = await withTimeout(iterator.next(), 3000, 'the first chunk while the backend holds the rest');
        if (next.done) break;
        text += next.value.toString();
      }
      assert.ok(text.startsWith('first-chunk;'), `got ${JSON.stringify(text)}`);
      assert.ok(!text.includes('second-chunk'));
    } finally {
      release();
    }
    for (;;) {
      const next = await withTimeout(iterator.next(), 5000, 'the rest of the body');
      if (next.done) break;
      text += next.value.toString();
    }
    assert.equal(text, 'first-chunk;second-chunk');
  });

  void it('does not forward hop-by-hop request headers', async () => {
    const { socket, status } = await rawRequest(
      balancer.port,
      `GET /api/hop HTTP/1.1\r\nHost: 127.0.0.1:${balancer.port}\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n`,
    );
    socket.destroy();
    assert.equal(status, 200);
    const seen = backend.httpRequests.find((r) => r.url === '/api/hop');
    assert.ok(seen, 'the backend got the request');
    assert.equal(seen.headers['x-kept'], 'yes');
    for (const h of ['x-hop', 'keep-alive', 'proxy-authorization', 'te']) assert.equal(seen.headers[h], undefined, `${h} was forwarded`);
  });

  void it('answers 502 when the backend is down', async () => {
    const res = await request(balancer.httpUrl('/dead/x'), { headersTimeout: 10_000, bodyTimeout: 5000 });
    await res.body.dump();
    assert.equal(res.statusCode, 502);
  });

  void it('retries a failed connect on another backend for GET, never for POST', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await request(balancer.httpUrl(`/half/status/200?i=${i}`));
      await res.body.text();
      assert.equal(res.statusCode, 200, `GET ${i} was retried on the live backend`);
    }
    // Each worker alternates dead/live for its own picks; with 6 POSTs over 2 workers some worker
    // takes at least 3, so at least one POST meets the dead backend and must not be retried.
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await request(balancer.httpUrl(`/half/echo?i=${i}`), { method: 'POST', body: `post ${i}` });
      const text = await res.body.text();
      statuses.push(res.statusCode);
      if (res.statusCode === 200) assert.equal((JSON.parse(text) as { method: string }).method, 'POST');
    }
    assert.ok(statuses.includes(502), `a POST to the dead backend is answered 502, not retried: ${statuses.join(',')}`);
    assert.ok(statuses.includes(200), `POSTs to the live backend succeed: ${statuses.join(',')}`);
  });

  void it('answers HTTP/1.0 requests with 505 (uWebSockets.js limitation, documented)', async () => {
    const { socket, status } = await rawRequest(balancer.port, 'GET /api/info HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n');
    socket.destroy();
    assert.equal(status, 505);
  });
});
