// Load drivers of the end-to-end benchmark: wrk (HTTP) and `bun run load` (echo, HPS/1), each one bounded run pinned to the client core.
import { join } from "node:path";
import type { LoadReport } from "../../src/client/run.ts";
import { runTool } from "./process.ts";

const REPO = new URL("../../", import.meta.url).pathname;
/** A run may take this much longer than asked for (start-up, draining) before it is killed. */
const RUN_GRACE_MS = 15_000;

/** One measured run of one server. */
export interface Measurement {
  /** In the case's unit (req/s, GB/s, MB/s, round trips/s, frames/s). */
  value: number;
  /** Errors of any kind the driver saw (connect, read, timeouts, non-2xx / non-OK, mismatched bytes). */
  errors: number;
  /** CPU of the load generator over its run, percent of one core. */
  clientCpuPercent: number;
  /** Set by the runner: CPU of the server over the measured run, percent of one core. */
  serverCpuPercent: number;
  /** The exact command line that produced the number. */
  command: string;
  /** Anything odd: a short note ("3 non-2xx"), or "". */
  note: string;
}

export type Unit = "req/s" | "GB/s" | "MB/s" | "round trips/s" | "frames/s";

export interface RunLength {
  seconds: number;
  warmupSeconds: number;
  clientCore: number | null;
}

export interface WrkPlan {
  kind: "wrk";
  path: string;
  connections: number;
  /** Requests written back to back per connection (1 = no pipelining). */
  pipeline: number;
  unit: "req/s" | "GB/s";
  /** Smallest body a response must carry (the file size), to catch a server answering something else. */
  minBodyBytes: number;
}

export interface LoadPlan {
  kind: "load";
  scheme: "echo" | "hps" | "http";
  /** For http: the path requested. */
  path?: string;
  connections: number;
  pipeline: number;
  sizeBytes: number;
  opcode: "ping" | "hash" | null;
  unit: "round trips/s" | "MB/s" | "GB/s" | "frames/s" | "req/s";
}

export type DriverPlan = WrkPlan | LoadPlan;

/** Median of a list of measurements (0 for none). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length === 0 ? 0 : sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface WrkSummary {
  requests: number;
  bytes: number;
  durationMicros: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  statusErrors: number;
  timeouts: number;
}

export function wrkArgv(plan: WrkPlan, port: number, seconds: number): string[] {
  const script = join(REPO, "bench/e2e", plan.pipeline > 1 ? "wrk-pipeline.lua" : "wrk-report.lua");
  const argv = [
    "wrk",
    "-t1",
    `-c${plan.connections}`,
    `-d${seconds}s`,
    "--timeout",
    "10s",
    "-s",
    script,
    `http://127.0.0.1:${port}${plan.path}`,
  ];
  if (plan.pipeline > 1) argv.push("--", String(plan.pipeline));
  return argv;
}

export function loadArgv(plan: LoadPlan, port: number, length: RunLength): string[] {
  const argv = ["bun", join(REPO, "src/client/load.ts"), `${plan.scheme}://127.0.0.1:${port}${plan.path ?? ""}`];
  argv.push("-c", String(plan.connections), "-p", String(plan.pipeline), "-s", String(plan.sizeBytes));
  if (plan.opcode !== null) argv.push("--opcode", plan.opcode);
  argv.push("-d", `${length.seconds}s`, "-w", `${length.warmupSeconds}s`, "--json");
  return argv;
}

/** Runs the plan against 127.0.0.1:port and returns the measured value (server CPU is filled in by the caller). */
export async function drive(plan: DriverPlan, port: number, length: RunLength): Promise<Measurement> {
  return plan.kind === "wrk" ? driveWrk(plan, port, length) : driveLoad(plan, port, length);
}

async function driveWrk(plan: WrkPlan, port: number, length: RunLength): Promise<Measurement> {
  // wrk has no warm-up: a short unrecorded run first.
  if (length.warmupSeconds > 0) {
    await runTool(
      wrkArgv(plan, port, length.warmupSeconds),
      length.clientCore,
      length.warmupSeconds * 1000 + RUN_GRACE_MS,
    );
  }
  const argv = wrkArgv(plan, port, length.seconds);
  const run = await runTool(argv, length.clientCore, length.seconds * 1000 + RUN_GRACE_MS);
  const command = pinned(argv, length.clientCore);
  const line = run.stdout.split("\n").find((text) => text.startsWith("WRK_JSON "));
  if (run.exitCode !== 0 || line === undefined) {
    return failed(
      command,
      `wrk exited ${run.exitCode}: ${(run.stderr || run.stdout).trim().split("\n").slice(-3).join(" / ")}`,
    );
  }
  const summary = JSON.parse(line.slice("WRK_JSON ".length)) as WrkSummary;
  const seconds = summary.durationMicros / 1e6;
  const errors =
    summary.connectErrors + summary.readErrors + summary.writeErrors + summary.statusErrors + summary.timeouts;
  const notes: string[] = [];
  if (errors > 0) {
    notes.push(
      `wrk errors: connect ${summary.connectErrors}, read ${summary.readErrors}, write ${summary.writeErrors}, non-2xx ${summary.statusErrors}, timeout ${summary.timeouts}`,
    );
  }
  if (summary.requests > 0 && summary.bytes / summary.requests < plan.minBodyBytes) {
    notes.push(
      `only ${Math.round(summary.bytes / summary.requests)} bytes per response (expected ≥ ${plan.minBodyBytes})`,
    );
  }
  const value = plan.unit === "GB/s" ? summary.bytes / seconds / 1e9 : summary.requests / seconds;
  return {
    value,
    errors,
    clientCpuPercent: (100 * run.cpuSeconds) / run.wallSeconds,
    serverCpuPercent: 0,
    command,
    note: notes.join("; "),
  };
}

async function driveLoad(plan: LoadPlan, port: number, length: RunLength): Promise<Measurement> {
  const argv = loadArgv(plan, port, length);
  const run = await runTool(
    argv,
    length.clientCore,
    (length.seconds + length.warmupSeconds) * 1000 + RUN_GRACE_MS,
    REPO,
  );
  const command = pinned(argv, length.clientCore);
  let report: LoadReport;
  try {
    report = JSON.parse(run.stdout) as LoadReport;
  } catch {
    return failed(
      command,
      `load tester exited ${run.exitCode}: ${run.stderr.trim().split("\n").slice(-3).join(" / ")}`,
    );
  }
  const value =
    plan.unit === "MB/s"
      ? report.bytes.readPerSecond.mean / 1e6
      : plan.unit === "GB/s"
        ? report.bytes.readPerSecond.mean / 1e9
        : report.requests.perSecond.mean;
  const notes: string[] = [];
  if (report.errors.total > 0) {
    const e = report.errors;
    notes.push(
      `load errors: connect ${e.connect}, read ${e.read}, timeout ${e.timeout}, non-OK ${e.nonOk}, mismatch ${e.mismatch}`,
    );
  }
  if (report.fatal !== null) notes.push(report.fatal);
  return {
    value: report.fatal === null ? value : 0,
    errors: report.errors.total + (report.fatal === null ? 0 : 1),
    clientCpuPercent: (100 * run.cpuSeconds) / run.wallSeconds,
    serverCpuPercent: 0,
    command,
    note: notes.join("; "),
  };
}

function failed(command: string, note: string): Measurement {
  return { value: 0, errors: 1, clientCpuPercent: 0, serverCpuPercent: 0, command, note };
}

function pinned(argv: readonly string[], core: number | null): string {
  const shown = argv.map((arg) => arg.replace(REPO, ""));
  return (core === null ? shown : ["taskset", "-c", String(core), ...shown]).join(" ");
}
