// The demo's terminal chat client (examples/chat-client.ts) through a real balancer whose backend is
// paced (maxUpgradesPerSecond 1, no queue): its upgrade is refused with 503 and Retry-After, it
// waits at least that long, then connects and chats.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT, startBalancer } from '../helpers/balancer';
import { closeAll, startEchoBackend } from '../helpers/backends';
import { connect } from '../helpers/ws-client';
import { waitFor } from '../helpers/wait';

void describe('demo chat client', { timeout: 60_000 }, () => {
  void it('honours Retry-After after a 503, then connects and chats', async (t) => {
    const backend = await startEchoBackend({ name: 'demo' });
    t.after(() => closeAll(backend));
    const balancer = await startBalancer({
      workers: 1,
      config: { clientLimits: { upgradesPerSecond: 0 }, pools: { chat: { maxUpgradesPerSecond: 1, upgradeQueueTimeout: '0s', backends: [{ url: backend.url }] } }, routes: [{ pool: 'chat' }] },
    });
    t.after(() => balancer.stop());
    // This second's turn is taken: the client's first upgrade is refused.
    const first = await connect(balancer.url('/ws'));
    t.after(() => first.terminate());

    const proc = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'examples', 'chat-client.js'), balancer.url('/ws'), '--name', 'ann'], { stdio: ['pipe', 'pipe', 'pipe'] });
    t.after(() => proc.kill('SIGKILL'));
    const lines: { at: number; text: string }[] = [];
    let stdout = '';
    proc.stderr.on('data', (d: Buffer) => {
      for (const text of d.toString().split('\n')) if (text !== '') lines.push({ at: Date.now(), text });
    });
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    await waitFor(() => lines.some((l) => l.text === 'connected'), 20_000, `the client to connect (${lines.map((l) => l.text).join(' | ')})`);

    const refused = lines.find((l) => l.text.startsWith('refused (503)'));
    assert.ok(refused !== undefined, `refused first: ${lines.map((l) => l.text).join(' | ')}`);
    const m = /retrying in ([\d.]+)s \(Retry-After (\d+)\)$/.exec(refused.text);
    assert.ok(m !== null, refused.text);
    const retryAfter = Number(m[2]);
    assert.ok(retryAfter >= 1, `Retry-After ${retryAfter}`);
    assert.ok(Number(m[1]) >= retryAfter, `waits ${m[1]} s, at least Retry-After`);
    const again = lines.slice(lines.indexOf(refused)).find((l) => l.text.startsWith('connecting'))!;
    assert.ok(again.at - refused.at >= retryAfter * 1000 - 50, `tried again ${again.at - refused.at} ms after the 503 with Retry-After ${retryAfter}`);

    proc.stdin.write('hello through the balancer\n');
    await waitFor(() => stdout.includes('ann: hello through the balancer'), 5000, 'the echo of the message');
  });
});
