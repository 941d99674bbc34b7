// Events counted per whole second, for the tests that bound a rate (closes spread, upgrades paced, rebalance closes).

/** Counts per whole second from `from` (ms) of `times`. */
export function perSecond(times: readonly number[], from: number): number[] {
  const bins: number[] = [];
  for (const t of times) {
    const i = Math.floor((t - from) / 1000);
    if (i >= 0) bins[i] = (bins[i] ?? 0) + 1;
  }
  return Array.from(bins, (b) => b ?? 0);
}
