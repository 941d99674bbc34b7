// Example backend for the Switchyard demo: a tiny WebSocket chat room (ws + node:http).
// Run several instances behind the balancer; `--peer` links them so every room sees every message.
//
//   node dist/examples/chat-backend.js --port 9001 --name alpha --peer ws://127.0.0.1:9002/peer
//
// HTTP:  GET / → chat page, GET /healthz → "ok".
// WS:    /ws   → chat clients (JSON: {"type":"chat","name","text"} in, broadcasts out).
//        /peer → other backends; chats received here are shown locally and never re-forwarded.
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket, { WebSocketServer, type RawData } from 'ws';

const MAX_MESSAGE_BYTES = 4 * 1024;
const PEER_RETRY_MS = 1000;

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9001' },
    host: { type: 'string', default: '127.0.0.1' },
    name: { type: 'string', default: 'backend' },
    peer: { type: 'string', multiple: true, default: [] },
  },
});
const port = Number(args.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid --port: ${args.port}`);
const backend = args.name;

// dist/examples/chat-backend.js → ../../examples/chat.html; when run from source (tsx), it sits next to us.
const htmlPath = [path.join(__dirname, '../../examples/chat.html'), path.join(__dirname, 'chat.html')].find((p) => existsSync(p));
if (!htmlPath) throw new Error('chat.html not found next to examples/');
const html = readFileSync(htmlPath);

interface Chat {
  type: 'chat';
  name: string;
  text: string;
  backend?: string;
  at?: string;
}

/** Parses and validates one inbound message; returns the chat or an error string for the sender. */
function parseChat(data: RawData, isBinary: boolean): Chat | string {
  if (isBinary) return 'binary messages are not supported';
  const raw = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  if (raw.length > MAX_MESSAGE_BYTES) return `message too large (max ${MAX_MESSAGE_BYTES} bytes)`;
  let msg: unknown;
  try {
    msg = JSON.parse(raw.toString('utf8'));
  } catch {
    return 'message is not valid JSON';
  }
  if (typeof msg !== 'object' || msg === null) return 'message must be a JSON object';
  const m = msg as Record<string, unknown>;
  if (m.type !== 'chat') return 'unknown message type (expected "chat")';
  if (typeof m.name !== 'string' || typeof m.text !== 'string') return 'chat needs string "name" and "text"';
  const name = m.name.trim().slice(0, 40) || 'anonymous';
  const text = m.text.trim();
  if (!text) return 'empty message';
  const chat: Chat = { type: 'chat', name, text };
  if (typeof m.backend === 'string') chat.backend = m.backend;
  if (typeof m.at === 'string') chat.at = m.at;
  return chat;
}

function sendJson(ws: WebSocket, msg: object): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

const rooms = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 }); // bigger than the limit so we can answer
const peerServer = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
const peerLinks = new Set<WebSocket>(); // our outbound connections to other backends
let shuttingDown = false;

function broadcastLocal(chat: Chat): void {
  const payload = JSON.stringify(chat);
  for (const client of rooms.clients) if (client.readyState === WebSocket.OPEN) client.send(payload);
}

rooms.on('connection', (ws) => {
  sendJson(ws, { type: 'welcome', backend, clients: rooms.clients.size });
  ws.on('message', (data, isBinary) => {
    const parsed = parseChat(data, isBinary);
    if (typeof parsed === 'string') return sendJson(ws, { type: 'error', error: parsed });
    const chat: Chat = { type: 'chat', name: parsed.name, text: parsed.text, backend, at: new Date().toISOString() };
    broadcastLocal(chat);
    const payload = JSON.stringify(chat);
    for (const link of peerLinks) if (link.readyState === WebSocket.OPEN) link.send(payload);
  });
  ws.on('error', () => ws.terminate());
});

peerServer.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    const chat = parseChat(data, isBinary);
    if (typeof chat !== 'string') broadcastLocal(chat); // relayed: show locally, never forward again
  });
  ws.on('error', () => ws.terminate());
});

/** Keeps one outbound link to a peer's /peer endpoint, retrying every second while it is down. */
function linkPeer(url: string): void {
  const ws = new WebSocket(url);
  ws.on('open', () => {
    peerLinks.add(ws);
    console.log(`chat backend ${backend} linked to peer ${url}`);
  });
  ws.on('error', () => undefined); // 'close' follows and schedules the retry
  ws.on('close', () => {
    if (peerLinks.delete(ws)) console.log(`chat backend ${backend} lost peer ${url}, retrying`);
    if (!shuttingDown) setTimeout(() => linkPeer(url), PEER_RETRY_MS).unref();
  });
}

const server = createServer((req, res) => {
  const { pathname } = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
  } else if (req.method === 'GET' && pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }
});

server.on('upgrade', (req, socket, head) => {
  const { pathname } = new URL(req.url ?? '/', 'http://localhost');
  const wss = pathname === '/ws' ? rooms : pathname === '/peer' ? peerServer : undefined;
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

function shutdown(): void {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const ws of [...rooms.clients, ...peerServer.clients, ...peerLinks]) ws.close(1001, 'backend shutting down');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

server.on('error', (err) => {
  console.error(`chat backend ${backend}: ${err.message}`);
  process.exit(1);
});
server.listen(port, args.host, () => {
  console.log(`chat backend ${backend} listening on http://${args.host}:${port}`);
  for (const url of args.peer) linkPeer(url);
});
