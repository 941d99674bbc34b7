// Slow start (HAProxy's `slowstart`, Envoy's slow_start_config): a backend that joined the pool or
// came back up gets a share of its weight that grows linearly from small to whole over `slowStart`
// ms, so a cold backend is not handed a whole burst at once. Every policy multiplies the weight by
// this factor; the balancer's own start is not such an event (eligibleSince 0: full weight).

/** The smallest factor: a backend that just came up still gets something, and no weight is ever 0. */
export const SLOW_START_FLOOR = 0.01;

/**
 * The share of its weight a backend gets `now` (epoch ms): (now - eligibleSince) / slowStart, within
 * [SLOW_START_FLOOR, 1]; 1 when slow start is off (slowStart 0) or the backend was eligible since
 * before the balancer started (eligibleSince 0).
 */
export function slowStartFactor(eligibleSince: number, now: number, slowStart: number): number {
  if (slowStart <= 0 || eligibleSince <= 0) return 1;
  const elapsed = now - eligibleSince;
  if (elapsed >= slowStart) return 1;
  const f = elapsed / slowStart;
  return f > SLOW_START_FLOOR ? f : SLOW_START_FLOOR;
}

/** When the ramp of a backend eligible since `eligibleSince` ends (epoch ms); 0 when it does not ramp. */
export function slowStartEnds(eligibleSince: number, slowStart: number): number {
  return slowStart <= 0 || eligibleSince <= 0 ? 0 : eligibleSince + slowStart;
}
