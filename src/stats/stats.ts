// Shared-memory statistics: counters and a latency histogram that every thread writes without messages.
//
// Layout: one SharedArrayBuffer cut into shards, one shard per writing thread (I/O threads, pool workers).
// Each shard has exactly one writer, so a plain Float64 store is an exact update with no lost increments;
// readers sum the shards. That is much cheaper than Atomics.add on a BigInt64Array (bench/micro/stats.bench.ts
// measures both), and Int32 Atomics would overflow byte counters. Float64 is exact to 2^53.
import { LatencyHistogram, HISTOGRAM_BUCKETS } from "./histogram.ts";

/** Counter slots. Each is a monotonically increasing total unless its name says gauge. */
export const Counter = {
  connectionsAccepted: 0,
  connectionsRefused: 1,
  connectionsTimedOut: 2,
  connectionsClosed: 3,
  requests: 4,
  bytesRead: 5,
  bytesWritten: 6,
  errorsProtocol: 7,
  errorsSystem: 8,
  errorsTimeout: 9,
  rateLimited: 10,
  refusedPerIp: 11,
  refusedDenied: 12,
  refusedMaxConnections: 13,
  disconnectedSlowReader: 14,
  http1xx: 15,
  http2xx: 16,
  http3xx: 17,
  http4xx: 18,
  http5xx: 19,
  /** gauge: connections open now on this shard */
  activeConnections: 20,
  /** gauge: most connections open at once on this shard */
  maxActiveConnections: 21,
  /** sum of request durations, microseconds */
  requestMicrosSum: 22,
  /** longest request, microseconds */
  requestMicrosMax: 23,
  poolSubmitted: 24,
  poolCompleted: 25,
  poolRejected: 26,
  poolFailed: 27,
  poolTimedOut: 28,
  poolCrashed: 29,
  requestsTooLarge: 30,
  headersTooLarge: 31,
  arenaFallbacks: 32,
  http304: 33,
  http404: 34,
  /** server log lines dropped because the log could not keep up (log.max_buffered_bytes) */
  logLinesDropped: 35,
  /** access log lines dropped because the log could not keep up (log.max_buffered_bytes) */
  accessLogLinesDropped: 36,
  /** TLS handshakes completed on echo and custom listeners (Bun.serve does not report its handshakes) */
  tlsHandshakes: 37,
  /** TLS handshakes that failed, by reason (src/tls/handshake.ts); echo and custom listeners only */
  tlsFailedNotTls: 38,
  tlsFailedProtocolVersion: 39,
  tlsFailedNoSharedCipher: 40,
  tlsFailedNoClientCertificate: 41,
  tlsFailedBadClientCertificate: 42,
  tlsFailedClosed: 43,
  tlsFailedTimeout: 44,
  tlsFailedOther: 45,
} as const;
export type CounterName = keyof typeof Counter;
export const COUNTER_NAMES = Object.keys(Counter) as CounterName[];
const COUNTER_SLOTS = 48;

const HEADER_INT32S = 4; // [0] = next free shard index
const HEADER_BYTES = HEADER_INT32S * 4 * 2; // keep the Float64 region 8-byte aligned
const SHARD_FLOATS = COUNTER_SLOTS + HISTOGRAM_BUCKETS;
const SHARD_BYTES = SHARD_FLOATS * 8;
/** Shards available: I/O threads + pool workers + replacements for crashed workers. */
export const MAX_SHARDS = 512;

/** A thread's handle on the shared statistics; `create` once in the main thread, `attach` in others. */
export class Stats {
  readonly buffer: SharedArrayBuffer;
  /** This thread's shard: counters first, then histogram buckets. */
  private readonly shard: Float64Array;
  private readonly header: Int32Array;
  readonly startedAtMs: number;

  private constructor(buffer: SharedArrayBuffer, startedAtMs: number) {
    this.buffer = buffer;
    this.header = new Int32Array(buffer, 0, HEADER_INT32S);
    const index = Atomics.add(this.header, 0, 1);
    // Out of shards: share the last one. Counting stays correct except for rare lost updates there.
    const shardIndex = Math.min(index, MAX_SHARDS - 1);
    this.shard = new Float64Array(buffer, HEADER_BYTES + shardIndex * SHARD_BYTES, SHARD_FLOATS);
    this.startedAtMs = startedAtMs;
  }

  static create(): Stats {
    return new Stats(new SharedArrayBuffer(HEADER_BYTES + MAX_SHARDS * SHARD_BYTES), Date.now());
  }

  /** Joins statistics created in another thread; the new handle gets a shard of its own. */
  static attach(buffer: SharedArrayBuffer, startedAtMs = Date.now()): Stats {
    return new Stats(buffer, startedAtMs);
  }

  inc(counter: number): void {
    this.shard[counter]! += 1;
  }

  add(counter: number, amount: number): void {
    this.shard[counter]! += amount;
  }

  connectionOpened(): void {
    const shard = this.shard;
    shard[Counter.connectionsAccepted]! += 1;
    const active = (shard[Counter.activeConnections]! += 1);
    if (active > shard[Counter.maxActiveConnections]!) shard[Counter.maxActiveConnections] = active;
  }

  connectionClosed(): void {
    this.shard[Counter.connectionsClosed]! += 1;
    this.shard[Counter.activeConnections]! -= 1;
  }

  /**
   * Connections counted by sampling the kernel's sockets instead of by events (the http protocol, see
   * socket-sampler.ts): `open` now, `opened` and `closed` since the previous sample.
   */
  connectionsSampled(open: number, opened: number, closed: number): void {
    const shard = this.shard;
    shard[Counter.connectionsAccepted]! += opened;
    shard[Counter.connectionsClosed]! += closed;
    shard[Counter.activeConnections] = open;
    if (open > shard[Counter.maxActiveConnections]!) shard[Counter.maxActiveConnections] = open;
  }

  /** Counts one finished request and its duration. */
  requestDone(micros: number): void {
    const shard = this.shard;
    shard[Counter.requests]! += 1;
    shard[Counter.requestMicrosSum]! += micros;
    if (micros > shard[Counter.requestMicrosMax]!) shard[Counter.requestMicrosMax] = micros;
    shard[COUNTER_SLOTS + LatencyHistogram.bucketOf(micros)]! += 1;
  }

  /** Counts an HTTP status code into its class (and 304/404 on their own). */
  httpStatus(status: number): void {
    const shard = this.shard;
    if (status < 200) shard[Counter.http1xx]! += 1;
    else if (status < 300) shard[Counter.http2xx]! += 1;
    else if (status < 400) {
      shard[Counter.http3xx]! += 1;
      if (status === 304) shard[Counter.http304]! += 1;
    } else if (status < 500) {
      shard[Counter.http4xx]! += 1;
      if (status === 404) shard[Counter.http404]! += 1;
    } else shard[Counter.http5xx]! += 1;
  }

  /** Sum of one counter over all shards. */
  total(counter: number): number {
    const used = this.shardsInUse();
    const all = new Float64Array(this.buffer, HEADER_BYTES);
    let sum = 0;
    for (let s = 0; s < used; s++) sum += all[s * SHARD_FLOATS + counter]!;
    return sum;
  }

  /** Every counter summed over the shards (max for the max gauges). */
  totals(): Record<CounterName, number> {
    const used = this.shardsInUse();
    const all = new Float64Array(this.buffer, HEADER_BYTES);
    const result = {} as Record<CounterName, number>;
    for (const name of COUNTER_NAMES) {
      const slot = Counter[name];
      const isMax = name === "requestMicrosMax";
      let value = 0;
      for (let s = 0; s < used; s++) {
        const v = all[s * SHARD_FLOATS + slot]!;
        value = isMax ? Math.max(value, v) : value + v;
      }
      result[name] = value;
    }
    return result;
  }

  /** The latency histogram merged over all shards (bucket counts added). */
  latency(): LatencyHistogram {
    const used = this.shardsInUse();
    const all = new Float64Array(this.buffer, HEADER_BYTES);
    const merged = new LatencyHistogram();
    for (let s = 0; s < used; s++) {
      merged.addCounts(all.subarray(s * SHARD_FLOATS + COUNTER_SLOTS, (s + 1) * SHARD_FLOATS));
    }
    return merged;
  }

  /** Zeroes every counter and the histogram (gauges of open connections are kept). */
  reset(): void {
    const used = this.shardsInUse();
    const all = new Float64Array(this.buffer, HEADER_BYTES);
    for (let s = 0; s < used; s++) {
      const base = s * SHARD_FLOATS;
      const active = all[base + Counter.activeConnections]!;
      all.fill(0, base, base + SHARD_FLOATS);
      all[base + Counter.activeConnections] = active;
      all[base + Counter.maxActiveConnections] = active;
    }
  }

  private shardsInUse(): number {
    return Math.min(Atomics.load(this.header, 0), MAX_SHARDS);
  }
}
