// /metrics text: parsed with the real Prometheus parser (python3-prometheus-client); names are stable; values match Stats.
import { beforeAll, expect, test } from "bun:test";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { DURATION_BUCKETS_SECONDS, formatMetrics, renderMetrics } from "../../src/stats/prometheus.ts";
import { snapshot } from "../../src/stats/snapshot.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { testConfig, withAdmission } from "../helpers/common.ts";

/** Debian's python3 (the pyenv one on PATH may lack the Debian package). */
const PYTHON = ["/usr/bin/python3", "python3"].find((path) => Bun.which(path) !== null) ?? "python3";

const PARSE_SCRIPT = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name, "type": family.type, "help": family.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    })
print(json.dumps(families))
`;

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  samples: ParsedSample[];
}

/** Runs the real parser; fails the test with the parser's own message when the text is not valid. */
function parseWithPrometheusClient(text: string): ParsedFamily[] {
  const result = Bun.spawnSync([PYTHON, "-c", PARSE_SCRIPT], {
    stdin: new TextEncoder().encode(text),
    timeout: 20_000,
  });
  if (result.exitCode !== 0) throw new Error(`prometheus_client rejected the exposition:\n${result.stderr.toString()}`);
  return JSON.parse(result.stdout.toString()) as ParsedFamily[];
}

function sampleValue(families: ParsedFamily[], name: string, labels: Record<string, string> = {}): number {
  for (const family of families) {
    for (const sample of family.samples) {
      if (sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
        return sample.value;
    }
  }
  throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
}

/** Every family name /metrics must always carry (sample names; counters end in _total). Dashboards and alerts rely on these. */
const STABLE_SAMPLE_NAMES = [
  "hps_connections_active",
  "hps_connections_max_active",
  "hps_connections_total",
  "hps_connections_closed_total",
  "hps_refusals_total",
  "hps_rate_limited_total",
  "hps_requests_total",
  "hps_http_responses_total",
  "hps_request_duration_seconds_bucket",
  "hps_request_duration_seconds_sum",
  "hps_request_duration_seconds_count",
  "hps_bytes_total",
  "hps_errors_total",
  "hps_too_large_total",
  "hps_slow_reader_disconnects_total",
  "hps_pool_tasks_total",
  "hps_pool_worker_crashes_total",
  "hps_pool_queued_tasks",
  "hps_pool_running_tasks",
  "hps_pool_busy_workers",
  "hps_pool_workers",
  "hps_arena_fallbacks_total",
  "hps_arena_bytes_in_use",
  "hps_arena_peak_bytes",
  "hps_arena_capacity_bytes",
  "hps_arena_allocations_total",
  "hps_arena_frees_total",
  "hps_arena_failures_total",
  "hps_rate_limiter_tracked_ips",
  "hps_http_cache_entries",
  "hps_http_cache_bytes",
  "hps_http_cache_hits_total",
  "hps_http_cache_misses_total",
  "hps_uptime_seconds",
  "process_cpu_seconds_total",
  "process_resident_memory_bytes",
  "process_heap_bytes",
  "hps_array_buffer_bytes",
  "process_start_time_seconds",
  "process_open_fds",
  "process_max_fds",
];

beforeAll(() => {
  const probe = Bun.spawnSync([PYTHON, "-c", "import prometheus_client"]);
  if (probe.exitCode !== 0) {
    throw new Error(
      `${PYTHON} cannot import prometheus_client: install Debian's python3-prometheus-client (apt-get install -y python3-prometheus-client)`,
    );
  }
});

function httpContext(gauges: ServerContext["gauges"] = new Map()): ServerContext {
  return withAdmission({ config: testConfig(), stats: Stats.create(), logger: Logger.silent(), gauges });
}

test("an HTTP server's metrics parse with the real parser, with HELP and TYPE, and carry the counted values", () => {
  const context = httpContext(
    new Map<string, () => Record<string, number>>([
      ["pool", () => ({ queued: 5, running: 2, busyWorkers: 2, workers: 4 })],
      [
        "arena",
        () => ({ bytesInUse: 4096, peakBytes: 65536, allocations: 10, frees: 9, failures: 1, capacityBytes: 16 << 20 }),
      ],
      ["rateLimiter", () => ({ trackedIps: 12 })],
    ]),
  );
  const { stats } = context;
  for (let i = 0; i < 3; i++) stats.connectionOpened();
  stats.connectionClosed();
  stats.inc(Counter.connectionsRefused);
  stats.inc(Counter.refusedPerIp);
  stats.inc(Counter.connectionsTimedOut);
  for (const status of [200, 200, 200, 304, 404, 503]) {
    stats.requestDone(150);
    stats.httpStatus(status);
  }
  stats.add(Counter.bytesRead, 1234);
  stats.add(Counter.bytesWritten, 98765);
  stats.inc(Counter.rateLimited);
  stats.inc(Counter.poolSubmitted);
  stats.inc(Counter.poolRejected);
  stats.inc(Counter.errorsProtocol);

  const families = parseWithPrometheusClient(renderMetrics(context));
  const sampleNames = new Set(families.flatMap((family) => family.samples.map((sample) => sample.name)));
  for (const name of STABLE_SAMPLE_NAMES) expect(sampleNames.has(name)).toBe(true);
  for (const family of families) {
    expect(family.help.length).toBeGreaterThan(0);
    expect(["counter", "gauge", "histogram"]).toContain(family.type);
  }
  const typeOf = (name: string) => families.find((family) => family.name === name)?.type;
  expect(typeOf("hps_request_duration_seconds")).toBe("histogram");
  // prometheus_client strips _total from counter family names.
  expect(typeOf("hps_requests")).toBe("counter");
  expect(typeOf("hps_connections_active")).toBe("gauge");

  expect(sampleValue(families, "hps_connections_active")).toBe(2);
  expect(sampleValue(families, "hps_connections_total", { result: "accepted" })).toBe(3);
  expect(sampleValue(families, "hps_connections_total", { result: "refused" })).toBe(1);
  expect(sampleValue(families, "hps_connections_total", { result: "timed_out" })).toBe(1);
  expect(sampleValue(families, "hps_refusals_total", { reason: "per_ip" })).toBe(1);
  expect(sampleValue(families, "hps_requests_total", { protocol: "http", code: "2xx" })).toBe(3);
  expect(sampleValue(families, "hps_requests_total", { protocol: "http", code: "3xx" })).toBe(1);
  expect(sampleValue(families, "hps_requests_total", { protocol: "http", code: "4xx" })).toBe(1);
  expect(sampleValue(families, "hps_requests_total", { protocol: "http", code: "5xx" })).toBe(1);
  expect(sampleValue(families, "hps_http_responses_total", { code: "404" })).toBe(1);
  expect(sampleValue(families, "hps_bytes_total", { direction: "read" })).toBe(1234);
  expect(sampleValue(families, "hps_bytes_total", { direction: "written" })).toBe(98765);
  expect(sampleValue(families, "hps_rate_limited_total")).toBe(1);
  expect(sampleValue(families, "hps_errors_total", { kind: "protocol" })).toBe(1);
  expect(sampleValue(families, "hps_pool_tasks_total", { result: "rejected" })).toBe(1);
  expect(sampleValue(families, "hps_pool_queued_tasks")).toBe(5);
  expect(sampleValue(families, "hps_arena_bytes_in_use")).toBe(4096);
  expect(sampleValue(families, "hps_arena_failures_total")).toBe(1);
  expect(sampleValue(families, "hps_rate_limiter_tracked_ips")).toBe(12);
  expect(sampleValue(families, "process_resident_memory_bytes")).toBeGreaterThan(1 << 20);
  expect(sampleValue(families, "process_open_fds")).toBeGreaterThanOrEqual(3);
  expect(sampleValue(families, "hps_file_descriptors_used")).toBe(sampleValue(families, "process_open_fds"));
  expect(sampleValue(families, "hps_file_descriptors_limit")).toBeGreaterThan(
    sampleValue(families, "hps_file_descriptors_used"),
  );
  expect(sampleValue(families, "process_heap_bytes")).toBeGreaterThan(0);
  expect(sampleValue(families, "hps_array_buffer_bytes")).toBeGreaterThanOrEqual(0);
  expect(sampleValue(families, "process_cpu_seconds_total")).toBeGreaterThan(0);

  // The histogram: all six requests took 150 µs, so they sit in every bucket from le=0.00025 up.
  expect(sampleValue(families, "hps_request_duration_seconds_count")).toBe(6);
  expect(sampleValue(families, "hps_request_duration_seconds_sum")).toBeCloseTo(6 * 150e-6, 12);
  expect(sampleValue(families, "hps_request_duration_seconds_bucket", { le: "0.0001" })).toBe(0);
  expect(sampleValue(families, "hps_request_duration_seconds_bucket", { le: "0.00025" })).toBe(6);
  expect(sampleValue(families, "hps_request_duration_seconds_bucket", { le: "+Inf" })).toBe(6);
});

test("histogram buckets are cumulative and end at the count on random latencies", () => {
  const context = httpContext();
  let seed = 12345;
  for (let i = 0; i < 5000; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    context.stats.requestDone(Math.exp((seed / 2 ** 31) * Math.log(5_000_000)));
  }
  const families = parseWithPrometheusClient(renderMetrics(context));
  const buckets = families
    .find((family) => family.name === "hps_request_duration_seconds")!
    .samples.filter((sample) => sample.name.endsWith("_bucket"));
  expect(buckets.map((sample) => sample.labels.le)).toEqual([...DURATION_BUCKETS_SECONDS.map(String), "+Inf"]);
  for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
  expect(buckets[buckets.length - 1]!.value).toBe(5000);
  expect(buckets[0]!.value).toBeLessThan(5000);
});

test("echo and custom servers report requests by protocol; unknown gauge groups and odd names still parse", () => {
  const context: ServerContext = withAdmission({
    config: testConfig({ server: { protocol: "custom" } }),
    stats: Stats.create(),
    logger: Logger.silent(),
    gauges: new Map<string, () => Record<string, number>>([
      ["tlsSessions", () => ({ openNow: 4, 'weird key"\\': 1, "weird-key..": 2 })],
      ["pool", () => ({ queued: 1, queuedTasks: 99 })],
    ]),
  });
  for (let i = 0; i < 9; i++) context.stats.requestDone(20);
  const text = formatMetrics(snapshot(context), context.stats.latency());
  const families = parseWithPrometheusClient(text);
  expect(sampleValue(families, "hps_requests_total", { protocol: "custom" })).toBe(9);
  expect(sampleValue(families, "hps_tls_sessions_open_now")).toBe(4);
  // Both odd keys spell hps_tls_sessions_weird_key__: the first one wins, the name appears once.
  expect(sampleValue(families, "hps_tls_sessions_weird_key__")).toBe(1);
  // pool.queuedTasks would collide with the known hps_pool_queued_tasks (pool.queued): the known one stays.
  expect(sampleValue(families, "hps_pool_queued_tasks")).toBe(1);
  // No family appears twice (the parser would merge them silently; Prometheus would reject the scrape).
  const typeLines = text.split("\n").filter((line) => line.startsWith("# TYPE "));
  expect(new Set(typeLines).size).toBe(typeLines.length);
});
