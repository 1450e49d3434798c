// Runs a load test: one engine in-process or T Workers, a per-second sampler, and the merged report.
import type { Histogram } from "hdr-histogram-js";
import { FetchEngine } from "./fetch-engine.ts";
import { LoadEngine } from "./engine.ts";
import type { ThreadResult } from "./thread-result.ts";
import { addEncodedHistogram, newLatencyHistogram, summarizeLatency, type LatencySummary } from "./latency.ts";
import type { WorkerDone, WorkerStart } from "./load-worker.ts";
import type { LoadOptions } from "./options.ts";
import { planThreads, type ThreadPlan } from "./plan.ts";
import { mergeSeconds, rateStats, type RateStats } from "./per-second.ts";
import { LATE_SEND_MS, Tally, TALLY_SLOTS } from "./tally.ts";

/** Names the JSON shape below; it changes whenever a field is renamed or changes meaning. */
export const REPORT_SCHEMA = "hps-load/2";
/** The open model warns when fewer than this share of the target rate went out. */
const RATE_SHORTFALL = 0.9;
/** ... or when more than this share of the sends were late. */
const LATE_SHARE = 0.01;
const SAMPLE_INTERVAL_MS = 1000;

const FRAME_STATUS_NAMES = [
  "OK",
  "UNKNOWN_OPCODE",
  "TOO_LARGE",
  "BAD_FRAME",
  "BUSY",
  "RATE_LIMITED",
  "INTERNAL",
  "TIMEOUT",
];

/**
 * The result of a run; `--json` prints exactly this. Units are in the names (Micros, Seconds, PerSecond, Percent,
 * Ms); counts are requests unless said otherwise. The shape is documented with the load tester in the docs.
 */
export interface LoadReport {
  schema: typeof REPORT_SCHEMA;
  target: string;
  protocol: "http" | "echo" | "hps";
  model: "closed" | "open";
  connections: number;
  pipeline: number;
  threads: number;
  warmupSeconds: number;
  /** Measured seconds: the duration, or until the last of -n requests was answered. */
  durationSeconds: number;
  /** Open model: requests/s asked for; null in the closed model. */
  targetRequestsPerSecond: number | null;
  requests: {
    /** Measured requests written. */
    sent: number;
    /** Measured requests answered, whatever the outcome. */
    completed: number;
    /** Answered with success and the expected bytes. */
    ok: number;
    /** Completed requests per second: min, max and stdev over the whole seconds, mean = completed / duration. */
    perSecond: RateStats;
  };
  /** Bytes read and written (measured), and bytes read per second like requests.perSecond. */
  bytes: { read: number; written: number; readPerSecond: RateStats };
  /** From the actual send time. */
  latency: LatencySummary;
  /** Open model: from the planned send time (coordinated-omission corrected); null when closed. */
  latencyCorrected: LatencySummary | null;
  errors: {
    /** Failed connection attempts. */
    connect: number;
    /** Requests lost when their connection closed or reset. */
    read: number;
    timeout: number;
    /** Answered with HTTP non-2xx or an HPS/1 status other than OK. */
    nonOk: number;
    /** Answers that did not match their request, or bytes that answered none. */
    mismatch: number;
    total: number;
    /** total / (completed + read + timeout + connect), in percent. */
    ratePercent: number;
  };
  /** --max-error-rate: the run fails when errors.ratePercent is above it. */
  maxErrorRatePercent: number;
  /** Responses by status: HTTP code ("200"), HPS/1 frame status name ("OK", "BUSY"); echo has none. */
  statuses: Record<string, number>;
  /** Open model: sends that left more than lateSendMs after their planned time. */
  lateSends: number;
  lateSendMs: number;
  warnings: string[];
  /** Why the run stopped early, if it did (e.g. nothing could connect). */
  fatal: string | null;
  /** Why the run failed (exit code 1): it stopped early, or the error rate is above --max-error-rate. */
  failure: string | null;
}

export interface ProgressSample {
  elapsedSeconds: number;
  requestsPerSecond: number;
  inFlight: number;
  errors: number;
  warmingUp: boolean;
}

export interface RunHooks {
  /** Called once a second while the run lasts. */
  onProgress?: (sample: ProgressSample) => void;
}

interface ThreadHandle {
  tallies: Float64Array;
  done: Promise<{
    statuses: ArrayLike<number>;
    latency: Histogram | string;
    corrected: Histogram | string | null;
    fatal: string | null;
    completedBySecond: number[];
    bytesReadBySecond: number[];
  }>;
  stop(): void;
}

function startInProcess(plan: ThreadPlan): ThreadHandle {
  const tallies = new Float64Array(TALLY_SLOTS);
  const engine = plan.options.http2 ? new FetchEngine(plan, tallies) : new LoadEngine(plan, tallies);
  const done = engine.run().then((result: ThreadResult) => result);
  return { tallies, done, stop() {} };
}

function startWorker(plan: ThreadPlan): ThreadHandle {
  const buffer = new SharedArrayBuffer(TALLY_SLOTS * 8);
  const worker = new Worker(new URL("./load-worker.ts", import.meta.url).href);
  const done = new Promise<WorkerDone>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<WorkerDone>) => resolve(event.data);
    worker.onerror = (event) => reject(new Error(`load worker ${plan.threadIndex} failed: ${event.message}`));
  });
  const start: WorkerStart = { plan, tallies: buffer };
  worker.postMessage(start);
  return { tallies: new Float64Array(buffer), done, stop: () => worker.terminate() };
}

function sumTally(handles: readonly ThreadHandle[], slot: number): number {
  let total = 0;
  for (const handle of handles) total += handle.tallies[slot]!;
  return total;
}

/** Runs the load described by `options` to the end and returns the merged report. */
export async function runLoad(options: LoadOptions, hooks: RunHooks = {}): Promise<LoadReport> {
  const plans = planThreads(options);
  const handles = plans.map((plan) => (options.threads === 1 ? startInProcess(plan) : startWorker(plan)));
  const startedMs = performance.now();
  let lastMs = startedMs;
  let lastAll = 0;
  // progress only: the report's per-second figures are counted by the threads themselves, aligned to measuring
  const sampler = setInterval(() => {
    const nowMs = performance.now();
    const seconds = (nowMs - lastMs) / 1000;
    const all = sumTally(handles, Tally.responsesAll);
    const recording = handles.every((h) => h.tallies[Tally.recording] === 1);
    hooks.onProgress?.({
      elapsedSeconds: (nowMs - startedMs) / 1000,
      requestsPerSecond: seconds > 0 ? (all - lastAll) / seconds : 0,
      inFlight: sumTally(handles, Tally.inFlight),
      errors:
        sumTally(handles, Tally.connectErrors) +
        sumTally(handles, Tally.readErrors) +
        sumTally(handles, Tally.timeouts) +
        sumTally(handles, Tally.nonOk) +
        sumTally(handles, Tally.mismatch),
      warmingUp: !recording,
    });
    lastMs = nowMs;
    lastAll = all;
  }, SAMPLE_INTERVAL_MS);
  let results;
  try {
    results = await Promise.all(handles.map((h) => h.done));
  } finally {
    clearInterval(sampler);
    for (const handle of handles) handle.stop();
  }

  const latency = newLatencyHistogram();
  const corrected = options.ratePerSecond === null ? null : newLatencyHistogram();
  const statusCounts = new Float64Array(results[0]!.statuses.length);
  const fatals: string[] = [];
  for (const result of results) {
    if (typeof result.latency === "string") addEncodedHistogram(latency, result.latency);
    else latency.add(result.latency);
    if (corrected !== null && result.corrected !== null) {
      if (typeof result.corrected === "string") addEncodedHistogram(corrected, result.corrected);
      else corrected.add(result.corrected);
    }
    for (let i = 0; i < statusCounts.length; i++) statusCounts[i]! += result.statuses[i]!;
    if (result.fatal !== null && !fatals.includes(result.fatal)) fatals.push(result.fatal);
  }
  return buildReport(options, handles, { latency, corrected, statusCounts, fatals, results });
}

/** What the threads reported, merged (histograms, statuses) or side by side (per-second counts). */
interface Merged {
  latency: Histogram;
  corrected: Histogram | null;
  statusCounts: Float64Array;
  fatals: string[];
  results: readonly { completedBySecond: number[]; bytesReadBySecond: number[] }[];
}

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function buildReport(options: LoadOptions, handles: readonly ThreadHandle[], merged: Merged): LoadReport {
  const tally = (slot: number): number => sumTally(handles, slot);
  let measuredMs = 0;
  let wholeSeconds = Infinity;
  for (const handle of handles) {
    measuredMs = Math.max(measuredMs, handle.tallies[Tally.measuredMs]!);
    // only seconds every thread measured in full: a thread's last, partial second would read as a slow one
    wholeSeconds = Math.min(wholeSeconds, Math.floor(handle.tallies[Tally.measuredMs]! / 1000));
  }
  const seconds = measuredMs / 1000;
  const completedBySecond = mergeSeconds(
    merged.results.map((r) => r.completedBySecond),
    wholeSeconds,
  );
  const bytesBySecond = mergeSeconds(
    merged.results.map((r) => r.bytesReadBySecond),
    wholeSeconds,
  );
  const errors = countErrors(tally);
  const sent = tally(Tally.sent);
  const lateSends = tally(Tally.lateSends);
  const warnings = options.ratePerSecond === null ? [] : openModelWarnings(options.ratePerSecond, tally, seconds);
  if (errors.mismatch > 0) warnings.push(`${errors.mismatch} responses did not match their requests`);
  for (const fatal of merged.fatals) warnings.push(fatal);
  const fatal = merged.fatals.length > 0 ? merged.fatals.join("; ") : null;
  const completed = tally(Tally.completed);
  // Requests still unanswered when a closed-model run ends are neither answers nor errors: a server that accepts
  // connections and never answers would otherwise pass a run shorter than --timeout with no error at all.
  const noAnswer =
    fatal === null && sent > 0 && completed === 0
      ? `no answer: ${sent} requests sent, none answered within the ${round(seconds, 2)} s measured (the connections ` +
        `opened; --timeout ${options.timeoutMs / 1000} s is longer than the run)`
      : null;
  if (noAnswer !== null) warnings.push(noAnswer);
  const bytesRead = tally(Tally.bytesRead);
  return {
    schema: REPORT_SCHEMA,
    target: options.target.url,
    protocol: options.target.protocol,
    model: options.ratePerSecond === null ? "closed" : "open",
    connections: options.connections,
    pipeline: options.pipeline,
    threads: options.threads,
    warmupSeconds: options.warmupMs / 1000,
    durationSeconds: round(seconds, 3),
    targetRequestsPerSecond: options.ratePerSecond,
    requests: { sent, completed, ok: tally(Tally.ok), perSecond: rateStats(completed, seconds, completedBySecond) },
    bytes: {
      read: bytesRead,
      written: tally(Tally.bytesWritten),
      readPerSecond: rateStats(bytesRead, seconds, bytesBySecond),
    },
    latency: summarizeLatency(merged.latency),
    latencyCorrected: merged.corrected === null ? null : summarizeLatency(merged.corrected),
    errors,
    maxErrorRatePercent: options.maxErrorRatePercent,
    statuses: statusNames(options, merged.statusCounts),
    lateSends,
    lateSendMs: LATE_SEND_MS,
    warnings,
    fatal,
    failure: fatal !== null ? `the run stopped early: ${fatal}` : (noAnswer ?? errorRateFailure(options, errors)),
  };
}

function statusNames(options: LoadOptions, statusCounts: Float64Array): Record<string, number> {
  const statuses: Record<string, number> = {};
  for (let code = 0; code < statusCounts.length; code++) {
    const count = statusCounts[code]!;
    if (count === 0) continue;
    if (options.target.protocol === "hps") statuses[FRAME_STATUS_NAMES[code] ?? String(code)] = count;
    else if (options.target.protocol === "http") statuses[String(code)] = count;
  }
  return statuses;
}

function countErrors(tally: (slot: number) => number): LoadReport["errors"] {
  const connect = tally(Tally.connectErrors);
  const read = tally(Tally.readErrors);
  const timeout = tally(Tally.timeouts);
  const nonOk = tally(Tally.nonOk);
  const mismatch = tally(Tally.mismatch);
  const total = connect + read + timeout + nonOk + mismatch;
  // every attempt that could fail: answers (nonOk and most mismatches are among them), lost requests, connects
  const attempts = tally(Tally.completed) + read + timeout + connect;
  const ratePercent = total === 0 ? 0 : attempts === 0 ? 100 : Math.min(100, (100 * total) / attempts);
  return { connect, read, timeout, nonOk, mismatch, total, ratePercent: round(ratePercent, 3) };
}

/** Why the error rate fails the run, or null when it does not. */
function errorRateFailure(options: LoadOptions, errors: LoadReport["errors"]): string | null {
  if (errors.total === 0 || errors.ratePercent <= options.maxErrorRatePercent) return null;
  const nonOk = options.target.protocol === "http" ? "non-2xx" : "non-OK";
  const kinds = (
    [
      ["connect", errors.connect],
      ["read", errors.read],
      ["timeout", errors.timeout],
      [nonOk, errors.nonOk],
      ["mismatch", errors.mismatch],
    ] as const
  )
    .filter(([, count]) => count > 0)
    .map(([name, count]) => `${name} ${count}`)
    .join(", ");
  return (
    `${errors.ratePercent} % of the attempts failed (${kinds}), more than --max-error-rate ` +
    `${options.maxErrorRatePercent} % allows`
  );
}

function openModelWarnings(ratePerSecond: number, tally: (slot: number) => number, seconds: number): string[] {
  const warnings: string[] = [];
  if (seconds <= 0) return warnings;
  const sent = tally(Tally.sent);
  const sentRate = sent / seconds;
  const planned = tally(Tally.planned);
  if (sentRate < RATE_SHORTFALL * ratePerSecond || sent < RATE_SHORTFALL * planned) {
    warnings.push(
      `target rate not reached: ${Math.round(sentRate)} of ${ratePerSecond} req/s sent ` +
        `(${planned - sent} planned requests never sent); add connections (-c) or pipeline (-p), ` +
        "or the server is saturated",
    );
  }
  const lateSends = tally(Tally.lateSends);
  if (lateSends > LATE_SHARE * sent) {
    warnings.push(
      `${lateSends} of ${sent} sends left more than ${LATE_SEND_MS} ms after their planned time ` +
        "(latency is measured from the plan)",
    );
  }
  return warnings;
}
