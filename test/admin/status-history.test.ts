// The primary's history of /status for the status page's charts (src/admin/status-history.ts): rates
// between samples, tunnels per backend, a bounded window, and samples that would mislead left out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Status } from '../../src/admin/status';
import { StatusHistory } from '../../src/admin/status-history';

interface Snapshot {
  /** pool → backend → tunnels */
  backends?: Record<string, Record<string, number>>;
  toBackend?: number;
  toClient?: number;
  upgrades?: Record<string, number>;
  answered?: number;
}

/** A /status with what the history reads; the rest is left empty. */
function status(s: Snapshot): Status {
  const backends = s.backends ?? { chat: { 'a:1': 0, 'b:2': 0 } };
  return {
    pools: Object.entries(backends).map(([name, bs]) => ({ name, backends: Object.entries(bs).map(([backend, tunnels]) => ({ name: backend, tunnels })) })),
    totals: { messagesToBackend: s.toBackend ?? 0, messagesToClient: s.toClient ?? 0, bytesToBackend: 0, bytesToClient: 0, upgrades: s.upgrades ?? { ok: 0 } },
    metricsFrom: { asked: 2, answered: s.answered ?? 2 },
  } as unknown as Status;
}

const T0 = 1_700_000_000_000;

void describe('status history', () => {
  void it('keeps tunnels per backend, and rates per second between samples', () => {
    const h = new StatusHistory(5000, 60_000);
    h.record(T0, status({ backends: { chat: { 'a:1': 1, 'b:2': 0 } }, toBackend: 100, toClient: 1000, upgrades: { ok: 1, no_backend: 0 } }));
    h.record(T0 + 5000, status({ backends: { chat: { 'a:1': 3, 'b:2': 2 } }, toBackend: 150, toClient: 1500, upgrades: { ok: 5, no_backend: 2, backend_timeout: 1 } }));
    h.record(T0 + 10_000, status({ backends: { chat: { 'a:1': 3, 'b:2': 4 } }, toBackend: 150, toClient: 2000, upgrades: { ok: 6, no_backend: 2, backend_timeout: 1 } }));
    assert.deepEqual(h.history(), {
      intervalSeconds: 5,
      windowSeconds: 60,
      at: [T0, T0 + 5000, T0 + 10_000],
      messagesPerSecond: { toBackend: [null, 10, 0], toClient: [null, 100, 100] },
      upgradesPerSecond: { ok: [null, 0.8, 0.2], refused: [null, 0.6, 0] },
      backends: [
        { pool: 'chat', backend: 'a:1', tunnels: [1, 3, 3] },
        { pool: 'chat', backend: 'b:2', tunnels: [0, 2, 4] },
      ],
    });
  });

  void it('keeps only the window: the oldest sample ages out, and its rate base with it', () => {
    const h = new StatusHistory(5000, 60_000);
    for (let i = 0; i <= 100; i++) h.record(T0 + i * 5000, status({ toBackend: i * 50 }));
    const { at, messagesPerSecond } = h.history();
    assert.equal(at.length, 13, 'a minute of samples every 5 s, both ends included');
    assert.equal(at[at.length - 1], T0 + 500_000);
    assert.ok(at[0] >= T0 + 500_000 - 60_000);
    assert.deepEqual(messagesPerSecond.toBackend, new Array(13).fill(10), 'every kept sample has its rate, the first one too');
  });

  void it('a backend a reload added starts at null; one it removed leaves once aged out', () => {
    const h = new StatusHistory(5000, 20_000);
    h.record(T0, status({ backends: { chat: { 'a:1': 1 } } }));
    h.record(T0 + 5000, status({ backends: { chat: { 'b:2': 2 } } }));
    assert.deepEqual(h.history().backends, [
      { pool: 'chat', backend: 'a:1', tunnels: [1, null] },
      { pool: 'chat', backend: 'b:2', tunnels: [null, 2] },
    ]);
    for (let i = 2; i <= 8; i++) h.record(T0 + i * 5000, status({ backends: { chat: { 'b:2': 2 } } }));
    assert.deepEqual(
      h.history().backends.map((b) => b.backend),
      ['b:2'],
    );
  });

  void it('leaves out a sample that lacks a worker, and draws no rate across a gap or a reset', () => {
    const h = new StatusHistory(5000, 60_000);
    h.record(T0, status({ toBackend: 100 }));
    h.record(T0 + 5000, status({ toBackend: 40, answered: 1 }));
    h.record(T0 + 10_000, status({ toBackend: 200 }));
    assert.deepEqual(h.history().at, [T0, T0 + 10_000], 'the partial sample is not kept');
    assert.deepEqual(h.history().messagesPerSecond.toBackend, [null, 10], 'measured from the last whole sample');
    h.record(T0 + 30_000, status({ toBackend: 300 }));
    assert.equal(h.history().messagesPerSecond.toBackend[2], null, '20 s without a sample: no rate');
    h.record(T0 + 35_000, status({ toBackend: 100 }));
    assert.equal(h.history().messagesPerSecond.toBackend[3], 0, 'a worker that died took its counts: 0, not negative');
  });
});
