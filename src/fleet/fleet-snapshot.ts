// What an instance publishes for the fleet's view, and the fleet's sum: counters and gauges added, latency histograms
// merged bucket by bucket (so the fleet's percentiles are those of every request, not an average of percentiles).
import { HISTOGRAM_BUCKETS, LatencyHistogram } from "../stats/histogram.ts";
import { summarize, type ProcessSummary, type Snapshot } from "../stats/snapshot.ts";
import { COUNTER_NAMES, type CounterName } from "../stats/stats.ts";
import { combineFleetValue } from "./counters.ts";

/** Bumped when the published shape changes; other versions are left out of the sum (and counted as unreadable). */
export const PUBLISHED_VERSION = 1;

/** A histogram as [bucket, count] pairs of its non-empty buckets (a few hundred at most, usually far fewer). */
type SparseBuckets = Array<[number, number]>;

/** One instance's statistics as published. */
export interface PublishedSnapshot {
  readonly version: number;
  readonly snapshot: Snapshot;
  /** The latency histogram since start, and over the snapshot's interval. */
  readonly latencyBuckets: SparseBuckets;
  readonly intervalBuckets: SparseBuckets;
}

export interface FleetInstance {
  /** fleet.instance_id (hostname:port by default). */
  readonly id: string;
  /** Seconds since it last published, on Redis's clock. */
  readonly ageSeconds: number;
  readonly snapshot: Snapshot;
}

/** /stats?scope=fleet: every instance that published within its TTL, and their sum. */
export interface FleetView {
  readonly scope: "fleet";
  /** When this view was read, ms since the epoch. */
  readonly atMs: number;
  readonly instances: FleetInstance[];
  /** Entries that could not be read (another version of hps, or damaged): left out of the sum. */
  readonly unreadable: number;
  /** The sum over instances, shaped as one instance's snapshot (report, metrics and dashboard read it so). */
  readonly total: Snapshot;
}

export function encodeSnapshot(snapshot: Snapshot, latency: ArrayLike<number>, interval: ArrayLike<number>): string {
  const published: PublishedSnapshot = {
    version: PUBLISHED_VERSION,
    snapshot,
    latencyBuckets: sparse(latency),
    intervalBuckets: sparse(interval),
  };
  return JSON.stringify(published);
}

/** The published snapshot in `text`, or null when it is not one this version can add up (never throws). */
export function decodeSnapshot(text: string): PublishedSnapshot | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isRecord(value) || value.version !== PUBLISHED_VERSION) return null;
  const snapshot = value.snapshot;
  if (!isRecord(snapshot) || !isNumberRecord(snapshot.counters) || !isNumberRecord(snapshot.rates)) return null;
  if (!isRecord(snapshot.process) || !isRecord(snapshot.gauges)) return null;
  if (!isSparse(value.latencyBuckets) || !isSparse(value.intervalBuckets)) return null;
  for (const group of Object.values(snapshot.gauges)) if (!isNumberRecord(group)) return null;
  for (const name of ["atMs", "startedAtMs", "uptimeSeconds", "intervalSeconds"]) {
    if (!Number.isFinite(snapshot[name])) return null;
  }
  return value as unknown as PublishedSnapshot;
}

/** The fleet's view from what each instance published; also the merged histogram since start (for /metrics). */
export function mergeFleet(
  entries: ReadonlyArray<{ id: string; ageSeconds: number; published: PublishedSnapshot }>,
  unreadable: number,
  atMs: number,
): { view: FleetView; histogram: LatencyHistogram } {
  const latency = new LatencyHistogram();
  const interval = new LatencyHistogram();
  const counters = Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as Record<CounterName, number>;
  const rates = zeroRates();
  const process = zeroProcess();
  const gauges: Record<string, Record<string, number>> = {};
  const protocols = new Set<string>();
  let startedAtMs = Number.POSITIVE_INFINITY;
  let uptimeSeconds = 0;
  let intervalSeconds = 0;
  let intervalMicrosSum = 0;
  for (const { published } of entries) {
    const snap = published.snapshot;
    for (const name of COUNTER_NAMES) {
      const value = snap.counters[name] ?? 0;
      counters[name] = name === "requestMicrosMax" ? Math.max(counters[name], value) : counters[name] + value;
    }
    for (const key of Object.keys(rates) as Array<keyof typeof rates>) rates[key] += snap.rates[key] ?? 0;
    // Sums (CPU, memory, descriptors in use and allowed); a -1 (unknown there) adds nothing.
    for (const key of Object.keys(process) as Array<keyof ProcessSummary>) {
      if (key !== "pid") process[key] += Math.max(0, snap.process[key] ?? 0);
    }
    for (const [group, values] of Object.entries(snap.gauges)) {
      const sum = (gauges[group] ??= {});
      // The fleet's own gauges describe one Redis and one fleet, seen by each instance: some must not be added up.
      for (const [key, value] of Object.entries(values)) {
        sum[key] = group === "fleet" ? combineFleetValue(key, sum[key], value) : (sum[key] ?? 0) + value;
      }
    }
    addSparse(latency, published.latencyBuckets);
    addSparse(interval, published.intervalBuckets);
    intervalMicrosSum += snap.intervalLatency.meanMicros * snap.intervalLatency.count;
    protocols.add(snap.protocol);
    startedAtMs = Math.min(startedAtMs, snap.startedAtMs);
    uptimeSeconds = Math.max(uptimeSeconds, snap.uptimeSeconds);
    intervalSeconds = Math.max(intervalSeconds, snap.intervalSeconds);
  }
  const total: Snapshot = {
    atMs,
    startedAtMs: Number.isFinite(startedAtMs) ? startedAtMs : atMs,
    uptimeSeconds,
    protocol: protocols.size === 1 ? [...protocols][0]! : protocols.size === 0 ? "none" : "mixed",
    intervalSeconds,
    counters,
    rates,
    latency: summarize(latency, counters.requestMicrosSum, counters.requestMicrosMax),
    intervalLatency: summarize(interval, intervalMicrosSum, counters.requestMicrosMax),
    process,
    gauges,
  };
  const instances = entries
    .map(({ id, ageSeconds, published }) => ({ id, ageSeconds, snapshot: published.snapshot }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { view: { scope: "fleet", atMs, instances, unreadable, total }, histogram: latency };
}

type Rates = { -readonly [K in keyof Snapshot["rates"]]: number };
type Process = { -readonly [K in keyof ProcessSummary]: number };

/** Every rate at 0 (the type makes this list follow Snapshot's). */
function zeroRates(): Rates {
  return {
    requestsPerSecond: 0,
    connectionsPerSecond: 0,
    bytesReadPerSecond: 0,
    bytesWrittenPerSecond: 0,
    errorsPerSecond: 0,
    refusedPerSecond: 0,
    rateLimitedPerSecond: 0,
    http2xxPerSecond: 0,
    http3xxPerSecond: 0,
    http4xxPerSecond: 0,
    http5xxPerSecond: 0,
  };
}

/** The process summary of the sum: every field 0, pid 0 (the sum has none). */
function zeroProcess(): Process {
  return {
    pid: 0,
    cpuPercent: 0,
    cpuUserSeconds: 0,
    cpuSystemSeconds: 0,
    rssBytes: 0,
    jsHeapBytes: 0,
    arrayBufferBytes: 0,
    fileDescriptorsUsed: 0,
    fileDescriptorsLimit: 0,
  };
}

function sparse(counts: ArrayLike<number>): SparseBuckets {
  const pairs: SparseBuckets = [];
  for (let bucket = 0; bucket < counts.length; bucket++) if (counts[bucket]! > 0) pairs.push([bucket, counts[bucket]!]);
  return pairs;
}

function addSparse(histogram: LatencyHistogram, pairs: SparseBuckets): void {
  for (const [bucket, count] of pairs) histogram.counts[bucket]! += count;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNumberRecord(value: unknown): value is Record<string, number> {
  return isRecord(value) && Object.values(value).every((item) => Number.isFinite(item));
}

function isSparse(value: unknown): value is SparseBuckets {
  return (
    Array.isArray(value) &&
    value.every(
      (pair) =>
        Array.isArray(pair) &&
        pair.length === 2 &&
        Number.isInteger(pair[0]) &&
        pair[0] >= 0 &&
        pair[0] < HISTOGRAM_BUCKETS &&
        Number.isFinite(pair[1]) &&
        pair[1] >= 0,
    )
  );
}
