// The human status report: a compact block to the log every stats.interval_s and a final one on shutdown.
import type { ServerContext } from "../context.ts";
import { HANDSHAKE_FAILURE_LABELS } from "../tls/handshake.ts";
import { upstreamReportLines } from "../upstream/metrics.ts";
import { SnapshotSampler, type LatencySummary, type Snapshot } from "./snapshot.ts";

/** Lines of the status report for one snapshot (the log, /status and `bun run stats` all show these). */
export function formatReport(snap: Snapshot): string[] {
  const c = snap.counters;
  const r = snap.rates;
  const lines: string[] = [];
  lines.push(
    `uptime ${formatDuration(snap.uptimeSeconds)}, protocol ${snap.protocol}, rates over the last ${formatDuration(snap.intervalSeconds)}`,
    `connections: ${count(c.activeConnections)} active (peak ${count(c.maxActiveConnections)}), ${count(c.connectionsAccepted)} accepted, ` +
      `${count(c.connectionsRefused)} refused, ${count(c.connectionsTimedOut)} timed out, ${rate(r.connectionsPerSecond)}/s`,
    `requests: ${count(c.requests)} total, ${rate(r.requestsPerSecond)}/s, avg ${micros(snap.latency.meanMicros)}, max ${micros(c.requestMicrosMax)}`,
    `latency: ${formatLatency(snap.latency)} (since start); last interval ${formatLatency(snap.intervalLatency)}`,
    `traffic: read ${bytes(c.bytesRead)} (${bytes(r.bytesReadPerSecond)}/s), written ${bytes(c.bytesWritten)} (${bytes(r.bytesWrittenPerSecond)}/s)`,
  );
  if (snap.protocol === "http") {
    lines.push(
      `http: 1xx ${count(c.http1xx)}, 2xx ${count(c.http2xx)}, 3xx ${count(c.http3xx)} (304 ${count(c.http304)}), ` +
        `4xx ${count(c.http4xx)} (404 ${count(c.http404)}), 5xx ${count(c.http5xx)}`,
    );
  }
  lines.push(
    `errors: protocol ${count(c.errorsProtocol)}, system ${count(c.errorsSystem)}, timeout ${count(c.errorsTimeout)}; ` +
      `too large: request ${count(c.requestsTooLarge)}, headers ${count(c.headersTooLarge)}; slow readers cut ${count(c.disconnectedSlowReader)}; ` +
      `log lines dropped: server ${count(c.logLinesDropped)}, access ${count(c.accessLogLinesDropped)}`,
    `refusals: max connections ${count(c.refusedMaxConnections)}, per ip ${count(c.refusedPerIp)}, denied ${count(c.refusedDenied)}, ` +
      `rate limited ${count(c.rateLimited)}${gaugeSuffix(snap, "rateLimiter", "trackedIps", " (tracking {} ips)")}`,
  );
  const pool = snap.gauges.pool;
  if (pool !== undefined || c.poolSubmitted > 0) {
    lines.push(
      `pool: ${pool ? `${count(pool.queued ?? 0)} queued, ${count(pool.running ?? 0)} running, ${count(pool.busyWorkers ?? 0)}/${count(pool.workers ?? 0)} workers busy; ` : ""}` +
        `${count(c.poolSubmitted)} submitted, ${count(c.poolCompleted)} completed, ${count(c.poolRejected)} rejected, ` +
        `${count(c.poolFailed)} failed, ${count(c.poolTimedOut)} timed out, ${count(c.poolCrashed)} crashed`,
    );
  }
  const arena = snap.gauges.arena;
  if (arena !== undefined) {
    const capacity = arena.capacityBytes ?? 0;
    const inUse = arena.bytesInUse ?? 0;
    lines.push(
      `arena: ${bytes(inUse)} of ${bytes(capacity)} in use (${capacity > 0 ? ((inUse / capacity) * 100).toFixed(1) : "0.0"} %), ` +
        `peak ${bytes(arena.peakBytes ?? 0)}, ${count(arena.failures ?? 0)} failures, ${count(c.arenaFallbacks)} fallbacks`,
    );
  }
  const cache = snap.gauges.httpCache;
  if (cache !== undefined) {
    lines.push(
      `http cache: ${count(cache.entries ?? 0)} files, ${bytes(cache.bytes ?? 0)}, ${count(cache.hits ?? 0)} hits, ${count(cache.misses ?? 0)} misses`,
    );
  }
  lines.push(...tlsLines(snap));
  for (const [group, values] of Object.entries(snap.gauges)) {
    if (group === "pool" || group === "arena" || group === "httpCache" || group === "rateLimiter") continue;
    if (group === "tlsCertificateExpiry") continue;
    lines.push(
      `${group}: ${Object.entries(values)
        .map(([key, value]) => `${key} ${count(value)}`)
        .join(", ")}`,
    );
  }
  lines.push(...upstreamReportLines(snap.upstreams ?? []));
  const p = snap.process;
  lines.push(
    `process: pid ${p.pid}, cpu ${p.cpuPercent.toFixed(1)} %, rss ${bytes(p.rssBytes)} (js heap ${bytes(p.jsHeapBytes)}, array buffers ${bytes(p.arrayBufferBytes)}), ` +
      `file descriptors ${fileDescriptors(p.fileDescriptorsUsed, p.fileDescriptorsLimit)}`,
  );
  return lines;
}

/** TLS handshakes (echo, custom) and days to each certificate's expiry; nothing when TLS is off. */
function tlsLines(snap: Snapshot): string[] {
  const c = snap.counters;
  const expiry = snap.gauges.tlsCertificateExpiry ?? {};
  const lines: string[] = [];
  const failed = HANDSHAKE_FAILURE_LABELS.map(([reason, counter]) => [reason, c[counter]] as const);
  if (c.tlsHandshakes > 0 || failed.some(([, value]) => value > 0)) {
    lines.push(
      `tls: ${count(c.tlsHandshakes)} handshakes; failed: ${failed.map(([reason, value]) => `${reason.replaceAll("_", " ")} ${count(value)}`).join(", ")}`,
    );
  }
  const names = Object.keys(expiry);
  if (names.length > 0) {
    const parts = names.map((name) => {
      const days = Math.floor((expiry[name]! * 1000 - snap.atMs) / 86_400_000);
      const date = new Date(expiry[name]! * 1000).toISOString().slice(0, 10);
      return `${name === "*" ? "default" : name} expires in ${days} day${days === 1 ? "" : "s"} (${date})`;
    });
    lines.push(`certificates: ${parts.join(", ")}`);
  }
  return lines;
}

export interface Reporter {
  /** Logs a status block now (what the interval does). */
  report(): void;
  /** Logs a status block every `intervalSeconds` from now on (0 = none); a configuration reload calls it. */
  reschedule(intervalSeconds: number): void;
  /** Stops the interval and logs the final report, whose rates cover the whole run. Safe to call twice. */
  stop(): void;
}

/**
 * Logs a status block every `config.stats.interval_s` seconds (0 = never) at info level,
 * and the final report when stopped.
 */
export function startReporter(context: ServerContext): Reporter {
  const sampler = new SnapshotSampler(context);
  let isStopped = false;
  const report = (): void => {
    context.logger.block("info", "status", formatReport(sampler.take()));
  };
  let timer: ReturnType<typeof setInterval> | null = null;
  const schedule = (intervalSeconds: number): void => {
    if (timer !== null) clearInterval(timer);
    timer = intervalSeconds > 0 && !isStopped ? setInterval(report, intervalSeconds * 1000) : null;
    // The report is for people reading the log; it must never keep the process alive.
    timer?.unref();
  };
  schedule(context.config.stats.interval_s);
  return {
    report,
    reschedule: schedule,
    stop(): void {
      if (isStopped) return;
      isStopped = true;
      if (timer !== null) clearInterval(timer);
      context.logger.block("info", "final report", formatReport(new SnapshotSampler(context).take()));
    },
  };
}

/** "23 used of 1,024" (-1 means unknown: no /proc). */
function fileDescriptors(used: number, limit: number): string {
  const usedText = used < 0 ? "unknown" : `${count(used)} used`;
  return limit > 0 ? `${usedText} of ${count(limit)}` : usedText;
}

function formatLatency(latency: LatencySummary): string {
  if (latency.count === 0) return "no requests";
  return (
    `p50 ${micros(latency.p50Micros)}, p90 ${micros(latency.p90Micros)}, p99 ${micros(latency.p99Micros)}, ` +
    `p99.9 ${micros(latency.p999Micros)}, max ${micros(latency.maxMicros)}`
  );
}

function gaugeSuffix(snap: Snapshot, group: string, key: string, template: string): string {
  const value = snap.gauges[group]?.[key];
  return value === undefined ? "" : template.replace("{}", count(value));
}

/** 1234567 -> "1,234,567". */
export function count(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** Per-second rates keep one decimal when small. */
function rate(value: number): string {
  return value >= 100 ? count(value) : value.toFixed(1);
}

/** Microseconds as µs, ms or s, whichever reads best. */
export function micros(value: number): string {
  if (value < 1000) return `${value.toFixed(0)} µs`;
  if (value < 1_000_000) return `${(value / 1000).toFixed(2)} ms`;
  return `${(value / 1_000_000).toFixed(2)} s`;
}

/** Bytes in binary units: "512 B", "1.5 KiB", "12.3 MiB". */
export function bytes(value: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(scaled)} B` : `${scaled.toFixed(1)} ${units[unit]}`;
}

/** Seconds as "42s", "3m07s", "2h05m", "3d04h". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return seconds < 10 ? `${seconds.toFixed(1)}s` : `${Math.floor(seconds)}s`;
  const whole = Math.floor(seconds);
  const pad = (n: number): string => String(n).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)}m${pad(whole % 60)}s`;
  if (whole < 86_400) return `${Math.floor(whole / 3600)}h${pad(Math.floor((whole % 3600) / 60))}m`;
  return `${Math.floor(whole / 86_400)}d${pad(Math.floor((whole % 86_400) / 3600))}h`;
}
