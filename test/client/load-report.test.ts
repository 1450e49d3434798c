// Load tester CLI and output: flag parsing, the stable --json schema, the table, progress, histogram merging.
import { describe, expect, test } from "bun:test";
import {
  addEncodedHistogram,
  encodeHistogram,
  newLatencyHistogram,
  recordMillis,
  summarizeLatency,
} from "../../src/client/latency.ts";
import { LOAD_USAGE, LoadUsageError, parseDurationMs, parseLoadArgs } from "../../src/client/options.ts";
import { formatReport } from "../../src/client/report.ts";
import { runLoad } from "../../src/client/run.ts";
import { mergeSeconds, rateStats } from "../../src/client/per-second.ts";
import { OK_RESPONSE, startHttpServer } from "../helpers/load-servers.ts";

const NOT_FOUND = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
const SERVER_ERROR = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";

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
  p50Micros: "number",
  p90Micros: "number",
  p99Micros: "number",
  p999Micros: "number",
  maxMicros: "number",
  minMicros: "number",
  meanMicros: "number",
  stdevMicros: "number",
  count: "number",
};
const RATE_SHAPE = { min: "number", mean: "number", max: "number", stdev: "number", seconds: "number" };

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
      tls: false,
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
    // The forms the server's settings take (src/config/units.ts): one parser, so "1h30m" works in both.
    expect(parseDurationMs("1h30m", "-d")).toBe(5_400_000);
    expect(parseDurationMs("1m30s", "-d")).toBe(90_000);
    expect(parseDurationMs("500us", "-w")).toBe(0.5);
    expect(() => parseDurationMs("soon", "-d")).toThrow(LoadUsageError);
    expect(() => parseDurationMs("-5s", "--duration=-5s")).toThrow("expected a duration");
  });

  test.each([
    [["-c", "0", "http://h:1/"], "-c"],
    [["--bogus", "http://h:1/"], "unknown flag --bogus"],
    [["-t", "4", "-c", "2", "http://h:1/"], "-t 4 needs at least as many connections (-c 2)"],
    [
      ["--threads=4", "--connections", "2", "http://h:1/"],
      "--threads 4 needs at least as many connections (--connections 2)",
    ],
    [["--conections", "5", "http://h:1/"], "unknown flag --conections; did you mean --connections?"],
    [["http://h:1/", "-c"], "-c, --connections: missing value"],
    [["-c", "--json", "http://h:1/"], "-c: missing value"],
    [["--json=yes", "http://h:1/"], "--json: takes no value"],
    [["http://h:1/", "http://h:2/"], "one target only"],
    [["--max-error-rate", "lots", "http://h:1/"], "--max-error-rate: expected a percentage"],
    [["--max-error-rate", "150", "http://h:1/"], "--max-error-rate: expected a percentage"],
    [["-d", "0s", "http://h:1/"], "-d: must be more than 0"],
    [["--duration", "soon", "http://h:1/"], "--duration: expected a duration"],
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
    expect(bad.stderr).toStartWith('load: -c: expected an integer >= 1 (got "x")\n');
    expect(bad.stderr).toContain("Usage: bun run load");
    expect(bad.stdout).toBe("");
  });

  test("every short form sets what its long form sets", () => {
    const short = parseLoadArgs([
      ...["-c", "4", "-p", "2", "-d", "500ms", "-n", "7", "-R", "50", "-t", "2", "-w", "1s"],
      ...["-m", "post", "-H", "A: b", "-H", "C:d", "-b", "xyz", "-s", "8", "http://h:1/"],
    ])!;
    const long = parseLoadArgs([
      ...["--connections=4", "--pipeline", "2", "--duration", "500ms", "--requests", "7", "--rate", "50"],
      ...["--threads", "2", "--warmup=1s", "--method", "post", "--header", "A: b", "--header=C:d", "--body", "xyz"],
      ...["--size", "8", "http://h:1/"],
    ])!;
    expect(short).toEqual(long);
    expect(short).toMatchObject({
      connections: 4,
      pipeline: 2,
      durationMs: 500,
      totalRequests: 7,
      ratePerSecond: 50,
      threads: 2,
      warmupMs: 1000,
      method: "POST",
      headers: [
        ["A", "b"],
        ["C", "d"],
      ],
      body: "xyz",
      sizeBytes: 8,
      maxErrorRatePercent: 0,
    });
    expect(parseLoadArgs(["-c8", "-R1000", "http://h:1/"])).toMatchObject({ connections: 8, ratePerSecond: 1000 });
    expect(parseLoadArgs(["--max-error-rate", "2.5%", "http://h:1/"])!.maxErrorRatePercent).toBe(2.5);
    expect(parseLoadArgs(["--", "http://h:1/"])!.target.port).toBe(1);
  });

  test("every flag --help lists is accepted, and its short form means the same", () => {
    const SAMPLE: Record<string, string> = {
      N: "2",
      T: "1s",
      R: "100",
      M: "GET",
      '"K: V"': "X: y",
      S: "x",
      O: "hash",
      P: "5",
      FILE: import.meta.path, // any readable file: the options only read it
    };
    // https:// only; --cert and --key go together.
    const TLS_FLAGS: Record<string, string[]> = {
      http2: [],
      cacert: [],
      cert: ["--key", import.meta.path],
      key: ["--cert", import.meta.path],
      insecure: [],
    };
    const lines = LOAD_USAGE.split("\n").filter((line) => /^ {2}(-\w, | {4})--/.test(line));
    expect(lines.length).toBe(22);
    for (const line of lines) {
      const [, shortFlag, longFlag, placeholder] = /^ {2}(?:-(\w), | {4})--([a-z0-9-]+)(?: ("[^"]+"|\S+))?/.exec(line)!;
      const value = placeholder === undefined ? [] : [SAMPLE[placeholder]!];
      expect(value).not.toContain(undefined);
      if (longFlag === "help") {
        expect(parseLoadArgs(["--help"])).toBeNull();
        expect(parseLoadArgs(["-h"])).toBeNull();
        continue;
      }
      const tlsFlag = TLS_FLAGS[longFlag!];
      const target = tlsFlag === undefined ? ["hps://h:1"] : [...tlsFlag, "https://h:1/"];
      const viaLong = parseLoadArgs([`--${longFlag}`, ...value, "-c", "2", ...target]);
      expect(viaLong).not.toBeNull();
      if (shortFlag !== undefined)
        expect(parseLoadArgs([`-${shortFlag}`, ...value, "-c", "2", ...target])).toEqual(viaLong);
    }
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
      targetRequestsPerSecond: "null",
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
        ratePercent: "number",
      },
      maxErrorRatePercent: "number",
      statuses: { "200": "number" },
      lateSends: "number",
      lateSendMs: "number",
      warnings: "array",
      fatal: "null",
      failure: "null",
    });
    expect(report.schema).toBe("hps-load/2");
    expect(report.requests.completed).toBe(50);
  });

  test("open-model JSON carries the corrected latency and the target rate", async () => {
    using server = startHttpServer();
    const { stdout } = await runCli(["--json", "-c", "1", "-R", "200", "-n", "20", `http://127.0.0.1:${server.port}/`]);
    const report = JSON.parse(stdout);
    expect(report.model).toBe("open");
    expect(report.targetRequestsPerSecond).toBe(200);
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

describe("--max-error-rate", () => {
  test("a run where every answer is 4xx exits 1 and says why; --max-error-rate 100 accepts it", async () => {
    using server = startHttpServer(() => ({ bytes: NOT_FOUND }));
    const url = `http://127.0.0.1:${server.port}/missing`;
    const [failed, accepted] = await Promise.all([
      runCli(["-c", "1", "-n", "20", url]),
      runCli(["-c", "1", "-n", "20", "--max-error-rate", "100", url]),
    ]);
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toContain("Responses: 4xx 20");
    expect(failed.stdout).toContain("Error rate: 100 % of attempts (--max-error-rate 0 %)");
    expect(failed.stderr).toContain(
      "load: 100 % of the attempts failed (non-2xx 20), more than --max-error-rate 0 % allows\n",
    );
    expect(accepted.exitCode).toBe(0);
    expect(accepted.stderr).not.toContain("attempts failed");
  });

  test("the error rate is errors over attempts, compared with the limit", async () => {
    // every fourth answer is a 500: 25 % of 40
    using server = startHttpServer((index) => ({ bytes: index % 4 === 3 ? SERVER_ERROR : OK_RESPONSE }));
    const url = `http://127.0.0.1:${server.port}/`;
    const under = await runLoad(parseLoadArgs(["-c", "1", "-n", "40", "--max-error-rate", "30%", url])!);
    expect(under.errors).toMatchObject({ nonOk: 10, total: 10, ratePercent: 25 });
    expect(under.statuses).toEqual({ "200": 30, "500": 10 });
    expect(under.maxErrorRatePercent).toBe(30);
    expect(under.failure).toBeNull();
    const over = await runLoad(parseLoadArgs(["-c", "1", "-n", "40", "--max-error-rate", "20", url])!);
    expect(over.failure).toBe("25 % of the attempts failed (non-2xx 10), more than --max-error-rate 20 % allows");
  });

  test("a server that accepts but never answers fails the run, even one shorter than --timeout", async () => {
    using server = startHttpServer(() => ({ bytes: OK_RESPONSE, delayMs: 5_000 }));
    const report = await runLoad(parseLoadArgs(["-c", "2", "-d", "300ms", `http://127.0.0.1:${server.port}/`])!);
    expect(report.requests).toMatchObject({ sent: 2, completed: 0 });
    expect(report.errors.total).toBe(0);
    expect(report.failure).toBe(
      "no answer: 2 requests sent, none answered within the 0.3 s measured (the connections opened; --timeout 10 s is longer than the run)",
    );
    const text = formatReport(report);
    expect(text).toContain("warning: no answer: 2 requests sent");
    // No answers, no latency: the table says so instead of showing 0 µs.
    expect(text).toMatch(/│ Latency +│ +– +│ +– +│/);
  });

  test("--json carries the verdict, and the exit code follows it", async () => {
    using server = startHttpServer(() => ({ bytes: SERVER_ERROR }));
    const { exitCode, stdout } = await runCli(["--json", "-c", "2", "-n", "10", `http://127.0.0.1:${server.port}/`]);
    expect(exitCode).toBe(1);
    const report = JSON.parse(stdout);
    expect(report.errors.ratePercent).toBe(100);
    expect(report.maxErrorRatePercent).toBe(0);
    expect(report.failure).toContain("more than --max-error-rate 0 % allows");
  });
});

describe("requests per second", () => {
  test("Min, Max and Stdev come from the run's whole seconds, not from the mean", async () => {
    // the first 20 answers take 50 ms each, about the whole first second; then the server answers at once
    using server = startHttpServer((index) => ({ bytes: OK_RESPONSE, delayMs: index < 20 ? 50 : 0 }));
    const report = await runLoad(parseLoadArgs(["-c", "1", "-d", "2.5s", `http://127.0.0.1:${server.port}/`])!);
    const perSecond = report.requests.perSecond;
    expect(perSecond.seconds).toBe(2);
    expect(perSecond.min).toBeLessThanOrEqual(21);
    expect(perSecond.max).toBeGreaterThan(10 * perSecond.min);
    expect(perSecond.min).toBeLessThan(perSecond.mean);
    expect(perSecond.stdev).toBeCloseTo((perSecond.max - perSecond.min) / 2, 0);
    expect(report.bytes.readPerSecond.min).toBeLessThan(report.bytes.readPerSecond.mean);
    expect(formatReport(report)).toContain("(Min, Stdev and Max over 2 whole seconds; Mean over the whole run)");
  });

  test("whole seconds of all threads are added index by index; a run under one second has no spread", () => {
    expect(mergeSeconds([[10, 20, 5], [1, 2], [100]], 2)).toEqual([111, 22]);
    expect(rateStats(60, 3.5, [10, 20, 30])).toEqual({ min: 10, mean: 17.1, max: 30, stdev: 8.2, seconds: 3 });
    expect(rateStats(50, 0.5, [])).toEqual({ min: 100, mean: 100, max: 100, stdev: 0, seconds: 0 });
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
    expect(summary.minMicros).toBe(1);
    expect(summary.maxMicros).toBeGreaterThanOrEqual(60_000_000);
    expect(summary.maxMicros).toBeLessThan(60_100_000);
  });
});
