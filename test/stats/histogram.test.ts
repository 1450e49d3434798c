// Latency histogram: bucket layout, percentiles against a sorted array on random data, Prometheus cumulative counts.
import { describe, expect, test } from "bun:test";
import { HISTOGRAM_BUCKETS, LatencyHistogram } from "../../src/stats/histogram.ts";

/** Deterministic PRNG (mulberry32) so a failure can be reproduced. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Nearest-rank percentile of sorted values: the smallest value with at least p % of values at or below it. */
function sortedPercentile(sorted: readonly number[], percent: number): number {
  const rank = Math.max(1, Math.ceil((percent / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** The histogram reports a bucket's upper edge: never below the true value, above it by at most the bucket width. */
function expectWithinBucketError(estimate: number, truth: number): void {
  const integerTruth = Math.floor(truth);
  expect(estimate).toBeGreaterThanOrEqual(integerTruth);
  expect(estimate - integerTruth).toBeLessThanOrEqual(Math.max(0, integerTruth / 64));
}

describe("bucket layout", () => {
  test("buckets are contiguous, ordered, and every bucket's bounds map back to it", () => {
    expect(LatencyHistogram.bucketLow(0)).toBe(0);
    for (let bucket = 0; bucket < HISTOGRAM_BUCKETS - 1; bucket++) {
      const low = LatencyHistogram.bucketLow(bucket);
      const high = LatencyHistogram.bucketHigh(bucket);
      expect(high).toBeGreaterThanOrEqual(low);
      expect(LatencyHistogram.bucketLow(bucket + 1)).toBe(high + 1);
      expect(LatencyHistogram.bucketOf(low)).toBe(bucket);
      expect(LatencyHistogram.bucketOf(high)).toBe(bucket);
      // Relative width stays under 1/64 (the 1.6 % error bound).
      if (low > 0) expect((high - low) / low).toBeLessThan(1 / 64);
    }
  });

  test("values below 128 µs are exact; zero, negative and NaN land in bucket 0; huge values are clamped", () => {
    for (let micros = 0; micros < 128; micros++) expect(LatencyHistogram.bucketOf(micros)).toBe(micros);
    expect(LatencyHistogram.bucketOf(-5)).toBe(0);
    expect(LatencyHistogram.bucketOf(Number.NaN)).toBe(0);
    expect(LatencyHistogram.bucketOf(1e15)).toBe(HISTOGRAM_BUCKETS - 1);
    expect(LatencyHistogram.bucketHigh(HISTOGRAM_BUCKETS - 1)).toBe(0xffff_ffff);
  });
});

describe("percentiles match a sorted array within the bucket error", () => {
  const distributions: Record<string, (next: () => number) => number> = {
    "uniform 0-10 ms (integers)": (next) => Math.floor(next() * 10_000),
    "log-uniform 1 µs - 60 s (fractional)": (next) => Math.exp(next() * Math.log(60_000_000)),
    "bimodal 50 µs / 20 ms": (next) => (next() < 0.9 ? 40 + next() * 20 : 15_000 + next() * 10_000),
  };
  for (const [name, draw] of Object.entries(distributions)) {
    test(name, () => {
      for (const seed of [1, 2, 3]) {
        const next = random(seed);
        const histogram = new LatencyHistogram();
        const values: number[] = [];
        for (let i = 0; i < 20_000; i++) {
          const micros = draw(next);
          values.push(micros);
          histogram.record(micros);
        }
        values.sort((a, b) => a - b);
        expect(histogram.count()).toBe(values.length);
        for (const percent of [1, 25, 50, 90, 99, 99.9, 100]) {
          expectWithinBucketError(histogram.percentile(percent), sortedPercentile(values, percent));
        }
        expectWithinBucketError(histogram.max(), values[values.length - 1]!);
      }
    });
  }

  test("an empty histogram reports 0", () => {
    const histogram = new LatencyHistogram();
    expect(histogram.percentile(99)).toBe(0);
    expect(histogram.max()).toBe(0);
    expect(histogram.count()).toBe(0);
  });
});

test("addCounts merges histograms bucket by bucket", () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 0; i < 100; i++) a.record(10);
  for (let i = 0; i < 100; i++) b.record(10_000);
  a.addCounts(b.counts);
  expect(a.count()).toBe(200);
  expect(a.percentile(50)).toBe(10);
  expectWithinBucketError(a.percentile(51), 10_000);
});

test("cumulativeAt gives Prometheus `le` counts: non-decreasing, exact at linear bounds, total at the top", () => {
  const histogram = new LatencyHistogram();
  const next = random(7);
  const values: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const micros = Math.floor(next() * 2000);
    values.push(micros);
    histogram.record(micros);
  }
  const bounds = [50, 100, 127, 250, 500, 1000, 1_000_000];
  const cumulative = histogram.cumulativeAt(bounds);
  for (let i = 1; i < cumulative.length; i++) expect(cumulative[i]!).toBeGreaterThanOrEqual(cumulative[i - 1]!);
  // Below 128 µs every bucket is one microsecond, so the count is exact.
  for (const [index, bound] of [50, 100, 127].entries()) {
    expect(cumulative[index]!).toBe(values.filter((v) => v <= bound).length);
  }
  // Above, a bucket straddling the bound is left out: never more than the truth, short by at most one bucket.
  for (const [index, bound] of bounds.entries()) {
    const truth = values.filter((v) => v <= bound).length;
    expect(cumulative[index]!).toBeLessThanOrEqual(truth);
    const lowEdge = LatencyHistogram.bucketLow(LatencyHistogram.bucketOf(bound));
    expect(cumulative[index]!).toBeGreaterThanOrEqual(values.filter((v) => v < lowEdge).length);
  }
  expect(cumulative[cumulative.length - 1]!).toBe(5000);
});
