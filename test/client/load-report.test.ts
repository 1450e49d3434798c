// Load tester CLI and output: flag parsing, the stable --json schema, the table, progress, histogram merging.
import { describe, expect, test } from "bun:test";
import {
  addEncodedHistogram,
  encodeHistogram,
  newLatencyHistogram,
  recordMillis,
  summarizeLatency,
} from "../../src/client/latency.ts";
import { LoadUsageError, parseDurationMs, parseLoadArgs } from "../../src/client/options.ts";
import { formatReport } from "../../src/client/report.ts";
import { runLoad } from "../../src/client/run.ts";
import { startHttpServer } from "../helpers/load-servers.ts";

const CLI = new URL("../../src/client/load.ts", import.meta.url).pathname;

async function runCli(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(["bun", CLI, ...args], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { exitCode, stdout, stderr };
}

/** The shape of a JSON value: object keys with the shapes of their values, "number", "string", "null"... */
function shape(value: unknown): unknown {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([key, inner]) => [key, shape(inner)]),
    );
  }
  return typeof value;
}

const LATENCY_SHAPE = {
  p50: "number",
  p90: "number",
  p99: "number",
  p99_9: "number",
  max: "number",
  min: "number",
  mean: "number",
  stdev: "number",
  count: "number",
};
const RATE_SHAPE = { min: "number", mean: "number", max: "number" };

describe("command line", () => {
  test("defaults: 10 connections, pipeline 1, 10 s, closed model", () => {
    const options = parseLoadArgs(["http://localhost:8080/x"])!;
    expect(options).toMatchObject({
      connections: 10,
      pipeline: 1,
      durationMs: 10_000,
      totalRequests: null,
      ratePerSecond: null,
      threads: 1,
    });
    expect(options.target).toEqual({
      protocol: "http",
      host: "localhost",
      port: 8080,
      path: "/x",
      url: "http://localhost:8080/x",
    });
  });

  test("-n alone has no duration; flags take = too", () => {
    const options = parseLoadArgs(["-n", "5", "--rate=100", "--opcode", "hash", "hps://[::1]:9000"])!;
    expect(options.durationMs).toBeNull();
    expect(options.totalRequests).toBe(5);
    expect(options.ratePerSecond).toBe(100);
    expect(options.opcode).toBe(2);
    expect(options.target.host).toBe("::1");
  });

  test("durations", () => {
    expect(parseDurationMs("250ms", "-d")).toBe(250);
    expect(parseDurationMs("1.5", "-d")).toBe(1500);
    expect(parseDurationMs("2m", "-d")).toBe(120_000);
    expect(() => parseDurationMs("soon", "-d")).toThrow(LoadUsageError);
  });

  test.each([
    [["-c", "0", "http://h:1/"], "-c"],
    [["--bogus", "http://h:1/"], "unknown flag --bogus"],
    [["-t", "4", "-c", "2", "http://h:1/"], "--threads 4"],
    [["echo://h"], "needs a port"],
    [["ftp://h:1"], "target"],
    [[], "missing target"],
    [["--opcode", "dance", "hps://h:1"], "--opcode"],
  ])("rejects %p naming the problem", (args, message) => {
    expect(() => parseLoadArgs(args)).toThrow(message);
  });

  test("--help prints usage and exits 0; a bad flag exits 2 with the reason on stderr", async () => {
    const help = await runCli(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("Usage: bun run load");
    const bad = await runCli(["-c", "x", "http://127.0.0.1:1/"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("-c: expected an integer");
  });
});

describe("output", () => {
  test("--json prints the stable schema", async () => {
    using server = startHttpServer();
    const { exitCode, stdout } = await runCli(["--json", "-c", "2", "-n", "50", `http://127.0.0.1:${server.port}/`]);
    expect(exitCode).toBe(0);
    const report = JSON.parse(stdout);
    expect(shape(report)).toEqual({
      schema: "string",
      target: "string",
      protocol: "string",
      model: "string",
      connections: "number",
      pipeline: "number",
      threads: "number",
      warmupSeconds: "number",
      durationSeconds: "number",
      targetRate: "null",
      requests: { sent: "number", completed: "number", ok: "number", perSecond: RATE_SHAPE },
      bytes: { read: "number", written: "number", readPerSecond: RATE_SHAPE },
      latency: LATENCY_SHAPE,
      latencyCorrected: "null",
      errors: {
        connect: "number",
        read: "number",
        timeout: "number",
        nonOk: "number",
        mismatch: "number",
        total: "number",
      },
      statuses: { "200": "number" },
      lateSends: "number",
      lateSendMs: "number",
      warnings: "array",
      fatal: "null",
    });
    expect(report.schema).toBe("hps-load/1");
    expect(report.requests.completed).toBe(50);
  });

  test("open-model JSON carries the corrected latency and the target rate", async () => {
    using server = startHttpServer();
    const { stdout } = await runCli(["--json", "-c", "1", "-R", "200", "-n", "20", `http://127.0.0.1:${server.port}/`]);
    const report = JSON.parse(stdout);
    expect(report.model).toBe("open");
    expect(report.targetRate).toBe(200);
    expect(shape(report.latencyCorrected)).toEqual(LATENCY_SHAPE);
    expect(report.latencyCorrected.count).toBe(20);
  });

  test("an unreachable target exits 1 and says why", async () => {
    const server = startHttpServer();
    const port = server.port;
    server.stop();
    const { exitCode, stdout } = await runCli(["-c", "1", "-n", "1", `http://127.0.0.1:${port}/`]);
    expect(exitCode).toBe(1);
    expect(stdout).toContain("warning: cannot connect to 127.0.0.1");
  });

  test("--progress prints a line each second on stderr, then the table on stdout", async () => {
    using server = startHttpServer();
    const { exitCode, stdout, stderr } = await runCli([
      "--progress",
      "-c",
      "1",
      "-d",
      "1.3s",
      `http://127.0.0.1:${server.port}/`,
    ]);
    expect(exitCode).toBe(0);
    expect(stderr).toContain(`Running 1.3s @ http://127.0.0.1:${server.port}/`);
    expect(stderr).toMatch(/1s +[\d,]+ req\/s {2}in flight \d+ {2}errors 0/);
    expect(stdout).toContain("Latency");
    expect(stdout).toContain("Req/Sec");
    expect(stdout).toMatch(/Responses: 2xx [\d,]+/);
    expect(stdout).toContain("Errors: 0 (connect 0, read 0, timeout 0, non-2xx 0, mismatch 0)");
  });

  test("the table shows both latencies in the open model, and every warning", async () => {
    using server = startHttpServer();
    const report = await runLoad(
      parseLoadArgs(["-c", "1", "-R", "100", "-n", "5", `http://127.0.0.1:${server.port}/`])!,
    );
    report.warnings.push("something to see");
    const text = formatReport(report);
    expect(text).toContain("Latency (from plan)");
    expect(text).toContain("Latency (from send)");
    expect(text).toContain("Target 100 req/s");
    expect(text).toContain("warning: something to see");
  });
});

describe("histograms", () => {
  test("merging encoded per-thread histograms equals recording everything in one", () => {
    const whole = newLatencyHistogram();
    const parts = [newLatencyHistogram(), newLatencyHistogram(), newLatencyHistogram()];
    let seed = 7;
    for (let i = 0; i < 30_000; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const millis = (seed % 100_000) / 100; // 0-1000 ms
      recordMillis(whole, millis);
      recordMillis(parts[i % 3]!, millis);
    }
    const merged = newLatencyHistogram();
    for (const part of parts) addEncodedHistogram(merged, encodeHistogram(part));
    expect(summarizeLatency(merged)).toEqual(summarizeLatency(whole));
  });

  test("values are clamped to 1 µs .. 60 s instead of throwing", () => {
    const histogram = newLatencyHistogram();
    recordMillis(histogram, 0);
    recordMillis(histogram, 120_000);
    const summary = summarizeLatency(histogram);
    expect(summary.min).toBe(1);
    expect(summary.max).toBeGreaterThanOrEqual(60_000_000);
    expect(summary.max).toBeLessThan(60_100_000);
  });
});
