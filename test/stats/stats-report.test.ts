// Status report: its text, the periodic block in the log every stats.interval_s, the final report, and `bun run stats`.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerContext } from "../../src/context.ts";
import { startAdmin } from "../../src/http/admin.ts";
import { Logger } from "../../src/log.ts";
import { bytes, formatDuration, formatReport, micros, startReporter } from "../../src/stats/report.ts";
import { SnapshotSampler } from "../../src/stats/snapshot.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { testConfig, waitFor, withAdmission } from "../helpers/common.ts";

const directory = mkdtempSync(join(tmpdir(), "hps-report-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function countedContext(overrides: Parameters<typeof testConfig>[0] = {}, logger = Logger.silent()): ServerContext {
  const stats = Stats.create();
  for (let i = 0; i < 2500; i++) {
    stats.requestDone(i % 2 === 0 ? 200 : 3000);
    stats.httpStatus(i % 10 === 0 ? 404 : 200);
  }
  for (let i = 0; i < 4; i++) stats.connectionOpened();
  stats.inc(Counter.connectionsRefused);
  stats.inc(Counter.refusedMaxConnections);
  stats.add(Counter.bytesWritten, 3 * 1024 * 1024);
  stats.inc(Counter.poolSubmitted);
  return withAdmission({
    config: testConfig(overrides),
    stats,
    logger,
    gauges: new Map<string, () => Record<string, number>>([
      ["pool", () => ({ queued: 3, running: 2, busyWorkers: 2, workers: 4 })],
      [
        "arena",
        () => ({
          bytesInUse: 1024 * 1024,
          peakBytes: 2 * 1024 * 1024,
          allocations: 9,
          frees: 8,
          failures: 1,
          capacityBytes: 4 * 1024 * 1024,
        }),
      ],
      ["httpCache", () => ({ entries: 12, bytes: 2048, hits: 40, misses: 12 })],
      ["rateLimiter", () => ({ trackedIps: 17 })],
    ]),
  });
}

test("number formats carry their units", () => {
  expect(micros(850)).toBe("850 µs");
  expect(micros(1500)).toBe("1.50 ms");
  expect(micros(2_500_000)).toBe("2.50 s");
  expect(bytes(512)).toBe("512 B");
  expect(bytes(1536)).toBe("1.5 KiB");
  expect(bytes(3 * 1024 * 1024)).toBe("3.0 MiB");
  expect(formatDuration(5)).toBe("5.0s");
  expect(formatDuration(187)).toBe("3m07s");
  expect(formatDuration(2 * 3600 + 5 * 60)).toBe("2h05m");
  expect(formatDuration(3 * 86_400 + 4 * 3600)).toBe("3d04h");
});

test("the report shows connections, requests, latency, traffic, HTTP codes, refusals, pool, arena, cache and process", () => {
  const text = formatReport(new SnapshotSampler(countedContext()).take()).join("\n");
  expect(text).toContain("connections: 4 active (peak 4), 4 accepted, 1 refused, 0 timed out");
  expect(text).toContain("requests: 2,500 total");
  expect(text).toContain("avg 1.60 ms, max 3.00 ms");
  // Percentiles are bucket upper edges: 200 µs reads as 200-203 µs.
  expect(text).toMatch(/latency: p50 20[0-3] µs, p90 3\.0\d ms/);
  expect(text).toContain("written 3.0 MiB");
  expect(text).toContain("http: 1xx 0, 2xx 2,250, 3xx 0 (304 0), 4xx 250 (404 250), 5xx 0");
  expect(text).toContain("refusals: max connections 1, per ip 0, denied 0, rate limited 0 (tracking 17 ips)");
  expect(text).toContain("pool: 3 queued, 2 running, 2/4 workers busy; 1 submitted");
  expect(text).toContain("arena: 1.0 MiB of 4.0 MiB in use (25.0 %), peak 2.0 MiB, 1 failures");
  expect(text).toContain("http cache: 12 files, 2.0 KiB, 40 hits, 12 misses");
  expect(text).toMatch(
    /process: pid \d+, cpu \d+\.\d %, rss [\d.]+ MiB \(js heap [\d.]+ [KM]iB, array buffers [\d.]+ [KM]?i?B\), file descriptors [\d,]+ used of [\d,]+/,
  );
});

test("a TCP protocol's report has no HTTP line", () => {
  const text = formatReport(new SnapshotSampler(countedContext({ server: { protocol: "echo" } })).take()).join("\n");
  expect(text).toContain("protocol echo");
  expect(text).not.toContain("http: 1xx");
});

test("the reporter logs a status block every interval and the final report when stopped", async () => {
  const logPath = join(directory, "periodic.log");
  const logger = new Logger({ level: "info", file: logPath });
  const context = countedContext({ stats: { interval_s: 0.05 } }, logger);
  const reporter = startReporter(context);
  try {
    const blocks = async () => {
      await logger.flush();
      return ((await Bun.file(logPath).text()).match(/ INFO {2}status\n/g) ?? []).length;
    };
    await waitFor(async () => (await blocks()) >= 2, 5000, "two periodic status blocks");
  } finally {
    reporter.stop();
    reporter.stop();
    await logger.close();
  }
  const log = await Bun.file(logPath).text();
  expect(log).toContain("  requests: 2,500 total");
  expect((log.match(/ INFO {2}final report\n/g) ?? []).length).toBe(1);
  expect(log.indexOf("final report")).toBeGreaterThan(log.lastIndexOf(" INFO  status\n"));
});

test("with stats.interval_s = 0 only the final report is logged", async () => {
  const logPath = join(directory, "final-only.log");
  const logger = new Logger({ level: "info", file: logPath });
  const reporter = startReporter(countedContext({ stats: { interval_s: 0 } }, logger));
  reporter.stop();
  await logger.close();
  const log = await Bun.file(logPath).text();
  expect(log).not.toContain(" INFO  status\n");
  expect(log).toContain(" INFO  final report\n");
  expect(log).toContain("  requests: 2,500 total");
});

test("`bun run stats --url` prints the report of a running server; --json the raw snapshot", async () => {
  const context = countedContext({ admin: { enabled: true, bind: "127.0.0.1", port: 0 } });
  const admin = await startAdmin(context, { isReady: () => true });
  try {
    const url = `http://127.0.0.1:${admin.port}`;
    const cli = join(import.meta.dir, "../../src/stats-cli.ts");
    const table = Bun.spawn(["bun", cli, "--url", url], { stdout: "pipe", stderr: "pipe" });
    const [tableOut, tableCode] = await Promise.all([new Response(table.stdout).text(), table.exited]);
    expect(tableCode).toBe(0);
    expect(tableOut).toContain(`hps status at ${url}`);
    expect(tableOut).toContain("requests: 2,500 total");
    expect(tableOut).toContain("pool: 3 queued");

    const json = Bun.spawn(["bun", cli, `--url=${url}/`, "--json"], { stdout: "pipe", stderr: "pipe" });
    const [jsonOut, jsonCode] = await Promise.all([new Response(json.stdout).text(), json.exited]);
    expect(jsonCode).toBe(0);
    expect(JSON.parse(jsonOut).counters.requests).toBe(2500);
  } finally {
    await admin.stop({ graceful: false, timeoutMs: 0 });
  }
});

test("`bun run stats` says what is wrong when no server answers or an argument is bad", async () => {
  // A port that was free a moment ago: nothing listens there now.
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const freePort = probe.port;
  await probe.stop(true);
  const cli = join(import.meta.dir, "../../src/stats-cli.ts");
  const down = Bun.spawn(["bun", cli, "--url", `http://127.0.0.1:${freePort}`], { stdout: "pipe", stderr: "pipe" });
  const [downErr, downCode] = await Promise.all([new Response(down.stderr).text(), down.exited]);
  expect(downCode).toBe(1);
  expect(downErr).toContain(`cannot reach http://127.0.0.1:${freePort}/stats`);
  expect(downErr).toContain("[admin] enabled");

  const bad = Bun.spawn(["bun", cli, "--bogus"], { stdout: "pipe", stderr: "pipe" });
  const [badErr, badCode] = await Promise.all([new Response(bad.stderr).text(), bad.exited]);
  expect(badCode).toBe(2);
  expect(badErr).toContain("unknown argument --bogus");
  expect(badErr).toContain("usage: bun run stats");
});
