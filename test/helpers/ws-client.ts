// A `ws` client with deadlines: open, collect messages, wait for the close with code and reason.
import type { IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import { toBuffer, type CloseInfo } from './backends';
import { TimeoutError, waitFor, withTimeout } from './wait';

export interface Message {
  data: Buffer;
  isBinary: boolean;
  text: string;
}

export interface ClientOptions {
  protocols?: string[];
  headers?: Record<string, string>;
  /** Source address, e.g. 127.0.0.7 (any 127.x address works on Linux loopback). */
  localAddress?: string;
  timeoutMs?: number;
  perMessageDeflate?: boolean;
  /** wss://: the certificate to trust (PEM). */
  ca?: string;
  /** wss://: the name sent in SNI and checked against the certificate (default: the URL's host). */
  servername?: string;
}

export class TestClient {
  readonly messages: Message[] = [];
  closeInfo: CloseInfo | undefined;
  readonly closed: Promise<CloseInfo>;
  pings = 0;
  /** The first error `ws` reported (e.g. an invalid frame from the balancer). */
  error: Error | undefined;
  private cursor = 0;

  constructor(readonly ws: WebSocket) {
    this.closed = new Promise<CloseInfo>((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => {
      const buf = toBuffer(data);
      this.messages.push({ data: buf, isBinary, text: isBinary ? '' : buf.toString() });
    });
    ws.on('ping', () => this.pings++);
    ws.on('error', (err) => (this.error ??= err));
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The next message not returned before. */
  async nextMessage(timeoutMs = 5000): Promise<Message> {
    await waitFor(() => this.messages.length > this.cursor || this.closeInfo !== undefined, timeoutMs, 'a message', 5);
    if (this.messages.length <= this.cursor) {
      throw new Error(`connection closed (${this.closeInfo?.code} ${this.closeInfo?.reason}${this.error ? `; ${this.error.message}` : ""}) while waiting for a message`);
    }
    return this.messages[this.cursor++];
  }

  send(data: string | Buffer, binary = typeof data !== 'string'): void {
    this.ws.send(data, { binary });
  }

  /** Sends and returns the next message (the echo). */
  async request(data: string | Buffer, timeoutMs = 5000, binary = typeof data !== 'string'): Promise<Message> {
    this.send(data, binary);
    return this.nextMessage(timeoutMs);
  }

  /** The name of the backend this tunnel ended on. */
  async whoami(timeoutMs = 5000): Promise<string> {
    return (await this.request('whoami', timeoutMs)).text;
  }

  async waitClose(timeoutMs = 5000): Promise<CloseInfo> {
    return withTimeout(this.closed, timeoutMs, 'the client to be closed');
  }

  /** Closes and waits for the closing handshake (bounded; terminates on timeout). */
  async close(code?: number, reason?: string, timeoutMs = 3000): Promise<CloseInfo | undefined> {
    if (this.closeInfo) return this.closeInfo;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    try {
      return await withTimeout(this.closed, timeoutMs, 'close handshake');
    } catch {
      this.ws.terminate();
      return undefined;
    }
  }

  terminate(): void {
    this.ws.terminate();
  }
}

export class UpgradeRejected extends Error {
  constructor(
    readonly status: number,
    readonly headers: IncomingHttpHeaders,
  ) {
    super(`upgrade answered with HTTP ${status}`);
  }
}

function create(url: string, options: ClientOptions): WebSocket {
  return new WebSocket(url, options.protocols ?? [], {
    headers: options.headers,
    localAddress: options.localAddress,
    perMessageDeflate: options.perMessageDeflate ?? true,
    maxPayload: 512 * 1024 * 1024,
    ca: options.ca,
    // ws hands this on to tls.connect (its types leave it out).
    ...(options.servername !== undefined && ({ servername: options.servername } as object)),
  });
}

/** Opens a client; rejects with UpgradeRejected on a non-101 answer, or on error/timeout. */
export async function connect(url: string, options: ClientOptions = {}): Promise<TestClient> {
  const ws = create(url, options);
  const timeoutMs = options.timeoutMs ?? 5000;
  const client = new TestClient(ws);
  return new Promise<TestClient>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new TimeoutError(`WebSocket open of ${url}`, timeoutMs));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(client);
    });
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(timer);
      reject(new UpgradeRejected(res.statusCode ?? 0, res.headers));
      res.resume();
      req.destroy();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Expects the upgrade to be refused; resolves with the HTTP status the client got. */
export async function upgradeStatus(url: string, options: ClientOptions = {}): Promise<number> {
  try {
    const client = await connect(url, options);
    client.terminate();
  } catch (err) {
    if (err instanceof UpgradeRejected) return err.status;
    throw err;
  }
  throw new Error(`expected ${url} to be refused, but the upgrade succeeded`);
}

/** Opens `count` clients one after the other (sequential keeps the balancer's choices deterministic). */
export async function connectMany(count: number, url: (i: number) => string, options: (i: number) => ClientOptions = () => ({})): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  try {
    for (let i = 0; i < count; i++) clients.push(await connect(url(i), options(i)));
  } catch (err) {
    for (const c of clients) c.terminate();
    throw err;
  }
  return clients;
}

export async function closeClients(clients: readonly (TestClient | undefined)[]): Promise<void> {
  await Promise.all(clients.map((c) => (c ? c.close(undefined, undefined, 2000) : Promise.resolve(undefined))));
}
