// The benchmark's backend: a uWebSockets.js echo server (one process per port), fast enough that the
// proxy in front of it, not the backend, sets the pace. Plain GETs get a small fixed body, for the
// HTTP scenario. Usage: node --import tsx bench/echo-backend.ts PORT [CERT KEY]
// (with CERT and KEY it serves TLS: wss:// and https://, for the --backend-tls runs).
import { listenSocketPort, uws } from '../src/uws';

const port = Number(process.argv[2] ?? 0);
const BODY = 'hello from the echo backend\n';
const [cert, key] = [process.argv[3], process.argv[4]];

(cert && key ? uws.SSLApp({ cert_file_name: cert, key_file_name: key }) : uws.App())
  .ws('/*', {
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    maxBackpressure: 64 * 1024 * 1024,
    message: (ws, data, isBinary) => {
      ws.send(data, isBinary);
    },
  })
  .any('/*', (res) => {
    res.writeHeader('Content-Type', 'text/plain').end(BODY);
  })
  .listen('127.0.0.1', port, (socket) => {
    if (!socket) {
      process.stderr.write(`echo-backend: cannot listen on 127.0.0.1:${port}\n`);
      process.exit(1);
    }
    // The runner waits for this line.
    process.stdout.write(`listening ${listenSocketPort(socket)}\n`);
  });
