// Prometheus text exposition (format 0.0.4) of every counter, gauge, the latency histogram and process metrics.
import type { ServerContext } from "../context.ts";
import { HANDSHAKE_FAILURE_LABELS } from "../tls/handshake.ts";
import { upstreamMetrics } from "../upstream/metrics.ts";
import { Exposition, snakeCase } from "./exposition.ts";
import { FLEET_METRICS, GAUGE_METRICS } from "./gauge-metrics.ts";
import type { LatencyHistogram } from "./histogram.ts";
import { snapshot, type Snapshot } from "./snapshot.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Upper bounds of `hps_request_duration_seconds` buckets, in seconds (+Inf is added). */
export const DURATION_BUCKETS_SECONDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;
const DURATION_BUCKETS_MICROS = DURATION_BUCKETS_SECONDS.map((seconds) => Math.round(seconds * 1e6));

/** The /metrics body for the running server. */
export function renderMetrics(context: ServerContext): string {
  const upstreams = context.upstreamStats === undefined ? "" : upstreamMetrics(context.upstreamStats);
  return formatMetrics(snapshot(context), context.stats.latency()) + upstreams;
}

/** Formats a snapshot and the merged latency histogram as Prometheus text format 0.0.4. */
export function formatMetrics(snap: Snapshot, histogram: LatencyHistogram): string {
  const c = snap.counters;
  const out = new Exposition();

  out.single("hps_connections_active", "gauge", "Connections open now.", c.activeConnections);
  out.single(
    "hps_connections_max_active",
    "gauge",
    "Most connections open at once since start or reset (sum of per-thread peaks).",
    c.maxActiveConnections,
  );
  out
    .family(
      "hps_connections_total",
      "counter",
      "Connections by outcome: accepted, refused at admission, or closed for idleness.",
    )
    .sample("hps_connections_total", c.connectionsAccepted, { result: "accepted" })
    .sample("hps_connections_total", c.connectionsRefused, { result: "refused" })
    .sample("hps_connections_total", c.connectionsTimedOut, { result: "timed_out" });
  out.single("hps_connections_closed_total", "counter", "Accepted connections that have closed.", c.connectionsClosed);
  out
    .family("hps_refusals_total", "counter", "Connections or requests refused at admission, by reason.")
    .sample("hps_refusals_total", c.refusedMaxConnections, { reason: "max_connections" })
    .sample("hps_refusals_total", c.refusedPerIp, { reason: "per_ip" })
    .sample("hps_refusals_total", c.refusedDenied, { reason: "denied" });
  out.single("hps_rate_limited_total", "counter", "Requests refused by the rate limiter.", c.rateLimited);

  out.family("hps_requests_total", "counter", "Requests finished, by protocol and (HTTP) status class.");
  if (snap.protocol === "http") {
    const classes = [
      ["1xx", c.http1xx],
      ["2xx", c.http2xx],
      ["3xx", c.http3xx],
      ["4xx", c.http4xx],
      ["5xx", c.http5xx],
    ] as const;
    for (const [code, value] of classes) out.sample("hps_requests_total", value, { protocol: "http", code });
  } else {
    out.sample("hps_requests_total", c.requests, { protocol: snap.protocol, code: "all" });
  }
  out
    .family(
      "hps_http_responses_total",
      "counter",
      "HTTP responses with selected individual status codes (also counted in their class).",
    )
    .sample("hps_http_responses_total", c.http304, { code: "304" })
    .sample("hps_http_responses_total", c.http404, { code: "404" });

  out.family("hps_request_duration_seconds", "histogram", "Time from request start to response, in seconds.");
  const cumulative = histogram.cumulativeAt(DURATION_BUCKETS_MICROS);
  DURATION_BUCKETS_SECONDS.forEach((bound, index) => {
    out.sample("hps_request_duration_seconds_bucket", cumulative[index]!, { le: String(bound) });
  });
  const count = histogram.count();
  out
    .sample("hps_request_duration_seconds_bucket", count, { le: "+Inf" })
    .sample("hps_request_duration_seconds_sum", c.requestMicrosSum / 1e6)
    .sample("hps_request_duration_seconds_count", count);

  out
    .family("hps_bytes_total", "counter", "Payload bytes read from and written to clients.")
    .sample("hps_bytes_total", c.bytesRead, { direction: "read" })
    .sample("hps_bytes_total", c.bytesWritten, { direction: "written" });
  out
    .family("hps_errors_total", "counter", "Errors by kind: protocol (bad input), system (I/O, internal) and timeout.")
    .sample("hps_errors_total", c.errorsProtocol, { kind: "protocol" })
    .sample("hps_errors_total", c.errorsSystem, { kind: "system" })
    .sample("hps_errors_total", c.errorsTimeout, { kind: "timeout" });
  out
    .family(
      "hps_too_large_total",
      "counter",
      "Requests refused for size: body or frame over limits.max_request_bytes, or headers too large.",
    )
    .sample("hps_too_large_total", c.requestsTooLarge, { part: "request" })
    .sample("hps_too_large_total", c.headersTooLarge, { part: "headers" });
  out.single(
    "hps_slow_reader_disconnects_total",
    "counter",
    "Connections closed because their waiting output made no progress for tcp.send_timeout_s (the client read nothing).",
    c.disconnectedSlowReader,
  );

  out
    .family("hps_pool_tasks_total", "counter", "Worker pool tasks by what happened to them.")
    .sample("hps_pool_tasks_total", c.poolSubmitted, { result: "submitted" })
    .sample("hps_pool_tasks_total", c.poolCompleted, { result: "completed" })
    .sample("hps_pool_tasks_total", c.poolRejected, { result: "rejected" })
    .sample("hps_pool_tasks_total", c.poolFailed, { result: "failed" })
    .sample("hps_pool_tasks_total", c.poolTimedOut, { result: "timed_out" });
  out.single("hps_pool_worker_crashes_total", "counter", "Pool workers that crashed and were replaced.", c.poolCrashed);
  out.single(
    "hps_arena_fallbacks_total",
    "counter",
    "Payloads over 64 KiB held in ordinary memory instead of an arena slot.",
    c.arenaFallbacks,
  );

  out
    .family(
      "hps_log_lines_dropped_total",
      "counter",
      "Log lines dropped because the log could not keep up (more than log.max_buffered_bytes waiting to be written).",
    )
    .sample("hps_log_lines_dropped_total", c.logLinesDropped, { log: "server" })
    .sample("hps_log_lines_dropped_total", c.accessLogLinesDropped, { log: "access" });
  tlsMetrics(out, snap);

  for (const metric of GAUGE_METRICS) {
    out.single(metric.name, metric.type, metric.help, snap.gauges[metric.group]?.[metric.key] ?? 0);
  }
  // Fleet metrics only in a fleet: a lone instance reporting "Redis down" would alarm for nothing.
  const fleet = snap.gauges.fleet;
  if (fleet !== undefined) {
    for (const metric of FLEET_METRICS) out.single(metric.name, metric.type, metric.help, fleet[metric.key] ?? 0);
  }
  // Groups or keys registered by modules this file does not know yet still appear, as gauges.
  const described = [...GAUGE_METRICS, ...FLEET_METRICS];
  const known = new Set(described.map((metric) => `${metric.group}.${metric.key}`));
  const usedNames = new Set(described.map((metric) => metric.name));
  for (const serverName of Object.keys(snap.gauges[TLS_EXPIRY_GROUP] ?? {})) {
    known.add(`${TLS_EXPIRY_GROUP}.${serverName}`);
  }
  for (const [group, values] of Object.entries(snap.gauges)) {
    for (const [key, value] of Object.entries(values)) {
      const name = `hps_${snakeCase(group)}_${snakeCase(key)}`;
      // A name may appear only once in a scrape; two keys that spell the same name keep the first.
      if (known.has(`${group}.${key}`) || usedNames.has(name)) continue;
      usedNames.add(name);
      out.single(name, "gauge", `Gauge ${key} of ${group}.`, Number(value));
    }
  }

  out.single("hps_uptime_seconds", "gauge", "Seconds since the server started.", snap.uptimeSeconds);
  const p = snap.process;
  out.single(
    "process_cpu_seconds_total",
    "counter",
    "Total user and system CPU time spent in seconds.",
    p.cpuUserSeconds + p.cpuSystemSeconds,
  );
  out.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.rssBytes);
  out.single(
    "process_heap_bytes",
    "gauge",
    "The main thread's JavaScript heap as JavaScriptCore counts it (process.memoryUsage().heapUsed), including the " +
      "buffer memory known at its last collection; it can exceed the resident size.",
    p.jsHeapBytes,
  );
  out.single(
    "hps_array_buffer_bytes",
    "gauge",
    "Memory of the ArrayBuffers and SharedArrayBuffers alive now (process.memoryUsage().arrayBuffers), counted once " +
      "allocated, resident only once touched.",
    p.arrayBufferBytes,
  );
  out.single(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
    (Date.now() - process.uptime() * 1000) / 1000,
  );
  if (p.fileDescriptorsUsed >= 0) {
    out.single("process_open_fds", "gauge", "Number of open file descriptors.", p.fileDescriptorsUsed);
    out.single("hps_file_descriptors_used", "gauge", "File descriptors open now.", p.fileDescriptorsUsed);
  }
  if (p.fileDescriptorsLimit >= 0) {
    out.single("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.fileDescriptorsLimit);
    out.single(
      "hps_file_descriptors_limit",
      "gauge",
      "Most file descriptors the process may open (the soft RLIMIT_NOFILE).",
      p.fileDescriptorsLimit,
    );
  }
  return out.text();
}

/** The gauge group the server registers with the certificates' expiry (src/tls/tls-state.ts, expiryGauges). */
const TLS_EXPIRY_GROUP = "tlsCertificateExpiry";

/** TLS: handshakes and their failures by reason (echo, custom), and each certificate's expiry. */
function tlsMetrics(out: Exposition, snap: Snapshot): void {
  const c = snap.counters;
  out.single(
    "hps_tls_handshakes_total",
    "counter",
    "TLS handshakes completed on echo and custom listeners (Bun.serve does not report the HTTP listener's).",
    c.tlsHandshakes,
  );
  out.family(
    "hps_tls_handshake_failures_total",
    "counter",
    "TLS handshakes that failed on echo and custom listeners, by reason (Bun.serve does not report the HTTP listener's).",
  );
  for (const [reason, counter] of HANDSHAKE_FAILURE_LABELS) {
    out.sample("hps_tls_handshake_failures_total", c[counter], { reason });
  }
  out.family(
    "hps_tls_certificate_expiry_seconds",
    "gauge",
    'When each served certificate expires (notAfter), Unix seconds; server_name "*" is the default certificate.',
  );
  for (const [serverName, seconds] of Object.entries(snap.gauges[TLS_EXPIRY_GROUP] ?? {})) {
    out.sample("hps_tls_certificate_expiry_seconds", seconds, { server_name: serverName });
  }
}
