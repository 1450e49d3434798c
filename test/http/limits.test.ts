// http: connection limits over real sockets — a connection is a peer (address, port); 503 + Retry-After + close over the limits.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { Logger } from "../../src/log.ts";
import { Admission, Refusal } from "../../src/net/admission.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import {
  keptConnection,
  makeTempDir,
  removeDir,
  startSite,
  text,
  type KeptConnection,
  type RunningHttp,
} from "../helpers/http.ts";

let root: string;
const BIG_BYTES = 32 * 1024 * 1024;
beforeAll(() => {
  root = makeTempDir("hps-limits-");
  writeFileSync(join(root, "a.txt"), "alpha");
  writeFileSync(join(root, "big.bin"), new Uint8Array(BIG_BYTES));
});
afterAll(() => removeDir(root));

const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`;

/** Runs `body` with a site and the connections it opens; everything is closed and stopped afterwards. */
async function withSite(
  overrides: Parameters<typeof startSite>[1],
  body: (site: RunningHttp, open: () => Promise<KeptConnection>) => Promise<void>,
): Promise<void> {
  const site = await startSite(root, overrides);
  const opened: KeptConnection[] = [];
  try {
    await body(site, async () => {
      const connection = await keptConnection(site.port);
      opened.push(connection);
      return connection;
    });
  } finally {
    for (const connection of opened) connection.end();
    await site.stop();
  }
}

/** Connection limits on (http.connection_limits) plus the given overrides. */
function limited(overrides: Parameters<typeof startSite>[1]): Parameters<typeof startSite>[1] {
  return { ...overrides, http: { connection_limits: true, ...overrides?.http } };
}

describe("http.connection_limits", () => {
  test("off: max_connections and max_connections_per_ip are not applied, nothing is counted, and start-up says so once", async () => {
    const dir = makeTempDir("hps-limits-log-");
    const logFile = join(dir, "server.log");
    const logger = new Logger({ level: "info", file: logFile });
    const site = await startSite(root, { limits: { max_connections: 1, max_connections_per_ip: 1 } }, logger);
    const opened: KeptConnection[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const connection = await keptConnection(site.port);
        opened.push(connection);
        expect((await connection.request(get("/a.txt"))).status).toBe(200);
      }
      expect(site.context.admission.openConnections).toBe(0);
      expect(site.context.stats.total(Counter.connectionsRefused)).toBe(0);
    } finally {
      for (const connection of opened) connection.end();
      await site.stop();
      await logger.close();
    }
    const lines = readFileSync(logFile, "utf8")
      .split("\n")
      .filter((line) => line.includes("http.connection_limits"));
    removeDir(dir);
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain("INFO");
    expect(lines[0]).toContain("not applied to HTTP connections; set http.connection_limits = true to apply them");
  });

  test("on: connections are counted whatever the limits' values (also at their defaults), and nothing is logged about it", async () => {
    const dir = makeTempDir("hps-limits-log-");
    const logFile = join(dir, "server.log");
    const logger = new Logger({ level: "info", file: logFile });
    const site = await startSite(root, limited({}), logger);
    const connection = await keptConnection(site.port);
    try {
      expect((await connection.request(get("/a.txt"))).status).toBe(200);
      expect(site.context.admission.openConnections).toBe(1);
    } finally {
      connection.end();
      await site.stop();
      await logger.close();
    }
    expect(readFileSync(logFile, "utf8")).not.toContain("http.connection_limits");
    removeDir(dir);
  });

  test("off (the default): many connections that vanish without a word are never refused", async () => {
    await withSite({ limits: { max_connections: 2 } }, async (site, open) => {
      for (let i = 0; i < 20; i++) {
        const connection = await open();
        expect((await connection.request(get("/a.txt"))).status).toBe(200);
        connection.end();
      }
      expect(site.context.stats.total(Counter.connectionsRefused)).toBe(0);
      expect(site.context.admission.openConnections).toBe(0);
    });
  });
});

describe("Admission.admitRequest (per-request allow/deny, no connection bookkeeping)", () => {
  test("a denied address is refused and counted as a denied refusal; an allowed one passes; no slot is taken", () => {
    const config = testConfig({ net: { deny: ["10.0.0.0/8"] }, limits: { max_connections: 1 } });
    const stats = Stats.create();
    const admission = new Admission(config, stats);
    expect(admission.admitRequest("10.1.2.3")).toBe(Refusal.DENIED);
    expect(admission.admitRequest("192.0.2.1")).toBe(Refusal.NONE);
    expect(admission.admitRequest("192.0.2.1")).toBe(Refusal.NONE); // over max_connections if it were counted
    expect(stats.total(Counter.connectionsRefused)).toBe(1);
    expect(stats.total(Counter.refusedDenied)).toBe(1);
    expect(admission.openConnections).toBe(0);
  });

  test("without access lists every address passes and nothing is counted", () => {
    const stats = Stats.create();
    const admission = new Admission(testConfig(), stats);
    expect(admission.admitRequest("10.1.2.3")).toBe(Refusal.NONE);
    expect(stats.total(Counter.connectionsRefused)).toBe(0);
  });
});

describe("limits.max_connections", () => {
  test("over the limit: 503 with Retry-After and Connection: close, the connection closed, counted", async () => {
    await withSite(limited({ limits: { max_connections: 2 } }), async (site, open) => {
      const first = await open();
      const second = await open();
      expect((await first.request(get("/a.txt"))).status).toBe(200);
      expect((await second.request(get("/a.txt"))).status).toBe(200);
      expect(site.context.admission.openConnections).toBe(2);
      // Requests on connections already admitted are still served.
      expect(text((await first.request(get("/a.txt"))).body)).toBe("alpha");

      const third = await open();
      const refused = await third.request(get("/a.txt"));
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(refused.headers.get("connection")).toBe("close");
      expect(text(refused.body)).toBe("503 Service Unavailable\n");
      expect(await third.closed()).toBe(true);

      const stats = site.context.stats;
      expect(stats.total(Counter.refusedMaxConnections)).toBe(1);
      expect(stats.total(Counter.connectionsRefused)).toBe(1);
      expect(stats.total(Counter.refusedPerIp)).toBe(0);
      expect(site.context.admission.openConnections).toBe(2); // the refused one holds no slot
    });
  });

  test("a slot is freed when a connection is closed with Connection: close (asked by the client)", async () => {
    await withSite(limited({ limits: { max_connections: 1 } }), async (site, open) => {
      const first = await open();
      const closing = await first.request(get("/a.txt", "Connection: close\r\n"));
      expect(closing.status).toBe(200);
      expect(await first.closed()).toBe(true);
      expect(site.context.admission.openConnections).toBe(0);
      const next = await open();
      expect((await next.request(get("/a.txt"))).status).toBe(200);
      expect(site.context.stats.total(Counter.connectionsRefused)).toBe(0);
    });
  });

  test("a slot is freed when the server closes the connection after max_keepalive_requests", async () => {
    await withSite(
      limited({ limits: { max_connections: 1 }, http: { max_keepalive_requests: 2 } }),
      async (site, open) => {
        const first = await open();
        expect((await first.request(get("/a.txt"))).status).toBe(200);
        const last = await first.request(get("/a.txt"));
        expect(last.status).toBe(200);
        expect(last.headers.get("connection")).toBe("close");
        expect(await first.closed()).toBe(true);
        const next = await open();
        expect((await next.request(get("/a.txt"))).status).toBe(200);
        expect(site.context.stats.total(Counter.connectionsRefused)).toBe(0);
      },
    );
  });

  test("a connection the client drops silently stays counted until idle past keepalive_timeout_s, then its slot is freed", async () => {
    await withSite(
      limited({ limits: { max_connections: 1 }, http: { keepalive_timeout_s: 1 } }),
      async (site, open) => {
        const first = await open();
        expect((await first.request(get("/a.txt"))).status).toBe(200);
        first.end(); // no Connection: close: the server cannot see it go
        const early = await open();
        expect((await early.request(get("/a.txt"))).status).toBe(503);
        await waitFor(
          () => site.context.admission.openConnections === 0,
          5000,
          "the idle connection's slot to be swept",
        );
        const later = await open();
        expect((await later.request(get("/a.txt"))).status).toBe(200);
        expect(site.context.stats.total(Counter.refusedMaxConnections)).toBe(1);
      },
    );
  });

  test("HEAD over the limit: 503 headers, no body", async () => {
    await withSite(limited({ limits: { max_connections: 1 } }), async (_site, open) => {
      const first = await open();
      expect((await first.request(get("/a.txt"))).status).toBe(200);
      const refused = await (await open()).request("HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
      expect(refused.status).toBe(503);
      expect(refused.headers.get("connection")).toBe("close");
      expect(refused.body.length).toBe(0);
    });
  });

  test("a 413 closes the connection and frees its slot", async () => {
    await withSite(limited({ limits: { max_connections: 1, max_request_bytes: 16 } }), async (site, open) => {
      const first = await open();
      const tooLarge = await first.request("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
      expect(tooLarge.status).toBe(413);
      expect(await first.closed()).toBe(true);
      expect(site.context.admission.openConnections).toBe(0);
      expect((await (await open()).request(get("/a.txt"))).status).toBe(200);
    });
  });

  test("stopping the listener releases every slot it held", async () => {
    const site = await startSite(root, limited({ limits: { max_connections: 4 } }));
    const connection = await keptConnection(site.port);
    try {
      expect((await connection.request(get("/a.txt"))).status).toBe(200);
      expect(site.context.admission.openConnections).toBe(1);
    } finally {
      connection.end();
      await site.stop();
    }
    expect(site.context.admission.openConnections).toBe(0);
  });
});

describe("limits.max_connections_per_ip", () => {
  test("over the per-address limit: 503 with Retry-After and Connection: close, counted as per-IP", async () => {
    await withSite(limited({ limits: { max_connections_per_ip: 2 } }), async (site, open) => {
      const connections = [await open(), await open()];
      for (const connection of connections) expect((await connection.request(get("/a.txt"))).status).toBe(200);
      const over = await open();
      const refused = await over.request(get("/a.txt"));
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(refused.headers.get("connection")).toBe("close");
      expect(await over.closed()).toBe(true);
      expect(site.context.stats.total(Counter.refusedPerIp)).toBe(1);
      expect(site.context.stats.total(Counter.refusedMaxConnections)).toBe(0);
      expect(site.context.admission.openFrom("127.0.0.1")).toBe(2);

      // One of the two closes (asking to): a new connection from the same address is admitted.
      expect((await connections[0]!.request(get("/a.txt", "Connection: keep-alive, close\r\n"))).status).toBe(200);
      expect(await connections[0]!.closed()).toBe(true);
      expect((await (await open()).request(get("/a.txt"))).status).toBe(200);
      expect(site.context.stats.total(Counter.refusedPerIp)).toBe(1);
    });
  });
});

describe("allow/deny with connection limits", () => {
  test("a denied address is refused at its first request with 403 and Connection: close, holding no slot", async () => {
    await withSite(limited({ limits: { max_connections: 4 }, net: { deny: ["127.0.0.0/8"] } }), async (site, open) => {
      const connection = await open();
      const refused = await connection.request(get("/a.txt"));
      expect(refused.status).toBe(403);
      expect(refused.headers.get("connection")).toBe("close");
      expect(await connection.closed()).toBe(true);
      expect(site.context.stats.total(Counter.refusedDenied)).toBe(1);
      expect(site.context.admission.openConnections).toBe(0);
    });
  });

  test("without connection limits, deny is still checked on every request (keep-alive connection stays open)", async () => {
    await withSite({ net: { deny: ["127.0.0.0/8"] } }, async (site, open) => {
      const connection = await open();
      expect((await connection.request(get("/a.txt"))).status).toBe(403);
      expect((await connection.request(get("/a.txt"))).status).toBe(403);
      expect(site.context.stats.total(Counter.refusedDenied)).toBe(2);
      expect(site.context.stats.total(Counter.connectionsRefused)).toBe(2);
    });
  });
});

/** A download of /big.bin on a raw socket, read slowly (a pause after each chunk) until destroyed. */
interface SlowDownload {
  received(): number;
  isClosed(): boolean;
  destroy(): void;
}

function slowDownload(port: number, pauseMs: number): SlowDownload {
  let receivedBytes = 0;
  let closed = false;
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.on("data", (chunk) => {
    receivedBytes += chunk.length;
    socket.pause();
    setTimeout(() => socket.resume(), pauseMs).unref();
  });
  socket.on("close", () => (closed = true));
  socket.on("error", () => (closed = true));
  socket.write(get("/big.bin"));
  return { received: () => receivedBytes, isClosed: () => closed, destroy: () => void socket.destroy() };
}

describe("long responses keep their connection's slot", () => {
  test("a download still running past keepalive_timeout_s keeps its slot: another connection gets 503", async () => {
    // keepalive_timeout_s 5: with 1-3 s, Bun 1.4.5 itself cuts a long response within about 4 s even while it progresses.
    await withSite(
      limited({ limits: { max_connections: 1 }, http: { keepalive_timeout_s: 5 } }),
      async (site, open) => {
        const download = slowDownload(site.port, 400);
        try {
          await waitFor(() => download.received() > 0, 5000, "the download to start");
          // Time must pass here: the idle sweep (every second) would free the slot of a connection idle over 5 s.
          await Bun.sleep(6500);
          const before = download.received();
          const second = await (await open()).request(get("/a.txt"));
          expect(second.status).toBe(503);
          await waitFor(() => download.received() > before, 5000, "the download to go on");
          expect(download.isClosed()).toBe(false);
          expect(download.received()).toBeLessThan(BIG_BYTES);
          expect(site.context.admission.openConnections).toBe(1);
        } finally {
          download.destroy();
        }
      },
    );
  }, 15_000);

  test("a client that goes away mid-download frees its slot at once (not after keepalive_timeout_s)", async () => {
    await withSite(
      limited({ limits: { max_connections: 1 }, http: { keepalive_timeout_s: 30 } }),
      async (site, open) => {
        const download = slowDownload(site.port, 50);
        await waitFor(() => download.received() > 0, 5000, "the download to start");
        expect(site.context.admission.openConnections).toBe(1);
        download.destroy();
        await waitFor(() => site.context.admission.openConnections === 0, 3000, "the slot to be freed");
        expect((await (await open()).request(get("/a.txt"))).status).toBe(200);
      },
    );
  });

  test("after a download completes, a connection dropped silently is freed once idle past keepalive_timeout_s", async () => {
    await withSite(limited({ limits: { max_connections: 1 }, http: { keepalive_timeout_s: 1 } }), async (site) => {
      const download = slowDownload(site.port, 0);
      await waitFor(() => download.received() > BIG_BYTES, 10_000, "the download to complete");
      download.destroy();
      // The estimate at the slowest client rate would hold it for minutes; a sweep sees nothing in progress.
      await waitFor(() => site.context.admission.openConnections === 0, 5000, "the slot to be freed");
    });
  }, 15_000);
});
