// The port helpers do what the tests rely on: a dead port refuses connections and stays dead.
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { deadPort } from './ports';

function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

function listenOnAny(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

void describe('deadPort', () => {
  void it('refuses connections, and port 0 does not hand it out while it is held', async () => {
    const ports = await Promise.all([deadPort(), deadPort(), deadPort()]);
    assert.equal(new Set(ports).size, 3, 'distinct ports');
    for (const port of ports) assert.equal(await connectError(port), 'ECONNREFUSED');
    // 200 servers on port 0 at once: none gets a dead port, and the dead ones still refuse.
    const servers = await Promise.all(Array.from({ length: 200 }, () => listenOnAny()));
    try {
      for (const s of servers) assert.ok(!ports.includes((s.address() as AddressInfo).port), 'port 0 handed out a dead port');
      for (const port of ports) assert.equal(await connectError(port), 'ECONNREFUSED');
    } finally {
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    }
  });
});
