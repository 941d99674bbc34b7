// A terminal chat client for the demo (`node dist/examples/chat-client.js ws://127.0.0.1:8080/ws
// --name ann`): lines typed are sent, messages received are printed. It stays connected: after a
// close or a refused upgrade it tries again with jittered exponential backoff, and after a 503 or
// 429 no sooner than its Retry-After (examples/reconnect.ts). It says each step on stderr.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { parseRetryAfter, reconnectDelay } from './reconnect';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { name: { type: 'string', default: `guest${Math.floor(Math.random() * 1000)}` } } });
const url = positionals[0] ?? 'ws://127.0.0.1:8080/ws';
const name = values.name;
let ws: WebSocket | null = null;
let failures = 0;

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

function retry(why: string, retryAfterS?: number): void {
  const wait = reconnectDelay(failures, Math.random, retryAfterS);
  failures++;
  say(`${why}; retrying in ${(wait / 1000).toFixed(2)}s${retryAfterS === undefined ? '' : ` (Retry-After ${retryAfterS})`}`);
  setTimeout(open, wait);
}

function open(): void {
  say(`connecting to ${url}`);
  const socket = new WebSocket(url);
  let refused = false;
  socket.on('unexpected-response', (req, res) => {
    refused = true;
    res.resume();
    req.destroy();
    retry(`refused (${res.statusCode})`, parseRetryAfter(res.headers['retry-after']));
  });
  socket.on('open', () => {
    ws = socket;
    failures = 0;
    say('connected');
  });
  socket.on('message', (data) => {
    const text = (data as Buffer).toString('utf8'); // text frames, not fragmented: one Buffer
    let msg: { type?: string; name?: string; text?: string; backend?: string };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      return process.stdout.write(`${text}\n`);
    }
    if (msg.type === 'chat') process.stdout.write(`${msg.name}: ${msg.text}\n`);
    else if (msg.type === 'welcome') say(`served by backend ${msg.backend}`);
  });
  socket.on('error', () => undefined); // 'close' follows
  socket.on('close', (code, reason) => {
    if (ws === socket) ws = null;
    if (!refused) retry(`closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`);
  });
}

createInterface({ input: process.stdin }).on('line', (text) => {
  if (ws !== null && text.trim() !== '') ws.send(JSON.stringify({ type: 'chat', name, text: text.trim() }));
});
open();
