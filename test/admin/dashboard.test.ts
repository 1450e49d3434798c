// The live dashboard in real headless Chromium: the panels a protocol uses, what each measures, live non-zero
// charts with time labels, and a page the charts fill.
import { expect, test } from "bun:test";
import type { ServerContext } from "../../src/context.ts";
import { startAdmin } from "../../src/http/admin.ts";
import { chartsFor } from "../../src/http/dashboard-charts.ts";
import { Logger } from "../../src/log.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { CHROMIUM, openInChromium, type BrowserPage } from "../helpers/chromium.ts";
import { testConfig, waitFor, withAdmission } from "../helpers/common.ts";

if (CHROMIUM === null) {
  console.warn(
    "dashboard.test.ts: SKIPPING the headless-browser test: no chromium found (install Debian's `chromium`: apt-get install -y chromium)",
  );
}

interface ChartReading {
  id: string;
  value: string;
  /** Pixels in any series' colour above the chart's zero line: lines that have risen off the floor. */
  raisedPixels: number;
  /** What the panel says it measures. */
  note: string;
  /** The time labels under the chart: oldest, middle, newest point. */
  axis: string[];
}

/** Runs in the page: how far down the window the cards reach, as a fraction of its height. */
const LOWEST_CARD_BOTTOM = `Math.max(...[...document.querySelectorAll(".card")].map((card) => card.getBoundingClientRect().bottom)) / window.innerHeight`;

/** Runs in the page: each chart's big number, and how much of its first line is drawn above zero. */
const READ_CHARTS = `(() => {
  const hex = (color) => [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  return JSON.stringify(CHARTS.map((chart) => {
    const canvas = document.getElementById("chart-" + chart.id);
    const ctx = canvas.getContext("2d");
    const ratio = canvas.width / (canvas.clientWidth || canvas.width);
    const floorY = Math.floor((canvas.height / ratio - 4 - 3) * ratio);
    const pixels = ctx.getImageData(0, 0, canvas.width, floorY).data;
    const colors = chart.series.map((series) => hex(series.color));
    let raised = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] <= 128) continue;
      for (const [r, g, b] of colors) {
        if (Math.abs(pixels[i] - r) + Math.abs(pixels[i + 1] - g) + Math.abs(pixels[i + 2] - b) < 60) { raised++; break; }
      }
    }
    const card = document.getElementById("card-" + chart.id);
    return {
      id: chart.id,
      value: document.getElementById("value-" + chart.id).textContent,
      raisedPixels: raised,
      note: card.querySelector(".note").textContent,
      axis: [...card.querySelectorAll(".axis span")].map((span) => span.textContent),
    };
  }));
})()`;

/** An admin listener for `protocol` over the shared stats and gauges (the gauges of every module, as a custom server has). */
function adminContext(protocol: "http" | "echo" | "custom", stats: Stats, arenaBytes: () => number): ServerContext {
  return withAdmission({
    config: testConfig({ server: { protocol }, admin: { enabled: true, bind: "127.0.0.1", port: 0 } }),
    stats,
    logger: Logger.silent(),
    gauges: new Map<string, () => Record<string, number>>([
      ["pool", () => ({ queued: 5, running: 2, busyWorkers: 2, workers: 2 })],
      [
        "arena",
        () => ({
          bytesInUse: arenaBytes(),
          peakBytes: arenaBytes(),
          allocations: 1,
          frees: 0,
          failures: 0,
          capacityBytes: 1 << 24,
        }),
      ],
      // What the server registers with tls.enabled: notAfter of each certificate, Unix seconds (half a day of slack).
      [
        "tlsCertificateExpiry",
        () => ({
          "*": Math.floor((Date.now() + 41.5 * 86_400_000) / 1000),
          "soon.test": Math.floor((Date.now() + 3.5 * 86_400_000) / 1000),
        }),
      ],
    ]),
  });
}

test("each protocol's dashboard has the panels it uses, each saying what it measures", () => {
  const ids = (protocol: "http" | "echo" | "custom") => chartsFor(protocol).map((chart) => chart.id);
  expect(ids("http")).toEqual(["rps", "latency", "status", "errors", "connections", "bytes"]);
  expect(ids("echo")).toEqual(["errors", "connections", "bytes"]);
  expect(ids("custom")).toEqual(["rps", "latency", "errors", "connections", "bytes", "pool", "arena"]);
  for (const protocol of ["http", "echo", "custom"] as const) {
    for (const chart of chartsFor(protocol)) expect(chart.note.length).toBeGreaterThan(30);
  }
});

test.skipIf(CHROMIUM === null)(
  "the dashboard's charts show live non-zero numbers with time labels, filling the page, while load runs",
  async () => {
    const stats = Stats.create();
    let arenaBytes = 0;
    const httpAdmin = await startAdmin(
      adminContext("http", stats, () => arenaBytes),
      { isReady: () => true },
    );
    const customAdmin = await startAdmin(
      adminContext("custom", stats, () => arenaBytes),
      { isReady: () => true },
    );
    const echoAdmin = await startAdmin(
      adminContext("echo", stats, () => arenaBytes),
      { isReady: () => true },
    );
    // A tiny public server counting into the same Stats, like the real listeners do.
    let served = 0;
    const publicServer = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch() {
        const startedAt = performance.now();
        const body = "x".repeat(512);
        stats.add(Counter.bytesWritten, body.length);
        stats.add(Counter.bytesRead, 80);
        stats.httpStatus(++served % 10 === 0 ? 404 : 200);
        if (served % 7 === 0) stats.inc(Counter.errorsProtocol);
        stats.requestDone((performance.now() - startedAt) * 1000 + 50);
        return new Response(body);
      },
    });
    for (let i = 0; i < 3; i++) stats.connectionOpened();

    let isLoadRunning = true;
    const load = (async () => {
      const url = `http://127.0.0.1:${publicServer.port}/`;
      // Bounded: stops when the test is done or after 40 s, whichever comes first.
      const deadline = Date.now() + 40_000;
      while (isLoadRunning && Date.now() < deadline) {
        arenaBytes = 4096 + Math.floor(Math.random() * 65536);
        await Promise.all(Array.from({ length: 8 }, async () => (await fetch(url)).arrayBuffer()));
      }
    })();
    let page: BrowserPage | null = null;
    try {
      page = await openInChromium(`http://127.0.0.1:${httpAdmin.port}/dashboard`);
      const devtools = page.devtools;
      // Loaded again with the console watched: every error the page meets from its first request on is seen.
      await devtools.watchProblems();
      await devtools.call("Page.navigate", { url: `http://127.0.0.1:${httpAdmin.port}/dashboard` });

      /** Waits until the page shows `count` charts, each with a non-zero value drawn off its floor. */
      const liveReadings = async (count: number): Promise<ChartReading[]> => {
        let readings: ChartReading[] = [];
        const isLive = async (): Promise<boolean> => {
          // Until the page has loaded its script, the expression throws and yields no value.
          const text = await devtools.evaluate<string | undefined>(READ_CHARTS);
          if (typeof text !== "string") return false;
          readings = JSON.parse(text) as ChartReading[];
          return (
            readings.length === count &&
            readings.every(
              (reading) => Number.parseFloat(reading.value.replaceAll(",", "")) > 0 && reading.raisedPixels > 20,
            ) &&
            readings.every((reading) => reading.axis[2] !== "")
          );
        };
        try {
          await waitFor(isLive, 20_000, "every dashboard chart to show a non-zero value");
        } catch (error) {
          throw new Error(`${(error as Error).message}; last readings: ${JSON.stringify(readings)}`);
        }
        return readings;
      };

      const httpReadings = await liveReadings(6);
      expect(httpReadings.map((reading) => reading.id)).toEqual([
        "rps",
        "latency",
        "status",
        "errors",
        "connections",
        "bytes",
      ]);
      const byId = (readings: ChartReading[], id: string) => readings.find((reading) => reading.id === id)!;
      expect(byId(httpReadings, "connections").value).toBe("3");
      expect(byId(httpReadings, "latency").value).toMatch(/µs|ms/);
      expect(byId(httpReadings, "bytes").value).toMatch(/B$/);
      // Each panel says what it measures; the latency panel says it is handler time, not what clients see.
      for (const reading of httpReadings) expect(reading.note.length).toBeGreaterThan(30);
      expect(byId(httpReadings, "latency").note).toContain("clients see more");
      // Time labels: the oldest and newest points' clock times.
      for (const reading of httpReadings) {
        expect(reading.axis[0]).toMatch(/^\d{2}:\d{2}:\d{2}$/);
        expect(reading.axis[2]).toMatch(/^\d{2}:\d{2}:\d{2}$/);
      }
      // The charts fill the window: no empty band below them.
      expect(await devtools.evaluate<number>(LOWEST_CARD_BOTTOM)).toBeGreaterThan(0.95);
      // The page kept receiving events (one a second) and says it is live.
      expect(Number(await devtools.evaluate<string>("document.body.dataset.updates"))).toBeGreaterThanOrEqual(2);
      expect(await devtools.evaluate<string>(`document.getElementById("state").textContent`)).toBe("live");
      expect(await devtools.evaluate<string>(`document.getElementById("summary").textContent`)).toMatch(
        /^http · up \d+ s · [\d,]+ requests/,
      );
      // TLS certificates: days to expiry, the closest highlighted.
      expect(await devtools.evaluate<string>(`document.getElementById("certificates").textContent`)).toBe(
        "certificates: default expires in 41 days · soon.test expires in 3 days",
      );
      expect(await devtools.evaluate<string>(`document.getElementById("certificates").className`)).toBe("soon");

      // The same browser on a custom server's dashboard: the pool and arena panels, no HTTP status panel.
      await devtools.call("Page.navigate", { url: `http://127.0.0.1:${customAdmin.port}/dashboard` });
      const customReadings = await liveReadings(7);
      expect(customReadings.map((reading) => reading.id)).toEqual([
        "rps",
        "latency",
        "errors",
        "connections",
        "bytes",
        "pool",
        "arena",
      ]);
      expect(byId(customReadings, "pool").value).toBe("5");
      expect(byId(customReadings, "arena").value).toMatch(/B$/);
      expect(await devtools.evaluate<number>(LOWEST_CARD_BOTTOM)).toBeGreaterThan(0.95);

      // And an echo server's: errors, connections and bytes only.
      await devtools.call("Page.navigate", { url: `http://127.0.0.1:${echoAdmin.port}/dashboard` });
      const echoReadings = await liveReadings(3);
      expect(echoReadings.map((reading) => reading.id)).toEqual(["errors", "connections", "bytes"]);
      // Its summary has no request count (echo counts none) and says the connections are those accepted.
      expect(await devtools.evaluate<string>(`document.getElementById("summary").textContent`)).toMatch(
        /^echo · up \d+ s · [\d,]+ connections accepted · cpu /,
      );
      // No console error, exception or failed request (such as a favicon) on any page.
      expect(devtools.problems).toEqual([]);
    } finally {
      isLoadRunning = false;
      await page?.close();
      await load;
      publicServer.stop(true);
      await httpAdmin.stop({ graceful: false, timeoutMs: 0 });
      await customAdmin.stop({ graceful: false, timeoutMs: 0 });
      await echoAdmin.stop({ graceful: false, timeoutMs: 0 });
    }
  },
  60_000,
);
