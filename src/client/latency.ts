// Latency histograms for the load tester: HdrHistogram (1 µs to 60 s, 3 significant digits), merged by adding.
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from "hdr-histogram-js";

export const LOWEST_MICROS = 1;
export const HIGHEST_MICROS = 60_000_000;
const SIGNIFICANT_DIGITS = 3;

/**
 * A plain-JS histogram with 32-bit counts. The WASM build records faster but needs an explicit destroy(); what
 * recording costs the load tester shows in the client CPU column of `bun run bench:loadgen`.
 */
export function newLatencyHistogram(): Histogram {
  return build({
    bitBucketSize: 32,
    autoResize: false,
    lowestDiscernibleValue: LOWEST_MICROS,
    highestTrackableValue: HIGHEST_MICROS,
    numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
  });
}

/** Records a latency in milliseconds (fractional), clamped to the histogram's range. */
export function recordMillis(histogram: Histogram, millis: number): void {
  const micros = Math.round(millis * 1000);
  histogram.recordValue(micros < LOWEST_MICROS ? LOWEST_MICROS : Math.min(micros, HIGHEST_MICROS));
}

/** Compact text form for moving a histogram between threads. */
export function encodeHistogram(histogram: Histogram): string {
  return encodeIntoCompressedBase64(histogram);
}

/** Adds an encoded histogram's counts into `into` (never averages percentiles). */
export function addEncodedHistogram(into: Histogram, encoded: string): void {
  into.add(decodeFromCompressedBase64(encoded, 32, false));
}

/** A latency distribution; every field but `count` is in microseconds. */
export interface LatencySummary {
  p50Micros: number;
  p90Micros: number;
  p99Micros: number;
  p999Micros: number;
  maxMicros: number;
  minMicros: number;
  meanMicros: number;
  stdevMicros: number;
  count: number;
}

/** Percentiles in microseconds, as HdrHistogram reports them (highest equivalent value of the bucket). */
export function summarizeLatency(histogram: Histogram): LatencySummary {
  const count = histogram.totalCount;
  if (count === 0) {
    return {
      p50Micros: 0,
      p90Micros: 0,
      p99Micros: 0,
      p999Micros: 0,
      maxMicros: 0,
      minMicros: 0,
      meanMicros: 0,
      stdevMicros: 0,
      count: 0,
    };
  }
  return {
    p50Micros: histogram.getValueAtPercentile(50),
    p90Micros: histogram.getValueAtPercentile(90),
    p99Micros: histogram.getValueAtPercentile(99),
    p999Micros: histogram.getValueAtPercentile(99.9),
    maxMicros: histogram.getValueAtPercentile(100),
    minMicros: histogram.minNonZeroValue,
    meanMicros: Math.round(histogram.mean * 10) / 10,
    stdevMicros: Math.round(histogram.stdDeviation * 10) / 10,
    count,
  };
}
