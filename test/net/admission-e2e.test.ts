// Admission over HTTP, through startServer: 429/403/503 answers and headers, counters, X-Forwarded-For, slowloris.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { rawConnect, testConfig, waitFor, type RawClient } from "../helpers/common.ts";

let root = "";
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "hps-admission-"));
  writeFileSync(join(root, "index.html"), "<p>hello</p>\n");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function http(overrides: ConfigOverrides) {
  return startServer(testConfig({ ...overrides, server: { protocol: "http" }, http: { root, ...overrides.http } }));
}

describe("http", () => {
  test("over the rate: 429 with Retry-After and RateLimit-*; admitted responses carry RateLimit-* too", async () => {
    await using server = await http({ rate_limit: { enabled: true, requests: 2, window_s: 60, headers: true } });
    const url = `http://127.0.0.1:${server.port}/`;
    const first = await fetch(url);
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit-limit")).toBe("2");
    expect(first.headers.get("ratelimit-remaining")).toBe("1");
    await first.text();
    const second = await fetch(url);
    expect(second.status).toBe(200);
    expect(second.headers.get("ratelimit-remaining")).toBe("0");
    await second.text();
    const refused = await fetch(url);
    expect(refused.status).toBe(429);
    await refused.text();
    // One token per 30 s: the next one is 30 s away, the bucket full again in 60 s.
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(29);
    expect(retryAfter).toBeLessThanOrEqual(30);
    expect(refused.headers.get("ratelimit-limit")).toBe("2");
    expect(refused.headers.get("ratelimit-remaining")).toBe("0");
    expect(Number(refused.headers.get("ratelimit-reset"))).toBeGreaterThanOrEqual(59);
    expect(server.stats.total(Counter.rateLimited)).toBe(1);
  });

  test("rate_limit.headers = false: only refusals carry RateLimit-*", async () => {
    await using server = await http({ rate_limit: { enabled: true, requests: 1, window_s: 60, headers: false } });
    const url = `http://127.0.0.1:${server.port}/`;
    const admitted = await fetch(url);
    expect(admitted.status).toBe(200);
    expect(admitted.headers.get("ratelimit-limit")).toBeNull();
    await admitted.text();
    const refused = await fetch(url);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("ratelimit-limit")).toBe("1");
    await refused.text();
  });

  test("spoofed X-Forwarded-For from an untrusted peer is ignored: all requests share the peer's bucket", async () => {
    await using server = await http({ rate_limit: { enabled: true, requests: 3, window_s: 60 } });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`http://127.0.0.1:${server.port}/`, {
        headers: { "x-forwarded-for": `198.51.100.${i}` },
      });
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
  });

  test("X-Forwarded-For from a trusted proxy is believed: each client has its own bucket", async () => {
    await using server = await http({
      rate_limit: { enabled: true, requests: 1, window_s: 60 },
      net: { trusted_proxies: ["127.0.0.0/8"] },
    });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`http://127.0.0.1:${server.port}/`, {
        headers: { "x-forwarded-for": `198.51.100.${i}` },
      });
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    const again = await fetch(`http://127.0.0.1:${server.port}/`, { headers: { "x-forwarded-for": "198.51.100.0" } });
    await again.arrayBuffer();
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    expect(again.status).toBe(429);
  });

  test("a denied address is refused and counted", async () => {
    await using server = await http({ net: { deny: ["127.0.0.0/8"] } });
    const response = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(response.status).toBe(403);
    await response.arrayBuffer();
    expect(server.stats.total(Counter.refusedDenied)).toBe(1);
    expect(server.stats.total(Counter.connectionsRefused)).toBe(1);
  });

  test("slowloris: 300 connections dribbling header bytes do not delay a normal client, and are cut off", async () => {
    await using server = await http({ limits: { max_connections: 10_000, max_connections_per_ip: 10_000 } });
    const dribblers: RawClient[] = [];
    for (let i = 0; i < 300; i++) {
      const client = await rawConnect(server.port);
      client.socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
      dribblers.push(client);
    }
    const dribble = setInterval(() => {
      for (const client of dribblers) if (!client.isClosed()) client.socket.write("X-Slow: 1\r\n");
    }, 500);
    try {
      for (let i = 0; i < 5; i++) {
        const startedMs = performance.now();
        const response = await fetch(`http://127.0.0.1:${server.port}/`, { signal: AbortSignal.timeout(2000) });
        expect(response.status).toBe(200);
        expect(await response.text()).toBe("<p>hello</p>\n");
        expect(performance.now() - startedMs).toBeLessThan(1000);
      }
      // Bun.serve cuts connections whose headers have not completed after ~10-12 s (docs/http.md, "Request limits").
      await waitFor(
        () => dribblers.every((client) => client.isClosed()),
        20_000,
        "the server to cut every slow-header connection",
      );
      expect(dribblers.every((client) => client.received().length === 0)).toBe(true);
    } finally {
      clearInterval(dribble);
      for (const client of dribblers) client.socket.end();
    }
  }, 30_000);
});
