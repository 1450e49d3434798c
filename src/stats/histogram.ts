// Log-linear latency histogram (HDR-style): microsecond resolution, constant memory, <1.6 % bucket error.
//
// Values below 128 µs get a bucket each; above, every power of two is cut into 64 equal sub-buckets.
// Values are clamped to 2^32-1 µs (about 71 minutes).

const LINEAR_BUCKETS = 128;
const SUB_BUCKET_BITS = 6;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
const MAX_EXPONENT = 25; // values up to 2^32 - 1
export const HISTOGRAM_BUCKETS = LINEAR_BUCKETS + MAX_EXPONENT * SUB_BUCKETS;
const MAX_VALUE = 0xffff_ffff;

export class LatencyHistogram {
  readonly counts: Float64Array;

  constructor(counts: Float64Array = new Float64Array(HISTOGRAM_BUCKETS)) {
    this.counts = counts;
  }

  static bucketOf(micros: number): number {
    if (!(micros > 0)) return 0;
    const value = micros >= MAX_VALUE ? MAX_VALUE : micros >>> 0;
    if (value < LINEAR_BUCKETS) return value;
    const exponent = 31 - Math.clz32(value) - SUB_BUCKET_BITS;
    return LINEAR_BUCKETS + (exponent - 1) * SUB_BUCKETS + ((value >>> exponent) - SUB_BUCKETS);
  }

  /** Smallest value that lands in the bucket. */
  static bucketLow(bucket: number): number {
    if (bucket < LINEAR_BUCKETS) return bucket;
    const offset = bucket - LINEAR_BUCKETS;
    const exponent = Math.floor(offset / SUB_BUCKETS) + 1;
    return ((offset % SUB_BUCKETS) + SUB_BUCKETS) * 2 ** exponent;
  }

  /** Largest value that lands in the bucket. */
  static bucketHigh(bucket: number): number {
    return bucket + 1 >= HISTOGRAM_BUCKETS ? MAX_VALUE : LatencyHistogram.bucketLow(bucket + 1) - 1;
  }

  record(micros: number): void {
    this.counts[LatencyHistogram.bucketOf(micros)]! += 1;
  }

  addCounts(other: ArrayLike<number>): void {
    const counts = this.counts;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) counts[i]! += other[i]!;
  }

  count(): number {
    let total = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) total += this.counts[i]!;
    return total;
  }

  /** The value at a percentile (0-100): the upper edge of the bucket holding it, as HdrHistogram reports. */
  percentile(percent: number): number {
    const total = this.count();
    if (total === 0) return 0;
    const rank = Math.max(1, Math.ceil((percent / 100) * total));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return LatencyHistogram.bucketHigh(i);
    }
    return MAX_VALUE;
  }

  max(): number {
    for (let i = HISTOGRAM_BUCKETS - 1; i >= 0; i--) if (this.counts[i]! > 0) return LatencyHistogram.bucketHigh(i);
    return 0;
  }

  /** Cumulative counts at the given upper bounds (µs), for Prometheus `le` buckets. */
  cumulativeAt(boundsMicros: readonly number[]): number[] {
    const result: number[] = [];
    let bucket = 0;
    let seen = 0;
    for (const bound of boundsMicros) {
      while (bucket < HISTOGRAM_BUCKETS && LatencyHistogram.bucketHigh(bucket) <= bound) seen += this.counts[bucket++]!;
      result.push(seen);
    }
    return result;
  }
}
