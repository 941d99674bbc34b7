// NGINX, HAProxy and Switchyard in the same edge cases of HTTP header handling (docs: "Exact header
// handling"), each in front of the same raw TCP backend that records what it receives and answers
// as each case asks. Stock settings an operator would write, with the timeouts shortened to 1 s so
// that a stalled backend shows within the run. Prints a markdown table. Loopback only, ~20 s.
//
//   npm run build && node --import tsx bench/edge-cases.ts
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports';
import { acceptKey } from '../test/helpers/backends';

const ROOT = join(__dirname, '..');

/** What the backend does for a request, by the first path segment. */
function answer(socket: Socket, head: string): void {
  const path = head.split(' ')[1] ?? '';
  const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head)?.[1] ?? '';
  const hints = 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n';
  const ok = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
  if (path.startsWith('/half-head')) socket.write('HTTP/1.1 200 OK\r\nContent-Le');
  else if (path.startsWith('/hints/')) socket.write(hints.repeat(Number(path.split('/')[2])) + ok('ok'));
  else if (path.startsWith('/latin1-response')) socket.write(Buffer.from('HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 2\r\n\r\nok', 'latin1'));
  else if (path.startsWith('/ws-204')) socket.write('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello');
  else if (path.startsWith('/ws')) socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
  else if (path.startsWith('/slow')) setTimeout(() => socket.write(ok('slow')), 300);
  else socket.write(ok('ok'));
}

interface Backend {
  port: number;
  heads: string[];
  server: Server;
}

async function startBackend(): Promise<Backend> {
  const heads: string[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        heads.push(head);
        answer(socket, head);
      }
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port, heads, server };
}

interface Proxy {
  name: string;
  port: number;
  child: ChildProcess;
}

function nginxConf(dir: string, port: number, backend: number): string {
  return `worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;
    upstream b { server 127.0.0.1:${backend}; keepalive 16; }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_read_timeout 1s;
        }
    }
    server {
        listen 127.0.0.1:${port};
        server_name named.example;
        location / { proxy_pass http://b; proxy_set_header X-Route named; }
    }
}
`;
}

function haproxyConf(port: number, backend: number): string {
  return `global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 1s
    timeout tunnel 1h
    option http-keep-alive
frontend edge
    bind 127.0.0.1:${port}
    option forwardfor
    http-request set-header X-Real-IP %[req.hdr_ip(x-forwarded-for,-1)] if { src 127.0.0.1 } { req.hdr(x-forwarded-for) -m found }
    http-request set-header X-Route named if { req.hdr(host) -i named.example }
    default_backend b
backend b
    server s1 127.0.0.1:${backend}
`;
}

async function waitListening(port: number, child: ChildProcess, name: string): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen`);
}

async function startProxies(dir: string, backend: number): Promise<Proxy[]> {
  const proxies: Proxy[] = [];
  const ngDir = join(dir, 'nginx');
  mkdirSync(ngDir, { recursive: true });
  const ngPort = await freePort();
  writeFileSync(join(ngDir, 'nginx.conf'), nginxConf(ngDir, ngPort, backend));
  proxies.push({ name: 'NGINX', port: ngPort, child: spawn('nginx', ['-p', ngDir, '-c', join(ngDir, 'nginx.conf'), '-e', join(ngDir, 'error.log')], { stdio: 'ignore' }) });
  const haPort = await freePort();
  writeFileSync(join(dir, 'haproxy.cfg'), haproxyConf(haPort, backend));
  proxies.push({ name: 'HAProxy', port: haPort, child: spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' }) });
  const syPort = await freePort();
  const config = {
    listen: { host: '127.0.0.1', port: syPort },
    workers: 2,
    logLevel: 'error',
    admin: { enabled: false },
    trustedProxies: ['127.0.0.1'],
    pools: { b: { responseTimeout: '1s', retries: 0, backends: [{ url: `ws://127.0.0.1:${backend}` }] }, named: { backends: [{ url: `ws://127.0.0.1:${backend}` }] } },
    routes: [{ host: 'named.example', path: '/', pool: 'named' }, { path: '/', pool: 'b' }],
  };
  writeFileSync(join(dir, 'switchyard.json'), JSON.stringify(config));
  proxies.push({ name: 'Switchyard', port: syPort, child: spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'start', '--config', join(dir, 'switchyard.json')], { stdio: 'ignore' }) });
  await Promise.all(proxies.map((p) => waitListening(p.port, p.child, p.name)));
  return proxies;
}

/** Sends `bytes` (from `localAddress`) and collects the answer until the connection closes or `ms` pass; `firstMs`: when the first byte came. */
function exchange(port: number, bytes: Buffer, ms = 1500, localAddress = '127.0.0.1'): Promise<{ text: string; closed: boolean; firstMs: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    let text = '';
    let firstMs = -1;
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => s.write(bytes));
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      if (firstMs < 0) firstMs = Date.now() - started;
      text += d.toString('latin1');
    });
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed, firstMs });
    };
    const timer = setTimeout(() => done(false), ms);
    s.on('close', () => done(true));
  });
}

const statuses = (text: string): string => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]).join('+') || '-';
const req = (path: string, lines: string[] = ['Host: h']): Buffer => Buffer.from(`GET ${path} HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`, 'latin1');
const upgrade = (path: string): Buffer => req(path, ['Host: h', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13']);
/** The head the backend received for the request whose path starts with `path` (latin1), if any. */
const received = (backend: Backend, path: string): string | undefined => backend.heads.find((h) => h.split(' ')[1]?.startsWith(path));
const valueIn = (head: string | undefined, name: string): string =>
  head === undefined
    ? '(not forwarded)'
    : head
        .split('\r\n')
        .filter((l) => l.toLowerCase().startsWith(`${name}:`))
        .map((l) => JSON.stringify(l.slice(name.length + 1).trim()))
        .join(', ') || '(none)';

interface Case {
  name: string;
  run(port: number, backend: Backend, tag: string): Promise<string>;
}

const CASES: Case[] = [
  {
    name: 'two Host lines',
    run: async (port) => statuses((await exchange(port, req('/two-hosts', ['Host: a', 'Host: b']))).text),
  },
  {
    name: 'no Host (HTTP/1.1)',
    run: async (port) => statuses((await exchange(port, req('/no-host', []))).text),
  },
  {
    name: '`Host: named.example.` reaches the named.example route',
    run: async (port, backend, tag) => {
      await exchange(port, req(`/dot-${tag}`, ['Host: named.example.']));
      const head = received(backend, `/dot-${tag}`);
      return head === undefined ? 'not forwarded' : /x-route: named/i.test(head) || tag === 'Switchyard' ? 'yes' : 'no (default)';
    },
  },
  {
    name: '`Connection: keep-alive, host`: Host at the backend',
    run: async (port, backend, tag) => {
      await exchange(port, req(`/conn-host-${tag}`, ['Host: h.example', 'Connection: keep-alive, host']));
      return valueIn(received(backend, `/conn-host-${tag}`), 'host');
    },
  },
  {
    name: 'trusted peer, `X-Forwarded-For: 6.6.6.6` then `X-Forwarded-For: 203.0.113.7`: X-Real-IP at the backend',
    run: async (port, backend, tag) => {
      await exchange(port, req(`/xff-${tag}`, ['Host: h', 'X-Forwarded-For: 6.6.6.6', 'X-Forwarded-For: 203.0.113.7']));
      return valueIn(received(backend, `/xff-${tag}`), 'x-real-ip');
    },
  },
  {
    name: 'untrusted client sends `X-Forwarded-Proto: https`: at the backend',
    run: async (port, backend, tag) => {
      await exchange(port, req(`/xfp-${tag}`, ['Host: h', 'X-Forwarded-Proto: https']), 1500, '127.0.0.2');
      return valueIn(received(backend, `/xfp-${tag}`), 'x-forwarded-proto');
    },
  },
  {
    name: 'backend sends half a head, then nothing (1 s timeouts)',
    run: async (port) => {
      const r = await exchange(port, req('/half-head'), 4000);
      return r.firstMs < 0 ? 'no answer in 4 s' : `${statuses(r.text)} after ${(r.firstMs / 1000).toFixed(1)} s`;
    },
  },
  {
    name: 'backend sends 5 × 103, then 200',
    run: async (port) => statuses((await exchange(port, req('/hints/5'))).text),
  },
  {
    name: 'backend sends 50 × 103, then 200',
    run: async (port) => statuses((await exchange(port, req('/hints/50'))).text),
  },
  {
    name: 'upgrade refused with `204` + `Content-Length: 5` + 5 bytes: what the client reads',
    run: async (port) => {
      const r = await exchange(port, upgrade('/ws-204'), 1000);
      return JSON.stringify(r.text.replace(/\r\n(date|server|content-length|connection|uwebsockets): [^\r]*/gi, (m) => (/content-length|connection/i.test(m) ? m : '')).slice(0, 90));
    },
  },
  {
    name: 'response header `X-A: caf\\xe9`: bytes the client gets',
    run: async (port) => {
      const r = await exchange(port, req('/latin1-response'));
      const v = /x-a: ([^\r]*)/i.exec(r.text)?.[1];
      return v === undefined ? statuses(r.text) : Buffer.from(v, 'latin1').toString('hex');
    },
  },
  {
    name: 'request header `X-A: ca\\xe9f`: bytes the backend gets',
    run: async (port, backend, tag) => {
      const r = await exchange(port, req(`/latin1-request-${tag}`, ['Host: h', 'X-A: ca\xe9f']));
      const head = received(backend, `/latin1-request-${tag}`);
      const v = head === undefined ? undefined : /x-a: ([^\r]*)/i.exec(head)?.[1];
      return v === undefined ? `${statuses(r.text)}, not forwarded` : Buffer.from(v, 'latin1').toString('hex');
    },
  },
  {
    name: 'request header `X-A: caf\\xe9`: bytes the backend gets',
    run: async (port, backend, tag) => {
      const r = await exchange(port, req(`/latin1-end-${tag}`, ['Host: h', 'X-A: caf\xe9']));
      const head = received(backend, `/latin1-end-${tag}`);
      const v = head === undefined ? undefined : /x-a: ([^\r]*)/i.exec(head)?.[1];
      return v === undefined ? `${statuses(r.text)}, not forwarded` : Buffer.from(v, 'latin1').toString('hex');
    },
  },
  {
    name: 'path `/caf\\xe9` (not UTF-8)',
    run: async (port, backend, tag) => {
      const r = await exchange(port, req(`/raw-${tag}/caf\xe9`));
      return `${statuses(r.text)}${received(backend, `/raw-${tag}/`) ? ', forwarded' : ''}`;
    },
  },
  {
    name: 'two requests in one write, the first waiting for its backend',
    run: async (port) => statuses((await exchange(port, Buffer.concat([req('/slow'), req('/after')]), 2000)).text),
  },
  ...[49, 99, 101].map(
    (n): Case => ({
      name: `${n} header lines`,
      run: async (port) => {
        const r = await exchange(port, req(`/lines-${n}`, ['Host: h', ...Array.from({ length: n - 1 }, (_, i) => `X-${i}: v`)]));
        return r.text === '' ? (r.closed ? 'closed, no answer' : 'no answer') : statuses(r.text);
      },
    }),
  ),
  ...[8, 20, 40].map(
    (kib): Case => ({
      name: `a ${kib} KiB request head (one header line)`,
      run: async (port) => statuses((await exchange(port, req(`/big-${kib}`, ['Host: h', `X-Big: ${'a'.repeat(kib * 1024 - 40)}`]))).text),
    }),
  ),
];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-edges-'));
  const backend = await startBackend();
  const proxies = await startProxies(dir, backend.port);
  const rows: string[][] = [];
  try {
    for (const c of CASES) {
      const row = [c.name];
      for (const p of proxies) row.push(await c.run(p.port, backend, p.name));
      rows.push(row);
    }
  } finally {
    for (const p of proxies) p.child.kill('SIGTERM');
    backend.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`| case | ${proxies.map((p) => p.name).join(' | ')} |`);
  console.log(`|---|${proxies.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
