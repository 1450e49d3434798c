// GCRA arithmetic (a token bucket kept as one timestamp), shared by the per-thread and the shared rate limiters.
//
// Each address has a theoretical arrival time `tat`. A request at `now` is admitted when
// max(tat, now) + interval - now <= tolerance (capacity * interval), and then tat becomes max(tat, now) + interval.

/** Rounding slack for the float comparisons (well under a microsecond). */
const EPSILON_MS = 1e-6;

/** The tat a request at `nowMs` would leave behind. */
export function nextTat(storedTat: number, nowMs: number, intervalMs: number): number {
  return Math.max(storedTat, nowMs) + intervalMs;
}

/** 0 when the request that would leave `newTat` is admitted, else milliseconds (>= 1) until a token is available. */
export function waitMs(newTat: number, nowMs: number, toleranceMs: number): number {
  const excessMs = newTat - nowMs - toleranceMs;
  return excessMs > EPSILON_MS ? Math.max(1, Math.ceil(excessMs)) : 0;
}

/** Tokens left and seconds until the bucket is full again, for an address whose tat is `storedTat`. */
export function bucketState(
  state: { remaining: number; resetSeconds: number },
  storedTat: number,
  nowMs: number,
  intervalMs: number,
  toleranceMs: number,
): void {
  const debtMs = storedTat > nowMs ? storedTat - nowMs : 0;
  const remaining = Math.floor((toleranceMs - debtMs) / intervalMs + EPSILON_MS);
  state.remaining = Math.max(remaining, 0);
  state.resetSeconds = debtMs > 0 ? Math.ceil(debtMs / 1000) : 0;
}
