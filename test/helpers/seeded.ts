// mulberry32: a small seeded PRNG, so a simulation draws the same numbers every run (and a failing
// run can be replayed from its seed). Shared by the tests' simulations and bench/ (fleet-sim.ts, fleet-machines.ts).

/** Numbers in [0, 1) from `seed`. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
