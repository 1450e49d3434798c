// Human output of the load tester: the progress line and the final table (in the spirit of autocannon).
import type { LatencySummary } from "./latency.ts";
import type { LoadOptions } from "./options.ts";
import type { RateStats } from "./per-second.ts";
import type { LoadReport, ProgressSample } from "./run.ts";

/** "850 µs", "12.34 ms", "1.50 s". */
export function formatMicros(micros: number): string {
  if (micros < 1000) return `${Math.round(micros)} µs`;
  if (micros < 1_000_000) return `${(micros / 1000).toFixed(2)} ms`;
  return `${(micros / 1_000_000).toFixed(2)} s`;
}

/** "1.2 kB", "3.40 MB" (decimal units, as autocannon and wrk print). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

export function formatProgress(sample: ProgressSample): string {
  const phase = sample.warmingUp ? " (warm-up)" : "";
  return `${sample.elapsedSeconds.toFixed(0).padStart(4)}s  ${formatCount(sample.requestsPerSecond).padStart(10)} req/s  in flight ${formatCount(sample.inFlight)}  errors ${formatCount(sample.errors)}${phase}`;
}

/** The line printed before the run starts. */
export function formatHeader(options: LoadOptions): string {
  const length =
    options.totalRequests !== null
      ? `${formatCount(options.totalRequests)} requests`
      : `${options.durationMs! / 1000}s`;
  const model =
    options.ratePerSecond === null ? "closed model" : `open model at ${formatCount(options.ratePerSecond)} req/s`;
  const warmup = options.warmupMs > 0 ? ` after ${options.warmupMs / 1000}s warm-up` : "";
  const threads = `${options.threads} thread${options.threads === 1 ? "" : "s"}`;
  return `Running ${length} @ ${options.target.url}${warmup}\n${options.connections} connections, pipeline ${options.pipeline}, ${threads}, ${model}`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => row[i]!.length)));
  const line = (left: string, middle: string, right: string): string =>
    left + widths.map((w) => "─".repeat(w + 2)).join(middle) + right;
  const render = (cells: readonly string[]): string =>
    `│${cells.map((cell, i) => ` ${i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)} `).join("│")}│`;
  return [line("┌", "┬", "┐"), render(header), line("├", "┼", "┤"), ...rows.map(render), line("└", "┴", "┘")].join(
    "\n",
  );
}

function latencyRow(name: string, summary: LatencySummary): string[] {
  // No answer, no latency: a dash, not a 0 µs that reads as a fast server.
  if (summary.count === 0) return [name, ...Array<string>(7).fill("–")];
  return [
    name,
    ...[
      summary.p50Micros,
      summary.p90Micros,
      summary.p99Micros,
      summary.p999Micros,
      summary.meanMicros,
      summary.stdevMicros,
      summary.maxMicros,
    ].map(formatMicros),
  ];
}

function rateRow(name: string, stats: RateStats, format: (value: number) => string): string[] {
  return [name, format(stats.min), format(stats.mean), format(stats.stdev), format(stats.max)];
}

/** Groups status codes into classes: "2xx 1,000  4xx 3" for HTTP, names for HPS/1. */
function formatStatuses(report: LoadReport): string {
  if (report.protocol === "http") {
    const classes = new Map<string, number>();
    for (const [code, count] of Object.entries(report.statuses)) {
      const key = `${code[0]}xx`;
      classes.set(key, (classes.get(key) ?? 0) + count);
    }
    return [...classes.entries()]
      .sort()
      .map(([name, count]) => `${name} ${formatCount(count)}`)
      .join("  ");
  }
  return Object.entries(report.statuses)
    .map(([name, count]) => `${name} ${formatCount(count)}`)
    .join("  ");
}

function wholeSecondsNote(seconds: number): string {
  if (seconds === 0) return "(Min, Stdev and Max are per whole second; this run was shorter than one)";
  return `(Min, Stdev and Max over ${seconds} whole second${seconds === 1 ? "" : "s"}; Mean over the whole run)`;
}

/** The final table and summary lines. */
export function formatReport(report: LoadReport): string {
  const latencyRows = [
    latencyRow(report.latencyCorrected === null ? "Latency" : "Latency (from send)", report.latency),
  ];
  if (report.latencyCorrected !== null) latencyRows.unshift(latencyRow("Latency (from plan)", report.latencyCorrected));
  const parts = [
    table(["Stat", "p50", "p90", "p99", "p99.9", "Avg", "Stdev", "Max"], latencyRows),
    table(
      ["Stat", "Min", "Mean", "Stdev", "Max"],
      [
        rateRow("Req/Sec", report.requests.perSecond, formatCount),
        rateRow("Bytes/Sec", report.bytes.readPerSecond, formatBytes),
      ],
    ),
    wholeSecondsNote(report.requests.perSecond.seconds),
    "",
    `${formatCount(report.requests.completed)} requests in ${report.durationSeconds.toFixed(2)}s, ` +
      `${formatBytes(report.bytes.read)} read, ${formatBytes(report.bytes.written)} written`,
  ];
  const statuses = formatStatuses(report);
  if (statuses) parts.push(`Responses: ${statuses}`);
  const e = report.errors;
  parts.push(
    `Errors: ${formatCount(e.total)} (connect ${formatCount(e.connect)}, read ${formatCount(e.read)}, timeout ${formatCount(e.timeout)}, ` +
      `${report.protocol === "http" ? "non-2xx" : "non-ok"} ${formatCount(e.nonOk)}, mismatch ${formatCount(e.mismatch)})`,
  );
  if (e.total > 0) {
    parts.push(`Error rate: ${e.ratePercent} % of attempts (--max-error-rate ${report.maxErrorRatePercent} %)`);
  }
  if (report.targetRequestsPerSecond !== null) {
    parts.push(
      `Target ${formatCount(report.targetRequestsPerSecond)} req/s; ${formatCount(report.lateSends)} sends later than ${report.lateSendMs} ms`,
    );
  }
  for (const warning of report.warnings) parts.push(`warning: ${warning}`);
  return parts.join("\n");
}
