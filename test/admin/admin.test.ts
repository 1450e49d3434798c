// Admin listener over loopback: health and readiness, /stats, /status, /metrics, /dashboard, /events, stop.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Listener, ServerContext } from "../../src/context.ts";
import { startAdmin } from "../../src/http/admin.ts";
import { Logger } from "../../src/log.ts";
import type { Snapshot } from "../../src/stats/snapshot.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { testConfig, waitFor, withAdmission } from "../helpers/common.ts";

function adminContext(): ServerContext {
  return withAdmission({
    config: testConfig({ admin: { enabled: true, bind: "127.0.0.1", port: 0 } }),
    stats: Stats.create(),
    logger: Logger.silent(),
    gauges: new Map<string, () => Record<string, number>>([
      ["pool", () => ({ queued: 2, running: 1, busyWorkers: 1, workers: 2 })],
    ]),
  });
}

/** Reads Server-Sent Events `data:` payloads from a streaming response body. */
class EventReader {
  private readonly reader;
  private readonly decoder = new TextDecoder();
  private buffered = "";

  constructor(response: Response) {
    this.reader = response.body!.getReader();
  }

  /** The next event's data, or null when the stream ends. */
  async next(): Promise<string | null> {
    for (let reads = 0; reads < 100; reads++) {
      const end = this.buffered.indexOf("\n\n");
      if (end >= 0) {
        const event = this.buffered.slice(0, end);
        this.buffered = this.buffered.slice(end + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data: "))
          .map((line) => line.slice(6));
        if (data.length > 0) return data.join("\n");
        continue;
      }
      const { done, value } = await this.reader.read();
      if (done) return null;
      this.buffered += this.decoder.decode(value, { stream: true });
    }
    throw new Error("no complete event after 100 reads");
  }

  cancel(): Promise<void> {
    return this.reader.cancel();
  }
}

describe("admin endpoints", () => {
  const context = adminContext();
  let isReady = true;
  let admin: Listener;
  let base: string;

  beforeAll(async () => {
    admin = await startAdmin(context, { isReady: () => isReady });
    base = `http://127.0.0.1:${admin.port}`;
  });
  afterAll(async () => {
    await admin.stop({ graceful: false, timeoutMs: 0 });
  });

  test("/livez answers 200 and / lists the endpoints", async () => {
    const live = await fetch(`${base}/livez`);
    expect(live.status).toBe(200);
    expect(await live.text()).toBe("ok\n");
    const index = await (await fetch(`${base}/`)).text();
    for (const path of ["/livez", "/readyz", "/stats", "/status", "/metrics", "/dashboard", "/events"])
      expect(index).toContain(path);
  });

  test("unknown paths are 404", async () => {
    const response = await fetch(`${base}/nope`);
    expect(response.status).toBe(404);
    await response.text();
  });

  test("/readyz follows isReady: 200, then 503 while draining, then 200 again", async () => {
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    isReady = false;
    const draining = await fetch(`${base}/readyz`);
    expect(draining.status).toBe(503);
    expect(await draining.text()).toBe("draining\n");
    isReady = true;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  test("/stats is a JSON snapshot of the shared counters, not cached", async () => {
    context.stats.connectionOpened();
    for (let i = 0; i < 7; i++) {
      context.stats.requestDone(300);
      context.stats.httpStatus(200);
    }
    context.stats.add(Counter.bytesWritten, 4321);
    const response = await fetch(`${base}/stats`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("application/json");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const snap = (await response.json()) as Snapshot;
    expect(snap.counters.requests).toBe(7);
    expect(snap.counters.http2xx).toBe(7);
    expect(snap.counters.bytesWritten).toBe(4321);
    expect(snap.counters.activeConnections).toBe(1);
    expect(snap.latency.count).toBe(7);
    expect(snap.gauges.pool?.queued).toBe(2);
    expect(snap.process.pid).toBe(process.pid);
  });

  test("/status reads like nginx stub_status followed by the report", async () => {
    const response = await fetch(`${base}/status`);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const text = await response.text();
    const totals = context.stats.totals();
    expect(text).toContain(
      `Active connections: ${totals.activeConnections}\nserver accepts handled requests\n ${totals.connectionsAccepted + totals.connectionsRefused} ${totals.connectionsAccepted} ${totals.requests}\n`,
    );
    expect(text).toContain(`requests: ${totals.requests} total`);
    expect(text).toContain("pool: 2 queued, 1 running, 1/2 workers busy");
  });

  test("/metrics is Prometheus text 0.0.4", async () => {
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    expect(text).toContain("# TYPE hps_requests_total counter\n");
    expect(text).toContain(`hps_requests_total{protocol="http",code="2xx"} ${context.stats.totals().http2xx}\n`);
  });

  test("/dashboard is one self-contained page: no external scripts, styles or fonts", async () => {
    const response = await fetch(`${base}/dashboard`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await response.text();
    expect(html).toContain("<canvas");
    expect(html).toContain('new EventSource("events")');
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href="(?!data:)/i); // the icon is an empty data: URL (no request)
    expect(html).not.toMatch(/https?:\/\//i);
  });

  test("/events sends a snapshot a second with fresh numbers", async () => {
    const response = await fetch(`${base}/events`);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const events = new EventReader(response);
    try {
      const first = JSON.parse((await events.next())!) as Snapshot;
      const before = first.counters.requests;
      for (let i = 0; i < 5; i++) context.stats.requestDone(100);
      // While the stream is open it is not counted as work in flight (a graceful stop must not wait for it).
      expect(admin.inFlight()).toBe(0);
      const second = JSON.parse((await events.next())!) as Snapshot;
      expect(second.counters.requests).toBe(before + 5);
      expect(second.atMs - first.atMs).toBeGreaterThanOrEqual(500);
      expect(second.atMs - first.atMs).toBeLessThan(5000);
      expect(second.rates.requestsPerSecond).toBeGreaterThan(0);
    } finally {
      await events.cancel();
    }
  });
});

test("/events rates cover the last second only, even for the first viewer after traffic nobody watched", async () => {
  const context = adminContext();
  const admin = await startAdmin(context, { isReady: () => true });
  const base = `http://127.0.0.1:${admin.port}`;
  // Traffic while no dashboard is open (before this admin's first viewer): not in any viewer's per-second rates.
  for (let i = 0; i < 5000; i++) context.stats.requestDone(100);
  const first = new EventReader(await fetch(`${base}/events`));
  let second: EventReader | null = null;
  try {
    const snapshot = JSON.parse((await first.next())!) as Snapshot;
    expect(snapshot.counters.requests).toBe(5000);
    expect(snapshot.rates.requestsPerSecond).toBe(0);
    expect(snapshot.intervalLatency.count).toBe(0);
    // A viewer joining a running broadcast gets the last snapshot at once: the same window, not a shorter one.
    second = new EventReader(await fetch(`${base}/events`));
    const joined = JSON.parse((await second.next())!) as Snapshot;
    expect(joined.atMs).toBe(snapshot.atMs);
  } finally {
    await first.cancel();
    await second?.cancel();
    await admin.stop({ graceful: false, timeoutMs: 0 });
  }
});

test("stopping the admin listener ends open event streams and frees the port", async () => {
  const admin = await startAdmin(adminContext(), { isReady: () => true });
  const base = `http://127.0.0.1:${admin.port}`;
  const events = new EventReader(await fetch(`${base}/events`));
  expect(await events.next()).not.toBeNull();
  await admin.stop({ graceful: true, timeoutMs: 2000 });
  // The stream ends (possibly after one event already in flight) instead of hanging.
  let ended = false;
  for (let i = 0; i < 3 && !ended; i++) ended = (await events.next()) === null;
  expect(ended).toBe(true);
  let isRefused = false;
  try {
    await fetch(`${base}/livez`, { signal: AbortSignal.timeout(2000) });
  } catch {
    isRefused = true;
  }
  expect(isRefused).toBe(true);
});

test("/readyz turns 503 when a drain begins while in-flight requests on the public port still complete", async () => {
  const context = adminContext();
  let isReady = true;
  const admin = await startAdmin(context, { isReady: () => isReady });
  // A tiny public server that counts into the same Stats and holds each request until released.
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let started = 0;
  const publicServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch() {
      const startedAt = performance.now();
      started++;
      await released;
      context.stats.requestDone((performance.now() - startedAt) * 1000);
      context.stats.httpStatus(200);
      return new Response("done");
    },
  });
  try {
    const inFlight = fetch(`http://127.0.0.1:${publicServer.port}/`);
    await waitFor(() => started === 1, 5000, "the public request to start");
    // Graceful shutdown begins: readiness flips first, then the listener drains.
    isReady = false;
    const stopping = publicServer.stop(false);
    expect((await fetch(`http://127.0.0.1:${admin.port}/readyz`)).status).toBe(503);
    expect((await fetch(`http://127.0.0.1:${admin.port}/livez`)).status).toBe(200);
    release();
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("done");
    await stopping;
    const snap = (await (await fetch(`http://127.0.0.1:${admin.port}/stats`)).json()) as Snapshot;
    expect(snap.counters.requests).toBe(1);
    expect(snap.counters.http2xx).toBe(1);
  } finally {
    release();
    publicServer.stop(true);
    await admin.stop({ graceful: false, timeoutMs: 0 });
  }
});
