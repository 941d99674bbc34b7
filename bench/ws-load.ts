// WebSocket load generator, written so that it is not the bottleneck: raw TCP sockets, one pre-built
// masked frame re-sent per echo, a minimal reader for the server's unmasked frames, no per-message
// allocation on the hot path. Connections come from several loopback source addresses (127.0.0.x)
// so tens of thousands of them do not exhaust one address's ephemeral ports.
//
// Modes:
//   echo   N connections, each keeps `window` messages of `size` bytes in flight; messages/s and latency
//   idle   N connections opened and left idle; RSS per connection of the watched process tree
//   churn  `concurrency` loops of connect -> upgrade -> one echo -> close; upgrades/s
//
// With --tls, connections are wss://: TLS 1.3 with one suite (TLS_AES_128_GCM_SHA256), so every
// proxy does the same cryptography; the certificate is not verified (the runner's throwaway one).
//
// With --watch-pid, the CPU seconds and RSS of that process tree are sampled at the edges of the
// measurement window (after warm-up), so setup and teardown are not counted.
// Prints one JSON object on stdout.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { Opcode } from '../src/proxy/frame-reader';
import { encodeClose, encodeFrame } from '../src/proxy/frame-writer';
import { sampleTree, type TreeSample } from './proc-tree';

const program = new Command()
  .requiredOption('--target <host:port,...>', 'where to connect; several are used in turn')
  .option('--path <path>', 'request path', '/')
  .option('--mode <mode>', 'echo | idle | churn', 'echo')
  .option('--connections <n>', 'connections (echo, idle)', Number, 100)
  .option('--rate <n>', 'new connections per second while opening (0: as fast as 256 at a time allow)', Number, 0)
  .option('--window <n>', 'messages in flight per connection (echo)', Number, 1)
  .option('--size <bytes>', 'message size', Number, 64)
  .option('--concurrency <n>', 'parallel open-echo-close loops (churn)', Number, 50)
  .option('--warmup <s>', 'seconds of traffic before measuring', Number, 1)
  .option('--duration <s>', 'seconds measured', Number, 5)
  .option('--sources <n>', 'loopback source addresses, 127.0.0.2 upwards', Number, 200)
  .option('--tls', 'connect with TLS (wss://)')
  .option('--proxy-header <version>', 'open each connection with a PROXY protocol header (v1 or v2) carrying its source address, before any TLS')
  .option('--watch-pid <pid>', 'process tree whose CPU and RSS are sampled', Number)
  .parse();

const opts = program.opts<{
  target: string;
  path: string;
  mode: 'echo' | 'idle' | 'churn';
  connections: number;
  rate: number;
  window: number;
  size: number;
  concurrency: number;
  warmup: number;
  duration: number;
  sources: number;
  tls?: boolean;
  proxyHeader?: 'v1' | 'v2';
  watchPid?: number;
}>();
if (opts.proxyHeader !== undefined && opts.proxyHeader !== 'v1' && opts.proxyHeader !== 'v2') throw new Error('--proxy-header: v1 or v2');

const targets = opts.target.split(',').map((t) => {
  const i = t.lastIndexOf(':');
  return { host: t.slice(0, i), port: Number(t.slice(i + 1)) };
});

// Built once with the balancer's own frame writer (client role: masked) and re-sent as they are.
const MESSAGE = encodeFrame(Opcode.binary, Buffer.alloc(opts.size, 0x61));
const CLOSE = encodeClose(1000);
let requestCount = 0;
function upgradeRequest(host: string): string {
  requestCount++;
  return (
    `GET ${opts.path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${Buffer.from(`switchyard-${requestCount % 10000}`.padEnd(16, '.')).toString('base64')}\r\n` +
    'Sec-WebSocket-Version: 13\r\n\r\n'
  );
}

// Histograms in microseconds: 1 us .. 60 s, 3 significant digits.
const newHistogram = (): hdr.Histogram => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
const latency = newHistogram();
const connectLatency = newHistogram();

let measuring = false;
let messages = 0;
let cycles = 0;
let errors = 0;
let connectErrors = 0;
let unexpectedCloses = 0;
const errorSamples = new Set<string>();
function noteError(what: string): void {
  errors++;
  if (errorSamples.size < 5) errorSamples.add(what);
}

let nextSource = 0;
let nextTarget = 0;
function openSocket(): Socket {
  const target = targets[nextTarget++ % targets.length];
  const source = `127.0.0.${2 + (nextSource++ % opts.sources)}`;
  const tcp = connect({ host: target.host, port: target.port, localAddress: source, noDelay: true });
  // Registered before TLS's own 'connect' listener, so the header goes first.
  if (opts.proxyHeader !== undefined) tcp.once('connect', () => tcp.write(proxyHeader(opts.proxyHeader!, source, target.port)));
  const socket = opts.tls ? tlsConnect({ socket: tcp, rejectUnauthorized: false, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' }) : tcp;
  socket.setNoDelay(true);
  return socket;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A PROXY protocol header (TCP over IPv4) saying the connection comes from `source`. */
function proxyHeader(version: 'v1' | 'v2', source: string, port: number): Buffer {
  if (version === 'v1') return Buffer.from(`PROXY TCP4 ${source} 127.0.0.1 40000 ${port}\r\n`, 'latin1');
  const addresses = Buffer.alloc(12);
  Buffer.from(source.split('.').map(Number)).copy(addresses, 0);
  Buffer.from([127, 0, 0, 1]).copy(addresses, 4);
  addresses.writeUInt16BE(40000, 8);
  addresses.writeUInt16BE(port, 10);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 12]), addresses]);
}

/**
 * One client connection: handshake, then frames counted as they arrive. `onMessage` gets the opcode of
 * each complete server frame. Frames are parsed in place; only a frame split across reads is copied.
 */
class Client {
  readonly socket: Socket;
  private upgraded = false;
  private head = '';
  private partial: Buffer | undefined;
  readonly startedAt = performance.now();
  /** Send times of the messages in flight, oldest first (echo mode). */
  readonly inFlight: number[] = [];

  constructor(
    private readonly onOpen: (c: Client) => void,
    private readonly onFrame: (c: Client, opcode: number) => void,
    private readonly onGone: (c: Client, error: string | undefined) => void,
  ) {
    const target = targets[nextTarget % targets.length];
    this.socket = openSocket();
    this.socket.on(opts.tls ? 'secureConnect' : 'connect', () => this.socket.write(upgradeRequest(`${target.host}:${target.port}`)));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.onGone(this, err.message));
    this.socket.on('close', () => this.onGone(this, undefined));
  }

  private onData(chunk: Buffer): void {
    if (!this.upgraded) {
      this.head += chunk.toString('latin1');
      const end = this.head.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!this.head.startsWith('HTTP/1.1 101')) {
        this.onGone(this, `upgrade refused: ${this.head.split('\r\n')[0]}`);
        this.socket.destroy();
        return;
      }
      this.upgraded = true;
      const rest = Buffer.from(this.head.slice(end + 4), 'latin1');
      this.head = '';
      this.onOpen(this);
      if (rest.length === 0) return;
      chunk = rest;
    }
    let buf = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    this.partial = undefined;
    let at = 0;
    while (buf.length - at >= 2) {
      const len7 = buf[at + 1] & 0x7f;
      let headerLen = 2;
      let len = len7;
      if (len7 === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2);
        headerLen = 4;
      } else if (len7 === 127) {
        if (buf.length - at < 10) break;
        len = Number(buf.readBigUInt64BE(at + 2));
        headerLen = 10;
      }
      if (buf.length - at < headerLen + len) break;
      const opcode = buf[at] & 0x0f;
      at += headerLen + len;
      this.onFrame(this, opcode);
    }
    if (at < buf.length) this.partial = buf.subarray(at);
    buf = chunk; // let the concatenation go
  }
}

function recordConnect(c: Client): void {
  connectLatency.recordValue(Math.max(1, Math.round((performance.now() - c.startedAt) * 1000)));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Opens `count` clients at the configured rate; resolves when all are open or failed. */
async function openClients(count: number, onFrame: (c: Client, opcode: number) => void): Promise<Client[]> {
  const open: Client[] = [];
  let settled = 0;
  let started = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  const settle = () => {
    if (++settled === count) done();
  };
  const launch = () => {
    started++;
    let opened = false;
    new Client(
      (c) => {
        opened = true;
        recordConnect(c);
        open.push(c);
        settle();
      },
      onFrame,
      (_c, error) => {
        if (!opened) {
          opened = true; // count a failure once
          connectErrors++;
          if (error) noteError(error);
          settle();
        } else if (!stopping) {
          unexpectedCloses++;
          if (error) noteError(error);
        }
      },
    );
  };
  const t0 = performance.now();
  while (started < count) {
    if (opts.rate > 0) {
      const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * opts.rate) + 1);
      while (started < due) launch();
      await sleep(5);
    } else {
      // At most 256 handshakes outstanding, so a listen backlog is never the limit measured.
      while (started < count && started - settled < 256) launch();
      await sleep(1);
    }
  }
  await all;
  return open;
}

let stopping = false;
let watchStart: TreeSample | undefined;
function sampleWatched(): TreeSample | undefined {
  return opts.watchPid ? sampleTree(opts.watchPid) : undefined;
}

function percentiles(h: hdr.Histogram): { p50: number; p99: number; p999: number; max: number } {
  // Microseconds recorded, milliseconds reported.
  const ms = (v: number) => Math.round(v) / 1000;
  return { p50: ms(h.getValueAtPercentile(50)), p99: ms(h.getValueAtPercentile(99)), p999: ms(h.getValueAtPercentile(99.9)), max: ms(h.maxValue) };
}

async function measureWindow(): Promise<{ seconds: number; cpuSeconds?: number; userSeconds?: number; systemSeconds?: number; rssBytes?: number }> {
  await sleep(opts.warmup * 1000);
  latency.reset();
  messages = 0;
  cycles = 0;
  measuring = true;
  watchStart = sampleWatched();
  const t0 = performance.now();
  await sleep(opts.duration * 1000);
  const end = sampleWatched();
  const seconds = (performance.now() - t0) / 1000;
  measuring = false;
  const start = watchStart;
  return {
    seconds,
    cpuSeconds: end && start ? end.cpuSeconds - start.cpuSeconds : undefined,
    userSeconds: end && start ? end.userSeconds - start.userSeconds : undefined,
    systemSeconds: end && start ? end.systemSeconds - start.systemSeconds : undefined,
    rssBytes: end?.rssBytes,
  };
}

async function echoMode(): Promise<Record<string, unknown>> {
  const onFrame = (c: Client, opcode: number) => {
    if (opcode !== 0x2 && opcode !== 0x1) {
      if (opcode === 0x8) noteError('server sent close');
      return; // pings and pongs are not messages
    }
    const sentAt = c.inFlight.shift();
    if (measuring && sentAt !== undefined) {
      messages++;
      latency.recordValue(Math.max(1, Math.round((performance.now() - sentAt) * 1000)));
    }
    if (!stopping) {
      c.inFlight.push(performance.now());
      c.socket.write(MESSAGE);
    }
  };
  const rssBefore = sampleWatched()?.rssBytes;
  const t0 = performance.now();
  const clients = await openClients(opts.connections, onFrame);
  const openSeconds = (performance.now() - t0) / 1000;
  for (const c of clients) {
    for (let i = 0; i < opts.window; i++) {
      c.inFlight.push(performance.now());
      c.socket.write(MESSAGE);
    }
  }
  const window = await measureWindow();
  stopping = true;
  for (const c of clients) c.socket.destroy();
  return {
    connected: clients.length,
    connectsPerSecond: Math.round(clients.length / openSeconds),
    messages,
    messagesPerSecond: Math.round(messages / window.seconds),
    latencyMs: percentiles(latency),
    proxyCpuSeconds: window.cpuSeconds,
    proxyUserSeconds: window.userSeconds,
    proxySystemSeconds: window.systemSeconds,
    proxyCpuMicrosPerMessage: window.cpuSeconds !== undefined && messages > 0 ? Math.round((window.cpuSeconds / messages) * 1e7) / 10 : undefined,
    proxyRssBytes: window.rssBytes,
    proxyRssBefore: rssBefore,
  };
}

async function idleMode(): Promise<Record<string, unknown>> {
  const onFrame = (_c: Client, opcode: number) => {
    if (opcode === 0x8) noteError('server closed an idle connection');
  };
  await sleep(200);
  const before = sampleWatched();
  const t0 = performance.now();
  const clients = await openClients(opts.connections, onFrame);
  const openSeconds = (performance.now() - t0) / 1000;
  // Let lazily allocated buffers settle, then read memory with every connection idle.
  await sleep(opts.warmup * 1000);
  const after = sampleWatched();
  const stillOpen = clients.filter((c) => !c.socket.destroyed).length;
  stopping = true;
  for (const c of clients) c.socket.destroy();
  const grown = after && before ? after.rssBytes - before.rssBytes : undefined;
  return {
    connected: clients.length,
    stillOpen,
    connectsPerSecond: Math.round(clients.length / openSeconds),
    proxyRssBefore: before?.rssBytes,
    proxyRssAfter: after?.rssBytes,
    proxyRssBytesPerConnection: grown !== undefined && clients.length > 0 ? Math.round(grown / clients.length) : undefined,
  };
}

async function churnMode(): Promise<Record<string, unknown>> {
  const upgradeLatency = connectLatency;
  const cycleOnce = (): Promise<void> =>
    new Promise((resolve) => {
      let phase: 'open' | 'echo' | 'closing' | 'done' = 'open';
      const finish = (error?: string) => {
        if (phase === 'done') return;
        if (error !== undefined && !stopping) noteError(error);
        phase = 'done';
        resolve();
      };
      const client = new Client(
        (c) => {
          recordConnect(c);
          phase = 'echo';
          c.socket.write(MESSAGE);
        },
        (c, opcode) => {
          if (phase === 'echo' && (opcode === 0x2 || opcode === 0x1)) {
            phase = 'closing';
            c.socket.write(CLOSE);
          } else if (phase === 'closing' && opcode === 0x8) {
            if (measuring) {
              cycles++;
              latency.recordValue(Math.max(1, Math.round((performance.now() - c.startedAt) * 1000)));
            }
            c.socket.destroy();
            finish();
          }
        },
        (_c, error) => finish(error ?? (phase === 'done' ? undefined : `closed during ${phase}`)),
      );
      void client;
    });
  const loop = async () => {
    while (!stopping) await cycleOnce();
  };
  const loops = Array.from({ length: opts.concurrency }, loop);
  const window = await measureWindow();
  stopping = true;
  await Promise.all(loops);
  return {
    cycles,
    upgradesPerSecond: Math.round(cycles / window.seconds),
    cycleLatencyMs: percentiles(latency),
    upgradeLatencyMs: percentiles(upgradeLatency),
    proxyCpuSeconds: window.cpuSeconds,
    proxyCpuMicrosPerUpgrade: window.cpuSeconds !== undefined && cycles > 0 ? Math.round((window.cpuSeconds / cycles) * 1e7) / 10 : undefined,
  };
}

async function main(): Promise<void> {
  const run = opts.mode === 'echo' ? echoMode : opts.mode === 'idle' ? idleMode : opts.mode === 'churn' ? churnMode : undefined;
  if (!run) throw new Error(`unknown --mode ${opts.mode}`);
  const result = await run();
  const out = {
    mode: opts.mode,
    ...result,
    connectLatencyMs: opts.mode === 'churn' ? undefined : percentiles(connectLatency),
    connectErrors,
    unexpectedCloses,
    errors,
    errorSamples: [...errorSamples],
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  // Sockets were destroyed; leave without waiting for their close events.
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`ws-load: ${(err as Error).message}\n`);
  process.exit(1);
});
