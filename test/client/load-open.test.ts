// Load tester open model: a planned schedule, latency corrected for coordinated omission, late sends.
import { describe, expect, test } from "bun:test";
import { parseLoadArgs } from "../../src/client/options.ts";
import { runLoad } from "../../src/client/run.ts";
import { SendSchedule } from "../../src/client/schedule.ts";
import { OK_RESPONSE, startHttpServer } from "../helpers/load-servers.ts";

describe("send schedule", () => {
  test("spreads the rate evenly over connections, each on its own phase", () => {
    const schedules = [0, 1, 2, 3].map((index) => new SendSchedule(1000, 400, 4, index));
    // 400 req/s over 4 connections: each every 10 ms, phases 0, 2.5, 5, 7.5 ms
    expect(schedules.map((s) => s.plannedMs(0))).toEqual([1000, 1002.5, 1005, 1007.5]);
    expect(schedules[1]!.plannedMs(3)).toBe(1032.5);
    const all = schedules.flatMap((s) => Array.from({ length: 100 }, (_, k) => s.plannedMs(k))).sort((a, b) => a - b);
    for (let i = 1; i < all.length; i++) expect(all[i]! - all[i - 1]!).toBeCloseTo(2.5, 9);
  });

  test("countBefore is the index of the first request planned at or after a time", () => {
    const schedule = new SendSchedule(0, 100, 1, 0); // every 10 ms from 0
    expect(schedule.countBefore(0)).toBe(0);
    expect(schedule.countBefore(10)).toBe(1);
    expect(schedule.countBefore(10.5)).toBe(2);
    expect(schedule.countBefore(-5)).toBe(0);
  });
});

describe("open model", () => {
  test("a 200 ms server stall shows in the corrected p99 but not in the uncorrected p50", async () => {
    // 200 req/s on one connection for 2 s; request 100 (at ~0.5 s) is answered 200 ms late, which holds up
    // the ~40 requests planned behind it. Measured from the plan they wait up to 200 ms; from their actual
    // send they are fast.
    using server = startHttpServer((index) => ({ bytes: OK_RESPONSE, delayMs: index === 100 ? 200 : 0 }));
    const report = await runLoad(
      parseLoadArgs(["-c", "1", "-R", "200", "-d", "2s", `http://127.0.0.1:${server.port}/`])!,
    );
    expect(report.model).toBe("open");
    expect(report.latencyCorrected).not.toBeNull();
    const corrected = report.latencyCorrected!;
    expect(corrected.p99Micros).toBeGreaterThanOrEqual(120_000);
    expect(corrected.maxMicros).toBeGreaterThanOrEqual(190_000);
    expect(report.latency.p50Micros).toBeLessThan(30_000);
    expect(report.latency.maxMicros).toBeGreaterThanOrEqual(190_000);
    expect(report.lateSends).toBeGreaterThan(10);
    // the schedule is honoured: about 400 requests, none lost
    expect(report.requests.completed).toBeGreaterThanOrEqual(380);
    expect(report.requests.completed).toBeLessThanOrEqual(401);
    expect(report.requests.completed).toBe(report.requests.sent);
    expect(report.errors.total).toBe(0);
  });

  // Issue 14 item 18: the timer used to skip connections with a request in flight when choosing its next wake-up,
  // so every send waited for the 20 ms housekeeping tick.
  test.each([
    [1, 100],
    [8, 2000],
  ])(
    "-c %d -R %d against an idle server: sends leave on their planned time",
    async (connections, rate) => {
      using server = startHttpServer();
      const seconds = 1.5;
      const url = `http://127.0.0.1:${server.port}/`;
      const args = ["-c", String(connections), "-R", String(rate), "-d", `${seconds}s`, url];
      // From the plan = lateness of the send + latency from the send, so the gap between the two is how late sends
      // leave. A scheduling fault makes every run late (sends held for the 20 ms tick: p50 gap ~9 ms, p90 ~18 ms,
      // half the sends over 10 ms late); a busy shared machine stalls the event loop now and then, which shows in the
      // p90 and in a few late sends (at a load average of 14 on 2 cores: p50 gap 1.5 ms, p90 5.4 ms), so one attempt
      // in three may escape it, and the margins stay at least twice below what the fault gives.
      let onTime = { sentShare: 0, p50GapMicros: Infinity, p90GapMicros: Infinity, lateShare: 1 };
      const attempts: (typeof onTime)[] = [];
      for (let attempt = 0; attempt < 3; attempt++) {
        const report = await runLoad(parseLoadArgs(args)!);
        expect(report.errors.total).toBe(0);
        expect(report.requests.sent).toBeLessThanOrEqual(rate * seconds + connections);
        onTime = {
          sentShare: report.requests.sent / (rate * seconds),
          p50GapMicros: report.latencyCorrected!.p50Micros - report.latency.p50Micros,
          p90GapMicros: report.latencyCorrected!.p90Micros - report.latency.p90Micros,
          lateShare: report.lateSends / report.requests.sent,
        };
        attempts.push(onTime);
        const { sentShare, p50GapMicros, p90GapMicros, lateShare } = onTime;
        if (sentShare >= 0.9 && p50GapMicros < 2000 && p90GapMicros < 8000 && lateShare <= 0.1) break;
      }
      if (attempts.length === 3) process.stderr.write(`on-time attempts: ${JSON.stringify(attempts)}\n`);
      expect(onTime.sentShare).toBeGreaterThanOrEqual(0.9);
      expect(onTime.p50GapMicros).toBeLessThan(2000);
      expect(onTime.p90GapMicros).toBeLessThan(8000);
      expect(onTime.lateShare).toBeLessThanOrEqual(0.1);
    },
    20_000,
  );

  test("-n with a rate sends exactly n requests on the schedule", async () => {
    using server = startHttpServer();
    const started = performance.now();
    const report = await runLoad(
      parseLoadArgs(["-c", "2", "-R", "500", "-n", "100", `http://127.0.0.1:${server.port}/`])!,
    );
    const elapsedMs = performance.now() - started;
    expect(server.received()).toBe(100);
    expect(report.requests.completed).toBe(100);
    expect(report.latencyCorrected!.count).toBe(100);
    // 100 requests at 500/s take about 200 ms: the schedule paces them
    expect(elapsedMs).toBeGreaterThanOrEqual(190);
  });

  test("a rate the server cannot reach is reported with a warning", async () => {
    // every answer takes 50 ms and only one request may be in flight: at most ~20 req/s of the 200 asked
    using server = startHttpServer(() => ({ bytes: OK_RESPONSE, delayMs: 50 }));
    const report = await runLoad(
      parseLoadArgs(["-c", "1", "-R", "200", "-d", "1s", "--timeout", "2s", `http://127.0.0.1:${server.port}/`])!,
    );
    expect(report.warnings.some((w) => w.startsWith("target rate not reached"))).toBe(true);
    expect(report.lateSends).toBeGreaterThan(0);
    expect(report.requests.sent).toBeLessThan(40);
  });

  test("the closed model has no corrected latency", async () => {
    using server = startHttpServer();
    const report = await runLoad(parseLoadArgs(["-c", "1", "-n", "10", `http://127.0.0.1:${server.port}/`])!);
    expect(report.model).toBe("closed");
    expect(report.latencyCorrected).toBeNull();
  });
});
