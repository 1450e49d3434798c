// Load drivers of the end-to-end benchmark: wrk (HTTP, HTTPS), h2load (HTTP/2), openssl s_time (TLS handshakes), Bun's
// fetch (HTTP/3 against HTTP/2) and `bun run load` (echo, HPS/1), each one bounded run pinned to the client core.
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

export type Unit = "req/s" | "GB/s" | "MB/s" | "round trips/s" | "frames/s" | "handshakes/s";

export interface RunLength {
  seconds: number;
  warmupSeconds: number;
  clientCore: number | null;
}

export interface WrkPlan {
  kind: "wrk";
  /** https: wrk speaks TLS (keeping its connections, so resuming nothing after the first handshake). */
  scheme?: "http" | "https";
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

/** h2load over TLS (ALPN h2): `connections` × `streams` concurrent requests. */
export interface H2loadPlan {
  kind: "h2load";
  path: string;
  connections: number;
  streams: number;
  unit: "req/s";
  minBodyBytes: number;
}

/** Full TLS handshakes with no resumption: `processes` openssl s_time -new at once, each one connection at a time. */
export interface HandshakePlan {
  kind: "handshakes";
  processes: number;
  unit: "handshakes/s";
}

/** Bun's fetch over HTTP/3 or HTTP/2 (bench/e2e/fetch-load.ts), `inFlight` requests outstanding. */
export interface FetchPlan {
  kind: "fetch";
  protocol: "http2" | "http3";
  path: string;
  inFlight: number;
  unit: "req/s";
  minBodyBytes: number;
}

export type DriverPlan = WrkPlan | LoadPlan | H2loadPlan | HandshakePlan | FetchPlan;

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
    `${plan.scheme ?? "http"}://127.0.0.1:${port}${plan.path}`,
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
  switch (plan.kind) {
    case "wrk":
      return driveWrk(plan, port, length);
    case "load":
      return driveLoad(plan, port, length);
    case "h2load":
      return driveH2load(plan, port, length);
    case "handshakes":
      return driveHandshakes(plan, port, length);
    case "fetch":
      return driveFetch(plan, port, length);
  }
}

export function h2loadArgv(plan: H2loadPlan, port: number, length: RunLength): string[] {
  return [
    "h2load",
    "-t1",
    `-c${plan.connections}`,
    `-m${plan.streams}`,
    "-D",
    String(length.seconds),
    `--warm-up-time=${Math.max(length.warmupSeconds, 0.1)}`,
    `https://127.0.0.1:${port}${plan.path}`,
  ];
}

async function driveH2load(plan: H2loadPlan, port: number, length: RunLength): Promise<Measurement> {
  const argv = h2loadArgv(plan, port, length);
  const run = await runTool(argv, length.clientCore, (length.seconds + length.warmupSeconds) * 1000 + RUN_GRACE_MS);
  const command = pinned(argv, length.clientCore);
  // "finished in 5.00s, 123456.00 req/s, 130.12MB/s" and "requests: N total, N started, N done, S succeeded, F failed, E errored, T timeout"
  const finished = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(run.stdout);
  const requests =
    /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      run.stdout,
    );
  // "traffic: 1.07MB (1124000) total, 21.09KB (21600) headers (space savings 90.18%), 1.02MB (1024000) data"
  const traffic = /traffic: [^(]*\((\d+)\) total, [^(]*\((\d+)\) headers .*?, [^(]*\((\d+)\) data/.exec(run.stdout);
  if (run.exitCode !== 0 || finished === null || requests === null) {
    return failed(
      command,
      `h2load exited ${run.exitCode}: ${(run.stderr || run.stdout).trim().split("\n").slice(-3).join(" / ")}`,
    );
  }
  const succeeded = Number(requests[3]);
  const errors = Number(requests[4]) + Number(requests[5]) + Number(requests[6]);
  const notes: string[] = [];
  if (errors > 0) notes.push(`h2load: ${requests[4]} failed, ${requests[5]} errored, ${requests[6]} timeout`);
  const dataBytes = traffic?.[3] === undefined ? null : Number(traffic[3]);
  if (dataBytes !== null && succeeded > 0 && dataBytes / succeeded < plan.minBodyBytes) {
    notes.push(`only ${Math.round(dataBytes / succeeded)} bytes per response (expected ≥ ${plan.minBodyBytes})`);
  }
  return {
    // h2load measures the rate over the main duration (-D), after the warm-up; "finished in" includes the warm-up.
    value: Number(finished[2]),
    errors,
    clientCpuPercent: (100 * run.cpuSeconds) / run.wallSeconds,
    serverCpuPercent: 0,
    command,
    note: notes.join("; "),
  };
}

export function sTimeArgv(port: number, seconds: number): string[] {
  return [
    "openssl",
    "s_time",
    "-new",
    "-connect",
    `127.0.0.1:${port}`,
    "-time",
    String(Math.max(1, Math.round(seconds))),
  ];
}

async function driveHandshakes(plan: HandshakePlan, port: number, length: RunLength): Promise<Measurement> {
  if (length.warmupSeconds > 0) {
    await Promise.all(
      Array.from({ length: plan.processes }, () =>
        runTool(sTimeArgv(port, length.warmupSeconds), length.clientCore, length.warmupSeconds * 1000 + RUN_GRACE_MS),
      ),
    );
  }
  const argv = sTimeArgv(port, length.seconds);
  const runs = await Promise.all(
    Array.from({ length: plan.processes }, () =>
      runTool(argv, length.clientCore, length.seconds * 1000 + RUN_GRACE_MS),
    ),
  );
  const command = `${plan.processes} × ${pinned(argv, length.clientCore)}`;
  let rate = 0;
  let cpuSeconds = 0;
  let wallSeconds = 0;
  for (const run of runs) {
    // "1234 connections in 5.01 real seconds, 0 bytes read per connection"
    const line = /(\d+) connections in ([\d.]+) real seconds/.exec(run.stdout);
    if (run.exitCode !== 0 || line === null) {
      return failed(
        command,
        `s_time exited ${run.exitCode}: ${(run.stderr || run.stdout).trim().split("\n").slice(-2).join(" / ")}`,
      );
    }
    rate += Number(line[1]) / Number(line[2]);
    cpuSeconds += run.cpuSeconds;
    wallSeconds = Math.max(wallSeconds, run.wallSeconds);
  }
  return {
    value: rate,
    errors: 0,
    clientCpuPercent: (100 * cpuSeconds) / wallSeconds,
    serverCpuPercent: 0,
    command,
    note: "",
  };
}

export function fetchArgv(plan: FetchPlan, port: number, length: RunLength): string[] {
  return [
    "bun",
    join(REPO, "bench/e2e/fetch-load.ts"),
    `https://127.0.0.1:${port}${plan.path}`,
    "--protocol",
    plan.protocol,
    "--in-flight",
    String(plan.inFlight),
    "--seconds",
    String(length.seconds),
    "--warmup",
    String(length.warmupSeconds),
  ];
}

async function driveFetch(plan: FetchPlan, port: number, length: RunLength): Promise<Measurement> {
  const argv = fetchArgv(plan, port, length);
  const run = await runTool(
    argv,
    length.clientCore,
    (length.seconds + length.warmupSeconds) * 1000 + RUN_GRACE_MS,
    REPO,
  );
  const command = pinned(argv, length.clientCore);
  let report: { requests: number; errors: number; seconds: number; bodyBytes: number };
  try {
    report = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "");
  } catch {
    return failed(command, `fetch-load exited ${run.exitCode}: ${run.stderr.trim().split("\n").slice(-3).join(" / ")}`);
  }
  const notes: string[] = [];
  if (report.errors > 0) notes.push(`${report.errors} failed requests`);
  if (report.requests > 0 && report.bodyBytes / report.requests < plan.minBodyBytes) {
    notes.push(`only ${Math.round(report.bodyBytes / report.requests)} bytes per response`);
  }
  return {
    value: report.requests / report.seconds,
    errors: report.errors,
    clientCpuPercent: (100 * run.cpuSeconds) / run.wallSeconds,
    serverCpuPercent: 0,
    command,
    note: notes.join("; "),
  };
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
