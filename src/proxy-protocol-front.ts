// The TCP front of a listener with listen.proxyProtocol: a Node server on the public port that reads
// each connection's PROXY header (v1 or v2), checks the peer against trustedProxies, and relays the
// bytes to the worker's uWS app on an internal loopback port. uWS cannot take the header itself: it
// does not parse v1, breaks a TLS handshake that follows one, and answers 505 when a v2 header comes
// in a read of its own, which is how HAProxy sends it (docs/design.md). The client address reaches
// the listener through the inner connection's source address: each relayed connection binds its own
// address in 127.0.0.0/8 (all of it is loopback on Linux), the key of a map to the client address.
// That works the same whether the inner app speaks TLS or not, and needs nothing of uWS.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { isLocalResourceError, ProxyProtocolRefusals, type Outcome } from './errors';
import { reportLocalFailure } from './local-failures';
import type { Logger } from './log';
import { readProxyHeader } from './proxy-header';
import { proxiedClient } from './proxy-protocol';
import type { TrustedProxies } from './proxy/forwarded-headers';
import { counters } from './stats/counters';

/** How long a connection may take to send its PROXY header (or, from other peers, its first bytes). */
const HEADER_TIMEOUT_MS = 10_000;
/** Inner source addresses: 127.1.0.0 onwards, 2^23 of them, reused in turn (127.0.0.x are for tests and people). */
const FIRST_KEY = (127 << 24) | (1 << 16);
const KEYS = 1 << 23;

export class ProxyProtocolFront {
  private server: Server | null = null;
  /** Inner connection source address -> client address, while the inner connection is open. */
  private readonly clients = new Map<string, string>();
  private nextKey = 0;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly trusted: TrustedProxies,
    /** listen.proxyProtocol true: v1 too; v2: v2 only (a v1 line is a bad header). */
    private readonly acceptV1: boolean,
    private readonly innerPort: () => number,
    private readonly log: Logger,
  ) {}

  /** The client address of the inner connection from `innerPeer`; undefined: it did not come through this front. */
  clientOf(innerPeer: string): string | undefined {
    return this.clients.get(innerPeer);
  }

  /** Connections held (relayed or waiting for their header). */
  get connections(): number {
    return this.sockets.size;
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        // Once listening, the only 'error' is a failed accept (EMFILE at the descriptor limit); the front goes on.
        server.on('error', (err: NodeJS.ErrnoException) => {
          if (isLocalResourceError(err.code)) reportLocalFailure(err.code, 'accept', { listener: 'proxy-protocol' });
          else this.log.error({ err }, 'PROXY protocol front: listen socket error');
        });
        this.server = server;
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }

  /** Stops accepting; relayed connections go on. */
  close(): void {
    this.server?.close();
    this.server = null;
  }

  get listening(): boolean {
    return this.server !== null;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.sockets.delete(socket));
    const peer = normalise(socket.remoteAddress ?? '');
    let buffered: Buffer = Buffer.alloc(0);
    // Silence from a trusted peer is a missing header; from another peer, a client that sent nothing (not counted).
    const timer = setTimeout(() => (this.trusted.has(peer) ? this.refuse(socket, ProxyProtocolRefusals.missingHeader, peer) : socket.destroy()), HEADER_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const header = readProxyHeader(buffered);
      if (header.kind === 'incomplete') return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      if (header.kind === 'invalid' || (header.kind === 'header' && header.version === 1 && !this.acceptV1)) return this.refuse(socket, ProxyProtocolRefusals.badHeader, peer);
      // LOCAL / UNKNOWN: the proxy speaks for itself (its health checks), with its own address.
      const carried = header.kind === 'header' ? (header.source === '' ? peer : header.source) : '';
      const client = proxiedClient(peer, carried, this.trusted);
      if (typeof client !== 'string') return this.refuse(socket, client, peer);
      this.relay(socket, client, header.kind === 'header' ? buffered.subarray(header.length) : buffered);
    };
    socket.on('data', onData);
    socket.once('close', () => clearTimeout(timer));
  }

  private refuse(socket: Socket, outcome: Outcome, peer: string): void {
    counters.proxyProtocolRefused[outcome.label]++;
    this.log.debug({ code: outcome.code, peer }, outcome.message);
    socket.destroy();
  }

  /** Relays `socket` to the uWS app from an inner address of its own, after the bytes that followed the header. */
  private relay(socket: Socket, client: string, rest: Buffer): void {
    const key = this.takeKey();
    this.clients.set(key, client);
    const inner = connect({ host: '127.0.0.1', port: this.innerPort(), localAddress: key, noDelay: true });
    this.sockets.add(inner);
    inner.on('error', () => {});
    inner.once('close', () => {
      this.sockets.delete(inner);
      this.clients.delete(key);
      socket.destroy();
    });
    socket.once('close', () => inner.destroy());
    if (rest.length > 0) inner.write(rest);
    socket.pipe(inner);
    inner.pipe(socket);
    socket.resume();
  }

  /** A 127.0.0.0/8 address no open inner connection uses. */
  private takeKey(): string {
    for (;;) {
      const n = FIRST_KEY + this.nextKey;
      this.nextKey = (this.nextKey + 1) % KEYS;
      const key = `127.${(n >> 16) & 0xff}.${(n >> 8) & 0xff}.${n & 0xff}`;
      if (!this.clients.has(key)) return key;
    }
  }
}

/** An IPv4-mapped IPv6 peer as its IPv4, as the listener writes addresses. */
function normalise(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
