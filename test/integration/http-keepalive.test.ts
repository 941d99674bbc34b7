// The plain-HTTP hop's backend connections: kept alive and reused, retried when a reused one was
// closed under the request, closed when the response says so or is malformed, and a response head
// that never comes answered 504. The backend is a raw TCP server, so every byte is the test's.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { startBalancer, stopAll, type Balancer } from '../helpers/balancer';
import { closeAll, startRawHttpBackend, type RawHttpBackend } from '../helpers/backends';
import { scrape } from '../helpers/metrics';
import { waitFor } from '../helpers/wait';

const OK = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok';

function answer(socket: Socket, head: string, nth: number): void {
  const path = head.split(' ')[1] ?? '';
  if (path.startsWith('/keep')) socket.write(OK);
  else if (path.startsWith('/close')) socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok');
  // The backend's idle timeout strikes just as the next request arrives: the connection dies unanswered.
  else if (path.startsWith('/flaky')) {
    if (nth === 1) socket.write(OK);
    else socket.destroy();
  }
  else if (path.startsWith('/hang')) return;
  else if (path.startsWith('/smuggle')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\nok');
  else if (path.startsWith('/chunked')) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n');
  else if (path.startsWith('/head')) socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n');
  else if (path.startsWith('/nocontent')) socket.write('HTTP/1.1 204 No Content\r\nX-Done: yes\r\n\r\n');
  else if (path.startsWith('/untilclose')) socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the close');
  else socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
}

void describe('HTTP backend connections', { timeout: 60_000 }, () => {
  let backend: RawHttpBackend;
  let balancer: Balancer;
  // A fresh client connection per request: what is reused must be the balancer's doing.
  const client = new Agent({ pipelining: 0 });
  const get = async (path: string, method = 'GET', body?: string): Promise<{ status: number; headers: Record<string, unknown>; text: string }> => {
    const res = await request(balancer.httpUrl(path), { method: method as 'GET', body, dispatcher: client, headersTimeout: 10_000, bodyTimeout: 10_000 });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };

  before(async () => {
    backend = await startRawHttpBackend(answer);
    balancer = await startBalancer({
      workers: 1,
      config: { pools: { raw: { responseTimeout: '1s', retries: 0, backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'raw', mode: 'http' }] },
    });
  });

  after(async () => {
    await client.close();
    await stopAll(balancer);
    await closeAll(backend);
  });

  void it('reuses one backend connection for sequential requests', async () => {
    const before = backend.accepted();
    for (let i = 0; i < 20; i++) assert.equal((await get(`/keep/${i}`)).text, 'ok');
    assert.equal(backend.accepted() - before, 1, 'one connection carried all 20');
  });

  void it('opens a new connection after a response with Connection: close', async () => {
    const before = backend.accepted();
    for (let i = 0; i < 3; i++) assert.equal((await get(`/close/${i}`)).status, 200);
    // The first went on the connection kept from the previous test; each answer then closed its own.
    assert.equal(backend.accepted() - before, 2);
  });

  void it('retries a GET on a fresh connection when the reused one dies unanswered; a POST gets 502', async () => {
    for (const s of backend.sockets) s.destroy(); // start from no idle connection
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await get('/flaky/1')).status, 200); // first request on a new connection
    assert.equal((await get('/flaky/2')).status, 200, 'the reused connection died; retried on a fresh one');
    const post = await get('/flaky/3', 'POST', 'payload');
    assert.equal(post.status, 502, 'a POST is never replayed');
  });

  void it('answers 504 when the response head does not come within responseTimeout', async () => {
    const started = Date.now();
    const res = await get('/hang');
    assert.equal(res.status, 504);
    const took = Date.now() - started;
    assert.ok(took >= 1000 && took < 6000, `took ${took} ms`);
    // The only 504 of this suite: counted once, as the balancer's own answer.
    const timeouts = async () => (await scrape(balancer.adminUrl('/metrics'))).sum('switchyard_http_requests_total', { outcome: 'backend_timeout' });
    await waitFor(async () => (await timeouts()) >= 1, 5000, 'the 504 counted');
    assert.equal(await timeouts(), 1);
  });

  void it('answers 502 to a malformed response and never reuses that connection', async () => {
    const res = await get('/smuggle');
    assert.equal(res.status, 502);
    assert.equal((await get('/keep/after')).text, 'ok');
  });

  void it("passes a chunked body de-chunked, a HEAD answer's Content-Length, a 204, and a body that ends with the close", async () => {
    const chunked = await get('/chunked');
    assert.equal(chunked.text, 'abcdefg');
    const head = await get('/head', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '1234');
    assert.equal(head.text, '');
    const none = await get('/nocontent');
    assert.equal(none.status, 204);
    assert.equal(none.headers['x-done'], 'yes');
    const untilClose = await get('/untilclose');
    assert.equal(untilClose.text, 'all of it, until the close');
    assert.equal((await get('/keep/last')).text, 'ok', 'the hop still works');
  });
});

void describe('HTTP requests during drain', { timeout: 60_000 }, () => {
  let backend: RawHttpBackend;
  let balancer: Balancer;

  before(async () => {
    // Answers only after the test has signalled the balancer.
    backend = await startRawHttpBackend((socket) => setTimeout(() => socket.write(OK), 1500));
    balancer = await startBalancer({ workers: 1, config: { pools: { raw: { backends: [{ url: backend.url }] } }, routes: [{ path: '/', pool: 'raw', mode: 'http' }] } });
  });

  after(async () => {
    await stopAll(balancer);
    await closeAll(backend);
  });

  void it('lets a request in flight finish before the worker exits (SIGTERM)', async () => {
    const pending = request(balancer.httpUrl('/slow'), { headersTimeout: 10_000, bodyTimeout: 10_000 });
    const started = Date.now();
    while (backend.heads.length === 0 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(backend.heads.length, 1, 'the backend has the request');
    const stopped = balancer.stop('SIGTERM', 15_000);
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok');
    assert.equal((await stopped).code, 0);
  });
});
