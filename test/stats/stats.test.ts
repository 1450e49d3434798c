// Shared statistics: counters, shards across threads, reset, and the snapshot (rates, latency, process, gauges).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { SnapshotSampler, snapshot } from "../../src/stats/snapshot.ts";
import { COUNTER_NAMES, Counter, Stats } from "../../src/stats/stats.ts";
import { testConfig, withAdmission } from "../helpers/common.ts";

function contextWith(stats: Stats, gauges: ServerContext["gauges"] = new Map()): ServerContext {
  return withAdmission({ config: testConfig(), stats, logger: Logger.silent(), gauges });
}

describe("Stats counters", () => {
  test("inc and add count into the named counter only", () => {
    const stats = Stats.create();
    stats.inc(Counter.errorsProtocol);
    stats.inc(Counter.errorsProtocol);
    stats.add(Counter.bytesRead, 1500);
    stats.add(Counter.bytesWritten, 2 ** 40); // beyond 32 bits: byte counters must not wrap
    const totals = stats.totals();
    expect(totals.errorsProtocol).toBe(2);
    expect(totals.bytesRead).toBe(1500);
    expect(totals.bytesWritten).toBe(2 ** 40);
    expect(stats.total(Counter.bytesRead)).toBe(1500);
    for (const name of COUNTER_NAMES) {
      if (name !== "errorsProtocol" && name !== "bytesRead" && name !== "bytesWritten") expect(totals[name]).toBe(0);
    }
  });

  test("connections: active goes up and down, the peak stays", () => {
    const stats = Stats.create();
    for (let i = 0; i < 5; i++) stats.connectionOpened();
    for (let i = 0; i < 3; i++) stats.connectionClosed();
    stats.connectionOpened();
    const totals = stats.totals();
    expect(totals.connectionsAccepted).toBe(6);
    expect(totals.connectionsClosed).toBe(3);
    expect(totals.activeConnections).toBe(3);
    expect(totals.maxActiveConnections).toBe(5);
  });

  test("requestDone counts requests, sum, max and the histogram", () => {
    const stats = Stats.create();
    for (const micros of [100, 250, 40, 9000]) stats.requestDone(micros);
    const totals = stats.totals();
    expect(totals.requests).toBe(4);
    expect(totals.requestMicrosSum).toBe(9390);
    expect(totals.requestMicrosMax).toBe(9000);
    const latency = stats.latency();
    expect(latency.count()).toBe(4);
    expect(latency.percentile(50)).toBe(100);
  });

  test("httpStatus counts classes, and 304 and 404 also on their own", () => {
    const stats = Stats.create();
    for (const status of [101, 200, 204, 301, 304, 304, 400, 404, 500, 503]) stats.httpStatus(status);
    const t = stats.totals();
    expect([t.http1xx, t.http2xx, t.http3xx, t.http4xx, t.http5xx]).toEqual([1, 2, 3, 2, 2]);
    expect(t.http304).toBe(2);
    expect(t.http404).toBe(1);
  });

  test("handles attached in the same buffer write their own shards and are summed; max is a max", () => {
    const main = Stats.create();
    const other = Stats.attach(main.buffer, main.startedAtMs);
    main.requestDone(10);
    other.requestDone(30);
    other.requestDone(20);
    main.connectionOpened();
    other.connectionOpened();
    const totals = main.totals();
    expect(totals.requests).toBe(3);
    expect(totals.requestMicrosMax).toBe(30);
    expect(totals.activeConnections).toBe(2);
    expect(other.totals()).toEqual(totals);
    expect(main.latency().count()).toBe(3);
  });

  test("reset zeroes counters and the histogram but keeps open connections", () => {
    const stats = Stats.create();
    stats.connectionOpened();
    stats.connectionOpened();
    stats.connectionClosed();
    stats.requestDone(500);
    stats.httpStatus(200);
    stats.add(Counter.bytesRead, 10);
    stats.reset();
    const t = stats.totals();
    expect(t.requests).toBe(0);
    expect(t.http2xx).toBe(0);
    expect(t.bytesRead).toBe(0);
    expect(t.connectionsAccepted).toBe(0);
    expect(t.activeConnections).toBe(1);
    expect(t.maxActiveConnections).toBe(1);
    expect(stats.latency().count()).toBe(0);
    // Closing the connection opened before the reset brings active back to 0, not below.
    stats.connectionClosed();
    expect(stats.totals().activeConnections).toBe(0);
  });

  test("worker threads count into the same numbers concurrently without lost updates", async () => {
    const stats = Stats.create();
    const statsModule = Bun.pathToFileURL(join(import.meta.dir, "../../src/stats/stats.ts")).href;
    const source = `
      import { Stats, Counter } from ${JSON.stringify(statsModule)};
      self.onmessage = (event) => {
        const { buffer, iterations } = event.data;
        const stats = Stats.attach(buffer);
        for (let i = 0; i < iterations; i++) { stats.requestDone(100); stats.add(Counter.bytesWritten, 3); }
        postMessage("done");
      };`;
    const url = URL.createObjectURL(new Blob([source], { type: "application/typescript" }));
    const iterations = 200_000;
    const workers = [new Worker(url), new Worker(url), new Worker(url)];
    try {
      const finished = workers.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            worker.onmessage = () => resolve();
            worker.onerror = (event) => reject(new Error(event.message));
          }),
      );
      for (const worker of workers) worker.postMessage({ buffer: stats.buffer, iterations });
      // The main thread counts at the same time into its own shard.
      for (let i = 0; i < iterations; i++) stats.requestDone(100);
      await Promise.all(finished);
      const totals = stats.totals();
      expect(totals.requests).toBe(4 * iterations);
      expect(totals.bytesWritten).toBe(3 * 3 * iterations);
      expect(stats.latency().count()).toBe(4 * iterations);
    } finally {
      for (const worker of workers) worker.terminate();
      URL.revokeObjectURL(url);
    }
  });
});

describe("snapshot", () => {
  test("holds every counter, the protocol, uptime and latency percentiles", () => {
    const stats = Stats.create();
    for (let micros = 1; micros <= 1000; micros++) stats.requestDone(micros);
    stats.inc(Counter.rateLimited);
    const snap = snapshot(contextWith(stats));
    expect(Object.keys(snap.counters).sort()).toEqual([...COUNTER_NAMES].sort());
    expect(snap.counters.requests).toBe(1000);
    expect(snap.counters.rateLimited).toBe(1);
    expect(snap.protocol).toBe("http");
    expect(snap.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(snap.latency.count).toBe(1000);
    expect(snap.latency.meanMicros).toBeCloseTo(500.5, 5);
    // Nearest-rank on 1..1000 is exact to the bucket: p50 = 500, p90 = 900, p99 = 990, max = 1000.
    for (const [value, truth] of [
      [snap.latency.p50Micros, 500],
      [snap.latency.p90Micros, 900],
      [snap.latency.p99Micros, 990],
      [snap.latency.p999Micros, 999],
      [snap.latency.maxMicros, 1000],
    ] as const) {
      expect(value).toBeGreaterThanOrEqual(truth);
      expect(value - truth).toBeLessThanOrEqual(truth / 64);
    }
    // Never above the exact max seen.
    expect(snap.latency.maxMicros).toBe(1000);
  });

  test("rates and interval latency cover only the time since the sampler's previous snapshot", async () => {
    const stats = Stats.create();
    const sampler = new SnapshotSampler(contextWith(stats));
    for (let i = 0; i < 100; i++) stats.requestDone(10);
    stats.add(Counter.bytesRead, 5000);
    sampler.take();
    await Bun.sleep(20); // a measurable interval; nothing is awaited
    for (let i = 0; i < 30; i++) stats.requestDone(5000);
    stats.add(Counter.bytesRead, 700);
    stats.add(Counter.bytesWritten, 1400);
    stats.inc(Counter.errorsTimeout);
    const snap = sampler.take();
    expect(snap.intervalSeconds).toBeGreaterThan(0.015);
    expect(snap.rates.requestsPerSecond).toBeCloseTo(30 / snap.intervalSeconds, 6);
    expect(snap.rates.bytesReadPerSecond).toBeCloseTo(700 / snap.intervalSeconds, 6);
    expect(snap.rates.bytesWrittenPerSecond).toBeCloseTo(1400 / snap.intervalSeconds, 6);
    expect(snap.rates.errorsPerSecond).toBeCloseTo(1 / snap.intervalSeconds, 6);
    expect(snap.intervalLatency.count).toBe(30);
    expect(snap.intervalLatency.p50Micros).toBeGreaterThanOrEqual(5000);
    expect(snap.intervalLatency.meanMicros).toBeCloseTo(5000, 6);
    expect(snap.latency.count).toBe(130);
    expect(snap.latency.p50Micros).toBe(10);
  });

  test("after a reset rates are never negative", () => {
    const stats = Stats.create();
    const sampler = new SnapshotSampler(contextWith(stats));
    for (let i = 0; i < 50; i++) stats.requestDone(10);
    sampler.take();
    stats.reset();
    const snap = sampler.take();
    expect(snap.rates.requestsPerSecond).toBe(0);
    expect(snap.intervalLatency.count).toBe(0);
  });

  test("includes every gauge group; a failing gauge is left out instead of failing the snapshot", () => {
    const gauges: ServerContext["gauges"] = new Map<string, () => Record<string, number>>([
      ["pool", () => ({ queued: 7, running: 2, busyWorkers: 2, workers: 4 })],
      [
        "arena",
        () => ({ bytesInUse: 4096, peakBytes: 8192, allocations: 3, frees: 1, failures: 0, capacityBytes: 1 << 20 }),
      ],
      [
        "broken",
        () => {
          throw new Error("gauge failed");
        },
      ],
    ]);
    const snap = snapshot(contextWith(Stats.create(), gauges));
    expect(snap.gauges.pool).toEqual({ queued: 7, running: 2, busyWorkers: 2, workers: 4 });
    expect(snap.gauges.arena?.bytesInUse).toBe(4096);
    expect("broken" in snap.gauges).toBe(false);
  });

  test("process figures come from the process: cpu, memory, file descriptors", () => {
    const snap = snapshot(contextWith(Stats.create()));
    const p = snap.process;
    expect(p.pid).toBe(process.pid);
    expect(p.rssBytes).toBeGreaterThan(1 << 20);
    expect(p.cpuUserSeconds + p.cpuSystemSeconds).toBeGreaterThan(0);
    expect(p.cpuPercent).toBeGreaterThanOrEqual(0);
    // stdin, stdout and stderr at least; and opening a file shows up.
    expect(p.fileDescriptorsUsed).toBeGreaterThanOrEqual(3);
    expect(p.fileDescriptorsLimit).toBeGreaterThan(p.fileDescriptorsUsed);
  });

  test("the heap figures say what they count: a buffer counts once allocated, in RSS only once touched", () => {
    const keep = Array.from({ length: 20_000 }, (_, i) => ({ i, text: `item ${i}` })); // a heap that is not empty
    const context = contextWith(Stats.create());
    const before = snapshot(context).process;
    expect(before.jsHeapBytes).toBeGreaterThan(1 << 20);
    // Only names that cannot be misread: one heap figure and its buffer part, no "heapTotal" from another source.
    expect(Object.keys(before).filter((key) => /heap|buffer/i.test(key))).toEqual(["jsHeapBytes", "arrayBufferBytes"]);
    const untouched = new SharedArrayBuffer(256 << 20);
    const after = snapshot(context).process;
    // (Earlier tests' buffers may be collected meanwhile, so the new one is checked against the total, not the change.)
    expect(after.arrayBufferBytes).toBeGreaterThanOrEqual(256 << 20);
    expect(after.rssBytes - before.rssBytes).toBeLessThan(64 << 20);
    expect(untouched.byteLength + keep.length).toBe((256 << 20) + 20_000);
  });

  test("file descriptors used follow files being opened and closed", async () => {
    const { openSync, closeSync } = await import("node:fs");
    const context = contextWith(Stats.create());
    // The count is the whole process's: a socket an earlier test left closing can change it between the two reads,
    // so the measurement is repeated until one runs undisturbed (bounded).
    const deltas: number[] = [];
    for (let attempt = 0; attempt < 5 && deltas.at(-1) !== 5; attempt++) {
      const before = snapshot(context).process.fileDescriptorsUsed;
      const fds = Array.from({ length: 5 }, () => openSync("/dev/null", "r"));
      const during = snapshot(context).process.fileDescriptorsUsed;
      for (const fd of fds) closeSync(fd);
      deltas.push(during - before);
      await Bun.sleep(0);
    }
    expect(deltas.at(-1)).toBe(5);
  });

  test("is plain data: survives a JSON round trip unchanged", () => {
    const stats = Stats.create();
    stats.requestDone(123);
    const snap = snapshot(
      contextWith(stats, new Map<string, () => Record<string, number>>([["rateLimiter", () => ({ trackedIps: 3 })]])),
    );
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
  });
});
