// The plain-HTTP port of a TLS listener (listen.tls.redirectHttpPort): every request, an upgrade
// included, gets a 301 to the same host and URL over https://, as NGINX's
// `server { listen 80; return 301 https://$host$request_uri; }`. Nothing is proxied here.
import type { Acceptor } from './accept-guard';
import { closeListenSocket, listenSocketPort, uws, type HttpRequest, type HttpResponse, type ListenSocket, type TemplatedApp } from './uws';

/** A Host header's name part: a DNS name or IPv4 address, or an IPv6 address in brackets; then an optional port. */
const HOST = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

export class HttpsRedirect implements Acceptor {
  private readonly app: TemplatedApp;
  private listenSocket: ListenSocket | null = null;
  private listenOn: { host: string; port: number } | null = null;

  /** `httpsPort`: where the TLS listener is; left out of the Location when it is 443. */
  constructor(httpsPort: number) {
    const suffix = httpsPort === 443 ? '' : `:${httpsPort}`;
    this.app = uws.App().any('/*', (res: HttpResponse, req: HttpRequest) => {
      const host = HOST.exec(req.getHeader('host'));
      const query = req.getQuery();
      const url = query ? `${req.getUrl()}?${query}` : req.getUrl();
      res.cork(() => {
        if (!host) return void res.writeStatus('400 Bad Request').writeHeader('content-type', 'text/plain; charset=utf-8').end('a Host header is needed to redirect to https\n');
        const location = `https://${host[1]}${suffix}${url}`;
        res.writeStatus('301 Moved Permanently').writeHeader('location', location).writeHeader('content-type', 'text/plain; charset=utf-8').end(`moved to ${location}\n`);
      });
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (socket) => {
        if (!socket) return reject(new Error(`cannot listen on ${host}:${port} (listen.tls.redirectHttpPort)`));
        this.listenSocket = socket;
        this.listenOn = { host, port };
        resolve(listenSocketPort(socket));
      });
    });
  }

  /** Stops accepting (drain, retire); answers in flight finish. */
  close(): void {
    this.pauseAccepting();
    this.listenOn = null;
  }

  /** The accept guard: out of descriptors (src/accept-guard.ts). */
  pauseAccepting(): void {
    if (this.listenSocket) closeListenSocket(this.listenSocket);
    this.listenSocket = null;
  }

  resumeAccepting(): Promise<boolean> {
    const on = this.listenOn;
    if (on === null) return Promise.resolve(false);
    if (this.listenSocket !== null) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.app.listen(on.host, on.port, (socket) => {
        if (socket) this.listenSocket = socket;
        resolve(socket !== false);
      });
    });
  }
}
