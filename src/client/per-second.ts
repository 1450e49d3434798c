// Per-second counts of a load run: what each whole second of the measurement completed and read, for Min/Max/Stdev.

/**
 * Counts events into one-second buckets from a start time. Each thread counts its own completions as they happen
 * (exact, aligned to the start of measuring); the buckets of all threads are added index by index at the end.
 */
export class PerSecondCounts {
  readonly requests: number[] = [];
  readonly bytes: number[] = [];
  private startMs = 0;

  start(startMs: number): void {
    this.startMs = startMs;
  }

  /** Index of the second `nowMs` falls into, growing the buckets to hold it; -1 before the start. */
  private second(nowMs: number): number {
    const elapsedMs = nowMs - this.startMs;
    if (elapsedMs < 0) return -1;
    const second = Math.floor(elapsedMs / 1000);
    while (this.requests.length <= second) {
      this.requests.push(0);
      this.bytes.push(0);
    }
    return second;
  }

  addRequest(nowMs: number): void {
    const second = this.second(nowMs);
    if (second >= 0) this.requests[second]!++;
  }

  addBytes(nowMs: number, bytes: number): void {
    const second = this.second(nowMs);
    if (second >= 0) this.bytes[second]! += bytes;
  }
}

/** Min, mean, max and standard deviation of a per-second rate. */
export interface RateStats {
  min: number;
  /** The whole run's total divided by its measured seconds (partial seconds included). */
  mean: number;
  max: number;
  /** Population standard deviation over the whole seconds. */
  stdev: number;
  /** Whole seconds measured; 0 when the run was shorter than one second (min = max = mean, stdev 0). */
  seconds: number;
}

/** Adds per-thread buckets index by index, keeping the first `wholeSeconds` (later ones are partial). */
export function mergeSeconds(perThread: readonly (readonly number[])[], wholeSeconds: number): number[] {
  const merged = new Array<number>(Math.max(0, wholeSeconds)).fill(0);
  for (const buckets of perThread) {
    for (let i = 0; i < merged.length; i++) merged[i]! += buckets[i] ?? 0;
  }
  return merged;
}

/** Rate statistics from a total over `seconds` and the whole-second samples. */
export function rateStats(total: number, seconds: number, samples: readonly number[]): RateStats {
  const mean = seconds > 0 ? total / seconds : 0;
  if (samples.length === 0) return { min: round(mean), mean: round(mean), max: round(mean), stdev: 0, seconds: 0 };
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const value of samples) {
    if (value < min) min = value;
    if (value > max) max = value;
    sum += value;
  }
  const sampleMean = sum / samples.length;
  let squares = 0;
  for (const value of samples) squares += (value - sampleMean) ** 2;
  return {
    min: round(min),
    mean: round(mean),
    max: round(max),
    stdev: round(Math.sqrt(squares / samples.length)),
    seconds: samples.length,
  };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
