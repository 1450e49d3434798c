// The dashboard's panels: what each one draws, what it measures, and which protocols have it.
import type { Protocol } from "../config/schema.ts";

/** One line of a panel: read from each /events snapshot by a dotted path. */
export interface SeriesSpec {
  readonly label: string;
  readonly path: string;
  readonly color: string;
}

/** A panel as the page draws it. */
export interface ChartSpec {
  readonly id: string;
  readonly title: string;
  /** One or two sentences under the title saying exactly what is measured. */
  readonly note: string;
  readonly unit: "count" | "micros" | "bytes";
  readonly series: readonly SeriesSpec[];
}

/** A panel with its note per protocol; protocols without a note do not show it. */
interface PanelSpec extends Omit<ChartSpec, "note"> {
  readonly notes: Partial<Record<Protocol, string>>;
}

const PANELS: readonly PanelSpec[] = [
  {
    id: "rps",
    title: "Requests / s",
    unit: "count",
    notes: {
      http: "Responses hps's request handler finished, per second. Files Bun serves itself (http.static_routes) are not counted.",
      custom: "HPS/1 frames answered, per second.",
    },
    series: [{ label: "requests/s", path: "rates.requestsPerSecond", color: "#4f9dff" }],
  },
  {
    id: "latency",
    title: "Handler time (last second)",
    unit: "micros",
    notes: {
      http: "From hps's handler starting on a request to the response handed to Bun. Reading the request, waiting in the event loop and sending are not in it: clients see more (bun run load measures what they see).",
      custom:
        "From a frame decoded to its answer queued, pool time included. The network and the client's side are not in it: clients see more (bun run load measures what they see).",
    },
    series: [
      { label: "p50", path: "intervalLatency.p50Micros", color: "#48c774" },
      { label: "p90", path: "intervalLatency.p90Micros", color: "#ffdd57" },
      { label: "p99", path: "intervalLatency.p99Micros", color: "#ff6b6b" },
    ],
  },
  {
    id: "status",
    title: "Responses / s by status",
    unit: "count",
    notes: { http: "HTTP responses per second by status class (499: the client had gone before its answer)." },
    series: [
      { label: "2xx", path: "rates.http2xxPerSecond", color: "#48c774" },
      { label: "3xx", path: "rates.http3xxPerSecond", color: "#4f9dff" },
      { label: "4xx", path: "rates.http4xxPerSecond", color: "#ffdd57" },
      { label: "5xx", path: "rates.http5xxPerSecond", color: "#ff6b6b" },
    ],
  },
  {
    id: "errors",
    title: "Errors and refusals / s",
    unit: "count",
    notes: {
      http: "Errors (bad input, I/O or internal failures, timeouts), connections refused at admission and requests over the rate limit, per second.",
      echo: "Errors (bad input, I/O failures, timeouts) and connections refused at admission, per second.",
      custom:
        "Errors (bad frames, I/O or internal failures, timeouts), connections refused at admission and frames over the rate limit, per second.",
    },
    series: [
      { label: "errors", path: "rates.errorsPerSecond", color: "#ff6b6b" },
      { label: "refused", path: "rates.refusedPerSecond", color: "#ff9f43" },
      { label: "rate limited", path: "rates.rateLimitedPerSecond", color: "#b86bff" },
    ],
  },
  {
    id: "connections",
    title: "Open connections",
    unit: "count",
    notes: {
      http: "Client connections open, from the kernel's socket table, sampled about once a second.",
      echo: "Client connections open now, counted as each opens and closes.",
      custom: "Client connections open now, counted as each opens and closes.",
    },
    series: [{ label: "open", path: "counters.activeConnections", color: "#b86bff" }],
  },
  {
    id: "bytes",
    title: "Bytes / s",
    unit: "bytes",
    notes: {
      http: "Response bodies written, and requests read: a lower bound (request line, Host, 4 bytes per other header field, bodies).",
      echo: "Bytes read from and written to clients, per second.",
      custom: "Bytes of frames read from and written to clients, per second.",
    },
    series: [
      { label: "written", path: "rates.bytesWrittenPerSecond", color: "#4fd1c5" },
      { label: "read", path: "rates.bytesReadPerSecond", color: "#f6ad55" },
    ],
  },
  {
    id: "pool",
    title: "Worker pool tasks",
    unit: "count",
    notes: { custom: "Tasks waiting for a pool worker, and tasks running on one, now." },
    series: [
      { label: "queued", path: "gauges.pool.queued", color: "#ff9f43" },
      { label: "running", path: "gauges.pool.running", color: "#54a0ff" },
    ],
  },
  {
    id: "arena",
    title: "Arena in use",
    unit: "bytes",
    notes: { custom: "Bytes of the shared-memory arena holding payloads now, and the most held at once." },
    series: [
      { label: "in use", path: "gauges.arena.bytesInUse", color: "#1dd1a1" },
      { label: "peak", path: "gauges.arena.peakBytes", color: "#8395a7" },
    ],
  },
];

/** The panels a server speaking `protocol` shows, in page order. */
export function chartsFor(protocol: Protocol): ChartSpec[] {
  const charts: ChartSpec[] = [];
  for (const { notes, ...panel } of PANELS) {
    const note = notes[protocol];
    if (note !== undefined) charts.push({ ...panel, note });
  }
  return charts;
}
