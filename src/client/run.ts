// Runs a load test: one engine in-process or T Workers, a per-second sampler, and the merged report.
import type { Histogram } from "hdr-histogram-js";
import {
  LATE_SEND_MS,
  LoadEngine,
  planThreads,
  Tally,
  TALLY_SLOTS,
  type ThreadPlan,
  type ThreadResult,
} from "./engine.ts";
import { addEncodedHistogram, newLatencyHistogram, summarizeLatency, type LatencySummary } from "./latency.ts";
import type { WorkerDone, WorkerStart } from "./load-worker.ts";
import type { LoadOptions } from "./options.ts";

export const REPORT_SCHEMA = "hps-load/1";
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

export interface RateStats {
  min: number;
  mean: number;
  max: number;
}

/** The result of a run; `--json` prints exactly this (field names are stable; `schema` changes if they do). */
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
  targetRate: number | null;
  requests: {
    /** Measured requests written. */
    sent: number;
    /** Measured requests answered, whatever the outcome. */
    completed: number;
    /** Answered with success and the expected bytes. */
    ok: number;
    /** Per-second samples: min and max over whole seconds, mean = completed / durationSeconds. */
    perSecond: RateStats;
  };
  bytes: { read: number; written: number; readPerSecond: RateStats };
  /** Microseconds from the actual send time. */
  latency: LatencySummary;
  /** Open model: microseconds from the planned send time (coordinated-omission corrected); null when closed. */
  latencyCorrected: LatencySummary | null;
  errors: { connect: number; read: number; timeout: number; nonOk: number; mismatch: number; total: number };
  /** Responses by status: HTTP code ("200"), HPS/1 frame status name ("OK", "BUSY"); echo has none. */
  statuses: Record<string, number>;
  /** Open model: sends that left more than lateSendMs after their planned time. */
  lateSends: number;
  lateSendMs: number;
  warnings: string[];
  /** Why the run stopped early, if it did (e.g. nothing could connect). */
  fatal: string | null;
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
  }>;
  stop(): void;
}

function startInProcess(plan: ThreadPlan): ThreadHandle {
  const tallies = new Float64Array(TALLY_SLOTS);
  const done = new LoadEngine(plan, tallies).run().then((result: ThreadResult) => result);
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
  const requestSamples: number[] = [];
  const byteSamples: number[] = [];
  const startedMs = performance.now();
  let lastMs = startedMs;
  let lastCompleted = 0;
  let lastBytes = 0;
  let lastAll = 0;
  let wasRecording = false;
  const sampler = setInterval(() => {
    const nowMs = performance.now();
    const seconds = (nowMs - lastMs) / 1000;
    const completed = sumTally(handles, Tally.completed);
    const bytes = sumTally(handles, Tally.bytesRead);
    const all = sumTally(handles, Tally.responsesAll);
    const recording = handles.every((h) => h.tallies[Tally.recording] === 1);
    const running = handles.every((h) => h.tallies[Tally.done] === 0);
    // the first second after measuring began (warm-up end, worker start-up) is only a baseline: it is partial
    if (recording && wasRecording && running && seconds > 0) {
      requestSamples.push((completed - lastCompleted) / seconds);
      byteSamples.push((bytes - lastBytes) / seconds);
    }
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
    wasRecording = recording;
    lastMs = nowMs;
    lastCompleted = completed;
    lastBytes = bytes;
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
  return buildReport(options, handles, latency, corrected, statusCounts, requestSamples, byteSamples, fatals);
}

function rateStats(total: number, seconds: number, samples: readonly number[]): RateStats {
  const mean = seconds > 0 ? total / seconds : 0;
  if (samples.length === 0) return { min: round(mean), mean: round(mean), max: round(mean) };
  return { min: round(Math.min(mean, ...samples)), mean: round(mean), max: round(Math.max(mean, ...samples)) };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function buildReport(
  options: LoadOptions,
  handles: readonly ThreadHandle[],
  latency: Histogram,
  corrected: Histogram | null,
  statusCounts: Float64Array,
  requestSamples: readonly number[],
  byteSamples: readonly number[],
  fatals: string[],
): LoadReport {
  const tally = (slot: number): number => sumTally(handles, slot);
  let measuredMs = 0;
  for (const handle of handles) measuredMs = Math.max(measuredMs, handle.tallies[Tally.measuredMs]!);
  const seconds = measuredMs / 1000;
  const statuses: Record<string, number> = {};
  for (let code = 0; code < statusCounts.length; code++) {
    const count = statusCounts[code]!;
    if (count === 0) continue;
    if (options.target.protocol === "hps") statuses[FRAME_STATUS_NAMES[code] ?? String(code)] = count;
    else if (options.target.protocol === "http") statuses[String(code)] = count;
  }
  const errors = {
    connect: tally(Tally.connectErrors),
    read: tally(Tally.readErrors),
    timeout: tally(Tally.timeouts),
    nonOk: tally(Tally.nonOk),
    mismatch: tally(Tally.mismatch),
    total: 0,
  };
  errors.total = errors.connect + errors.read + errors.timeout + errors.nonOk + errors.mismatch;
  const sent = tally(Tally.sent);
  const lateSends = tally(Tally.lateSends);
  const warnings: string[] = [];
  if (options.ratePerSecond !== null && seconds > 0) {
    const sentRate = sent / seconds;
    const planned = tally(Tally.planned);
    if (sentRate < RATE_SHORTFALL * options.ratePerSecond || sent < RATE_SHORTFALL * planned) {
      warnings.push(
        `target rate not reached: ${Math.round(sentRate)} of ${options.ratePerSecond} req/s sent (${planned - sent} planned requests never sent); ` +
          "add connections (-c) or pipeline (-p), or the server is saturated",
      );
    }
    if (lateSends > LATE_SHARE * sent) {
      warnings.push(
        `${lateSends} of ${sent} sends left more than ${LATE_SEND_MS} ms after their planned time (latency is measured from the plan)`,
      );
    }
  }
  if (errors.mismatch > 0) warnings.push(`${errors.mismatch} responses did not match their requests`);
  for (const fatal of fatals) warnings.push(fatal);
  const completed = tally(Tally.completed);
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
    durationSeconds: round(seconds * 100) / 100,
    targetRate: options.ratePerSecond,
    requests: { sent, completed, ok: tally(Tally.ok), perSecond: rateStats(completed, seconds, requestSamples) },
    bytes: {
      read: bytesRead,
      written: tally(Tally.bytesWritten),
      readPerSecond: rateStats(bytesRead, seconds, byteSamples),
    },
    latency: summarizeLatency(latency),
    latencyCorrected: corrected === null ? null : summarizeLatency(corrected),
    errors,
    statuses,
    lateSends,
    lateSendMs: LATE_SEND_MS,
    warnings,
    fatal: fatals.length > 0 ? fatals.join("; ") : null,
  };
}
