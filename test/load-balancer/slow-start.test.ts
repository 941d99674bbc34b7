// Slow start on an injected clock: the ramp's arithmetic, and what it does to each policy's picks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hash } from '../../src/load-balancer/hash';
import { LeastConnections } from '../../src/load-balancer/least-connections';
import { Decision } from '../../src/load-balancer/load-balancer';
import { RoundRobin } from '../../src/load-balancer/round-robin';
import { SLOW_START_FLOOR, slowStartFactor } from '../../src/load-balancer/slow-start';

const T0 = 1_700_000_000_000; // when the backend came back, epoch ms
const RAMP = 30_000;

interface C {
  name: string;
  weight: number;
  active: number;
  connections?: number;
  eligibleSince: number;
}

void describe('slow start', () => {
  void it('ramps linearly from the floor to 1 over slowStart; never for a backend there since the start, nor when off', () => {
    assert.equal(slowStartFactor(T0, T0, RAMP), SLOW_START_FLOOR);
    assert.equal(slowStartFactor(T0, T0 + 7_500, RAMP), 0.25);
    assert.equal(slowStartFactor(T0, T0 + 15_000, RAMP), 0.5);
    assert.equal(slowStartFactor(T0, T0 + 30_000, RAMP), 1);
    assert.equal(slowStartFactor(T0, T0 + 90_000, RAMP), 1);
    assert.equal(slowStartFactor(T0, T0 - 5, RAMP), SLOW_START_FLOOR, 'a clock a little behind the primary\'s');
    assert.equal(slowStartFactor(0, T0, RAMP), 1, 'eligible since the start: full weight');
    assert.equal(slowStartFactor(T0, T0, 0), 1, 'slowStart 0: off');
  });

  void it('round-robin: the returning backend\'s share of new tunnels grows linearly to its full share', () => {
    const pool: C[] = [
      { name: 'a', weight: 1, active: 0, eligibleSince: 0 },
      { name: 'b', weight: 1, active: 0, eligibleSince: 0 },
      { name: 'c', weight: 1, active: 0, eligibleSince: T0 },
    ];
    const lb = new RoundRobin(RAMP);
    const shares: number[] = [];
    // 6 windows of 5 s, 300 picks each, then one after the ramp.
    for (let w = 0; w < 7; w++) {
      let c = 0;
      let slowStartPicks = 0;
      for (let i = 0; i < 300; i++) {
        const now = T0 + w * 5000 + (i * 5000) / 300;
        if (lb.pick(pool, undefined, now).name === 'c') c++;
        if (lb.decision === Decision.SlowStart) slowStartPicks++;
      }
      shares.push(c / 300);
      if (w === 6) assert.equal(slowStartPicks, 0, 'after the ramp no pick is changed by it');
    }
    // share = f / (2 + f) at the window's mean f.
    shares.forEach((share, w) => {
      const f = Math.min(1, (w * 5000 + 2500) / RAMP);
      assert.ok(Math.abs(share - f / (2 + f)) < 0.02, `window ${w}: share ${share.toFixed(3)}, expected ${(f / (2 + f)).toFixed(3)}`);
    });
  });

  void it('least-connections: an empty backend that came back holds at most its ramp\'s share, instead of taking every new tunnel', () => {
    const pool: C[] = [
      { name: 'a', weight: 1, active: 100, eligibleSince: 0 },
      { name: 'b', weight: 1, active: 100, eligibleSince: 0 },
      { name: 'c', weight: 1, active: 0, eligibleSince: T0 },
    ];
    const lb = new LeastConnections({ slowStart: RAMP });
    let changed = 0;
    // 10 new tunnels a second for 40 s.
    for (let i = 0; i < 400; i++) {
      const now = T0 + i * 100;
      const b = lb.pick(pool, undefined, now);
      b.active++;
      if (lb.decision === Decision.SlowStart) changed++;
      const f = slowStartFactor(T0, now, RAMP);
      // c holds no more than (its ramp) x (what the others hold), give or take the tunnel just placed.
      assert.ok(pool[2].active <= f * (pool[0].active + 1) + 1, `at ${i / 10}s c holds ${pool[2].active}, a ${pool[0].active}, f ${f}`);
    }
    // Without slow start c would have taken the first 100 tunnels outright.
    assert.ok(changed > 50, `the ramp changed ${changed} picks`);
    assert.ok(pool[2].active > 100, 'by the end it is level with the others');
  });

  void it('hash: keys move to the returning backend as its weight grows, never back, and all of them by the end', () => {
    const pool: C[] = ['a', 'b', 'c', 'd'].map((name) => ({ name, weight: 1, active: 0, eligibleSince: name === 'd' ? T0 : 0 }));
    const keys = Array.from({ length: 4000 }, (_, i) => `room-${i}`);
    const lb = new Hash({ fallback: new LeastConnections(), slowStart: RAMP });
    const full = new Hash({ fallback: new LeastConnections() });
    const home = keys.map((k) => full.pick(pool, k, T0).name); // where each key lives at full weight
    let onD = new Set<string>();
    const counts: number[] = [];
    for (let t = 0; t <= RAMP; t += 5000) {
      const now = T0 + t;
      const nowOnD = new Set(keys.filter((k) => lb.pick(pool, k, now).name === 'd'));
      for (const k of onD) assert.ok(nowOnD.has(k), `${k} left the returning backend at ${t} ms`);
      for (const k of nowOnD) assert.equal(home[keys.indexOf(k)], 'd', `${k} went to d though its home is elsewhere`);
      // A key not yet on d stays on its old backend: the ramp moves only keys whose home is d.
      for (const [i, k] of keys.entries()) if (!nowOnD.has(k) && home[i] !== 'd') assert.equal(lb.pick(pool, k, now).name, home[i]);
      onD = nowOnD;
      counts.push(nowOnD.size);
    }
    const homeOnD = home.filter((h) => h === 'd').length;
    assert.equal(counts.at(-1), homeOnD, 'at the end of the ramp every key whose home is d is there');
    // Roughly linear: share f/(3+f) of the keys at each step.
    counts.forEach((n, step) => {
      const f = Math.max(0.01, (step * 5000) / RAMP);
      assert.ok(Math.abs(n / keys.length - f / (3 + f)) < 0.03, `step ${step}: ${n} keys on d, expected ~${Math.round((keys.length * f) / (3 + f))}`);
    });
    const heldBack = keys.find((k, i) => home[i] === 'd' && lb.pick(pool, k, T0 + 1000).name !== 'd');
    assert.ok(heldBack !== undefined);
    lb.pick(pool, heldBack, T0 + 1000);
    assert.equal(lb.decision, Decision.SlowStart, 'a key the ramp keeps away from its home is counted as slow_start');
  });
});
