// Point-in-time snapshot of all statistics as a plain object: counters, interval rates, latency, process, gauges.
import { readdirSync, readFileSync } from "node:fs";
import type { ServerContext } from "../context.ts";
import { type UpstreamServerSnapshot, upstreamSnapshot } from "../upstream/metrics.ts";
import { LatencyHistogram } from "./histogram.ts";
import type { CounterName, Stats } from "./stats.ts";

/** Latency percentiles in microseconds (upper edge of the histogram bucket, capped at the exact max). */
export interface LatencySummary {
  readonly count: number;
  readonly meanMicros: number;
  readonly p50Micros: number;
  readonly p90Micros: number;
  readonly p99Micros: number;
  readonly p999Micros: number;
  readonly maxMicros: number;
}

export interface ProcessSummary {
  readonly pid: number;
  /** CPU time of the whole process (all threads) over the interval, as percent of one core. */
  readonly cpuPercent: number;
  readonly cpuUserSeconds: number;
  readonly cpuSystemSeconds: number;
  /** Resident set size of the whole process (all threads, the JavaScript heaps and everything else). */
  readonly rssBytes: number;
  /**
   * The main thread's JavaScript heap as JavaScriptCore counts it (process.memoryUsage().heapUsed, read in the same
   * call as rssBytes). It includes the ArrayBuffer memory the engine knew of at its last collection, so it moves with
   * garbage collections and can exceed rssBytes (see arrayBufferBytes). Bun's heapTotal is left out: it is counted
   * another way and can read less than heapUsed.
   */
  readonly jsHeapBytes: number;
  /**
   * Memory of the ArrayBuffers and SharedArrayBuffers alive now (process.memoryUsage().arrayBuffers). A buffer counts
   * in full once allocated, but the kernel makes its pages resident only when they are touched, so large buffers not
   * yet used (the arena, the stats buffer) count here and not in rssBytes.
   */
  readonly arrayBufferBytes: number;
  /** File descriptors open now (entries of /proc/self/fd); -1 where /proc is not available. */
  readonly fileDescriptorsUsed: number;
  /** The soft limit on open file descriptors (RLIMIT_NOFILE, from /proc/self/limits); -1 when unknown or unlimited. */
  readonly fileDescriptorsLimit: number;
}

export interface Snapshot {
  /** Wall-clock time the snapshot was taken, ms since the epoch. */
  readonly atMs: number;
  readonly startedAtMs: number;
  readonly uptimeSeconds: number;
  readonly protocol: string;
  /** Length of the window the rates and `intervalLatency` cover. */
  readonly intervalSeconds: number;
  /** Every counter summed over all threads (max for requestMicrosMax; maxActiveConnections is the sum of per-thread peaks). */
  readonly counters: Record<CounterName, number>;
  readonly rates: {
    readonly requestsPerSecond: number;
    readonly connectionsPerSecond: number;
    readonly bytesReadPerSecond: number;
    readonly bytesWrittenPerSecond: number;
    /** Errors of every kind: protocol (bad input), system (I/O, internal) and timeout. */
    readonly errorsPerSecond: number;
    /** Connections refused at admission. */
    readonly refusedPerSecond: number;
    /** Requests refused by the rate limiter. */
    readonly rateLimitedPerSecond: number;
    /** HTTP responses by status class (0 for the other protocols). */
    readonly http2xxPerSecond: number;
    readonly http3xxPerSecond: number;
    readonly http4xxPerSecond: number;
    readonly http5xxPerSecond: number;
  };
  /** Since start (or the last reset). */
  readonly latency: LatencySummary;
  /** Requests finished during the interval only. */
  readonly intervalLatency: LatencySummary;
  readonly process: ProcessSummary;
  /** Every gauge group registered in context.gauges, read now. */
  readonly gauges: Record<string, Record<string, number>>;
  /**
   * Each server of the upstream groups running now (src/upstream/metrics.ts); empty without any. Absent from a
   * fleet's merged view (each instance's /stats has its own).
   */
  readonly upstreams?: UpstreamServerSnapshot[];
}

/** What a snapshot is measured against: counters, histogram and CPU at an earlier moment. */
interface Baseline {
  atMs: number;
  counters: Record<CounterName, number> | null;
  histogram: Float64Array | null;
  cpuMicros: number;
  cpuAtMs: number;
}

/** Takes snapshots whose rates cover the time since this sampler's previous snapshot. */
export class SnapshotSampler {
  private readonly context: ServerContext;
  private baseline: Baseline;

  constructor(context: ServerContext) {
    this.context = context;
    // The first window starts when the statistics did; CPU time counts from process start.
    const nowMs = Date.now();
    this.baseline = {
      atMs: context.stats.startedAtMs,
      counters: null,
      histogram: null,
      cpuMicros: 0,
      cpuAtMs: nowMs - process.uptime() * 1000,
    };
  }

  /** Starts a new window now: the next snapshot's rates and interval latency cover the time from here. */
  restart(): void {
    const { stats } = this.context;
    const cpu = process.cpuUsage();
    const atMs = Date.now();
    this.baseline = {
      atMs,
      counters: stats.totals(),
      histogram: stats.latency().counts,
      cpuMicros: cpu.user + cpu.system,
      cpuAtMs: atMs,
    };
  }

  /**
   * A snapshot with rates since the baseline. The baseline moves to now only when it is at least
   * `minAdvanceMs` old, so frequent callers (several people polling /stats) still see rates over a useful window.
   */
  take(minAdvanceMs = 0): Snapshot {
    const { stats, config, gauges } = this.context;
    const atMs = Date.now();
    const counters = stats.totals();
    const histogram = stats.latency();
    const cpu = process.cpuUsage();
    const cpuMicros = cpu.user + cpu.system;
    const previous = this.baseline;

    const intervalMs = Math.max(1, atMs - previous.atMs);
    const intervalSeconds = intervalMs / 1000;
    const delta = (name: CounterName): number => Math.max(0, counters[name] - (previous.counters?.[name] ?? 0));
    const perSecond = (amount: number): number => amount / intervalSeconds;

    const intervalHistogram = new LatencyHistogram();
    const intervalCounts = intervalHistogram.counts;
    const currentCounts = histogram.counts;
    const previousCounts = previous.histogram;
    for (let i = 0; i < intervalCounts.length; i++) {
      intervalCounts[i] = Math.max(0, currentCounts[i]! - (previousCounts?.[i] ?? 0));
    }
    const exactMaxMicros = counters.requestMicrosMax;
    const cpuIntervalMs = Math.max(1, atMs - previous.cpuAtMs);
    const memory = process.memoryUsage();

    const snapshot: Snapshot = {
      atMs,
      startedAtMs: stats.startedAtMs,
      uptimeSeconds: (atMs - stats.startedAtMs) / 1000,
      protocol: config.server.protocol,
      intervalSeconds,
      counters,
      rates: {
        requestsPerSecond: perSecond(delta("requests")),
        connectionsPerSecond: perSecond(delta("connectionsAccepted")),
        bytesReadPerSecond: perSecond(delta("bytesRead")),
        bytesWrittenPerSecond: perSecond(delta("bytesWritten")),
        errorsPerSecond: perSecond(delta("errorsProtocol") + delta("errorsSystem") + delta("errorsTimeout")),
        refusedPerSecond: perSecond(delta("connectionsRefused")),
        rateLimitedPerSecond: perSecond(delta("rateLimited")),
        http2xxPerSecond: perSecond(delta("http2xx")),
        http3xxPerSecond: perSecond(delta("http3xx")),
        http4xxPerSecond: perSecond(delta("http4xx")),
        http5xxPerSecond: perSecond(delta("http5xx")),
      },
      latency: summarize(histogram, counters.requestMicrosSum, exactMaxMicros),
      intervalLatency: summarize(
        intervalHistogram,
        Math.max(0, counters.requestMicrosSum - (previous.counters?.requestMicrosSum ?? 0)),
        exactMaxMicros,
      ),
      process: {
        pid: process.pid,
        cpuPercent: (Math.max(0, cpuMicros - previous.cpuMicros) / 1000 / cpuIntervalMs) * 100,
        cpuUserSeconds: cpu.user / 1e6,
        cpuSystemSeconds: cpu.system / 1e6,
        rssBytes: memory.rss,
        jsHeapBytes: memory.heapUsed,
        arrayBufferBytes: memory.arrayBuffers,
        fileDescriptorsUsed: countOpenFds(),
        fileDescriptorsLimit: maxOpenFds(),
      },
      gauges: readGauges(gauges),
      upstreams: this.context.upstreamStats === undefined ? [] : upstreamSnapshot(this.context.upstreamStats),
    };

    if (atMs - previous.atMs >= minAdvanceMs) {
      this.baseline = { atMs, counters, histogram: currentCounts, cpuMicros, cpuAtMs: atMs };
    }
    return snapshot;
  }
}

const sharedSamplers = new WeakMap<Stats, SnapshotSampler>();
/** Callers without a sampler of their own (/stats, the STATS opcode) share one whose window is at least this long. */
const SHARED_MIN_WINDOW_MS = 1000;

/**
 * The current statistics as a plain, JSON-ready object. Rates cover the time since an earlier shared sample
 * (at least about a second back, or since start). Periodic callers should own a `SnapshotSampler` instead.
 */
export function snapshot(context: ServerContext): Snapshot {
  let sampler = sharedSamplers.get(context.stats);
  if (sampler === undefined) {
    sampler = new SnapshotSampler(context);
    sharedSamplers.set(context.stats, sampler);
  }
  return sampler.take(SHARED_MIN_WINDOW_MS);
}

/** Percentiles, mean and max of `histogram` (the fleet view summarizes merged histograms the same way). */
export function summarize(histogram: LatencyHistogram, sumMicros: number, exactMaxMicros: number): LatencySummary {
  const count = histogram.count();
  if (count === 0)
    return { count: 0, meanMicros: 0, p50Micros: 0, p90Micros: 0, p99Micros: 0, p999Micros: 0, maxMicros: 0 };
  // A bucket's upper edge can exceed the largest value really seen; never report more than that.
  const cap = (micros: number): number => (exactMaxMicros > 0 ? Math.min(micros, exactMaxMicros) : micros);
  return {
    count,
    meanMicros: sumMicros / count,
    p50Micros: cap(histogram.percentile(50)),
    p90Micros: cap(histogram.percentile(90)),
    p99Micros: cap(histogram.percentile(99)),
    p999Micros: cap(histogram.percentile(99.9)),
    maxMicros: cap(histogram.max()),
  };
}

function readGauges(registry: ServerContext["gauges"]): Record<string, Record<string, number>> {
  const result: Record<string, Record<string, number>> = {};
  for (const [group, read] of registry) {
    try {
      result[group] = { ...read() };
    } catch {
      // A failing gauge must not take the whole snapshot down; its group is simply absent.
    }
  }
  return result;
}

function countOpenFds(): number {
  try {
    // readdir opens the directory itself, which then shows up in the listing.
    return readdirSync("/proc/self/fd").length - 1;
  } catch {
    return -1;
  }
}

let cachedMaxFds: number | undefined;
function maxOpenFds(): number {
  if (cachedMaxFds !== undefined) return cachedMaxFds;
  cachedMaxFds = -1;
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (match) cachedMaxFds = Number(match[1]);
  } catch {
    // Not Linux: leave it unknown.
  }
  return cachedMaxFds;
}
