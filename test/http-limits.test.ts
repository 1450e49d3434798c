// http: connection limits over real sockets — a connection is a peer (address, port); 503 + Retry-After + close over the limits.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { countsHttpConnections } from "../src/http/serve.ts";
import { Counter } from "../src/stats/stats.ts";
import { testConfig, waitFor } from "./helpers.ts";
import { keptConnection, makeTempDir, removeDir, startSite, text, type KeptConnection, type RunningHttp } from "./http-helpers.ts";

let root: string;
beforeAll(() => {
  root = makeTempDir("hps-limits-");
  writeFileSync(join(root, "a.txt"), "alpha");
});
afterAll(() => removeDir(root));

const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`;

/** Runs `body` with a site and the connections it opens; everything is closed and stopped afterwards. */
async function withSite(overrides: Parameters<typeof startSite>[1], body: (site: RunningHttp, open: () => Promise<KeptConnection>) => Promise<void>): Promise<void> {
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

describe("which configurations count HTTP connections", () => {
  test("only limits tighter than the defaults", () => {
    expect(countsHttpConnections(testConfig())).toBe(false);
    expect(countsHttpConnections(testConfig({ limits: { max_connections_per_ip: 4 } }))).toBe(true);
    expect(countsHttpConnections(testConfig({ limits: { max_connections: 100 } }))).toBe(true);
    expect(countsHttpConnections(testConfig({ rate_limit: { enabled: true } }))).toBe(false);
  });

  test("at the defaults many connections that vanish without a word are never refused", async () => {
    await withSite({}, async (site, open) => {
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

describe("limits.max_connections", () => {
  test("over the limit: 503 with Retry-After and Connection: close, the connection closed, counted", async () => {
    await withSite({ limits: { max_connections: 2 } }, async (site, open) => {
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
    await withSite({ limits: { max_connections: 1 } }, async (site, open) => {
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
    await withSite({ limits: { max_connections: 1 }, http: { max_keepalive_requests: 2 } }, async (site, open) => {
      const first = await open();
      expect((await first.request(get("/a.txt"))).status).toBe(200);
      const last = await first.request(get("/a.txt"));
      expect(last.status).toBe(200);
      expect(last.headers.get("connection")).toBe("close");
      expect(await first.closed()).toBe(true);
      const next = await open();
      expect((await next.request(get("/a.txt"))).status).toBe(200);
      expect(site.context.stats.total(Counter.connectionsRefused)).toBe(0);
    });
  });

  test("a connection the client drops silently stays counted until idle past keepalive_timeout_s, then its slot is freed", async () => {
    await withSite({ limits: { max_connections: 1 }, http: { keepalive_timeout_s: 1 } }, async (site, open) => {
      const first = await open();
      expect((await first.request(get("/a.txt"))).status).toBe(200);
      first.end(); // no Connection: close: the server cannot see it go
      const early = await open();
      expect((await early.request(get("/a.txt"))).status).toBe(503);
      await waitFor(() => site.context.admission.openConnections === 0, 5000, "the idle connection's slot to be swept");
      const later = await open();
      expect((await later.request(get("/a.txt"))).status).toBe(200);
      expect(site.context.stats.total(Counter.refusedMaxConnections)).toBe(1);
    });
  });

  test("HEAD over the limit: 503 headers, no body", async () => {
    await withSite({ limits: { max_connections: 1 } }, async (_site, open) => {
      const first = await open();
      expect((await first.request(get("/a.txt"))).status).toBe(200);
      const refused = await (await open()).request("HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
      expect(refused.status).toBe(503);
      expect(refused.headers.get("connection")).toBe("close");
      expect(refused.body.length).toBe(0);
    });
  });

  test("a 413 closes the connection and frees its slot", async () => {
    await withSite({ limits: { max_connections: 1, max_request_bytes: 16 } }, async (site, open) => {
      const first = await open();
      const tooLarge = await first.request("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
      expect(tooLarge.status).toBe(413);
      expect(await first.closed()).toBe(true);
      expect(site.context.admission.openConnections).toBe(0);
      expect((await (await open()).request(get("/a.txt"))).status).toBe(200);
    });
  });

  test("stopping the listener releases every slot it held", async () => {
    const site = await startSite(root, { limits: { max_connections: 4 } });
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
    await withSite({ limits: { max_connections_per_ip: 2 } }, async (site, open) => {
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
    await withSite({ limits: { max_connections: 4 }, net: { deny: ["127.0.0.0/8"] } }, async (site, open) => {
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
