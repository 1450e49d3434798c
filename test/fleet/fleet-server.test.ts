// startServer with a fleet, in this process: several I/O threads each hold leases of their own; stats are published.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../../src/server.ts";
import { startupWarnings } from "../../src/startup/checks.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { startRedis, type RedisServer } from "../helpers/redis.ts";

const root = mkdtempSync(join(tmpdir(), "hps-fleet-server-"));
writeFileSync(join(root, "a.txt"), "fleet\n");
let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("startServer in a fleet", () => {
  test("two instances of two I/O threads each: four holders, one rate limit", async () => {
    const config = (id: string) =>
      testConfig({
        server: { io_threads: 2 },
        http: { root },
        rate_limit: { enabled: true, requests: 50, window_s: 1 },
        fleet: { redis_url: redis.url, key_prefix: "srv-threads:", instance_id: id, sync_interval_ms: 20 },
      });
    await using a = await startServer(config("a"));
    await using b = await startServer(config("b"));
    const holders = () => (a.context.gauges.get("fleet")?.().holders ?? 0) >= 4;
    await waitFor(holders, 5000, "four holders");
    expect(a.context.gauges.get("fleet")?.().redisUp).toBe(1);
    // Many connections, so both threads of each instance see requests (the kernel spreads connections).
    const deadline = performance.now() + 1000;
    let ok = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, client) => {
        const port = client % 2 === 0 ? a.port : b.port;
        for (let i = 0; i < 5000 && performance.now() < deadline; i++) {
          const response = await fetch(`http://127.0.0.1:${port}/a.txt`, { keepalive: false });
          await response.arrayBuffer();
          if (response.status === 200) ok++;
        }
      }),
    );
    // The burst (50) and 50 per second, for about a second; four holders alone would allow four times as much.
    expect(ok).toBeGreaterThan(60);
    expect(ok).toBeLessThan(130);
  });

  test("the instance publishes its statistics, and withdraws them when it stops", async () => {
    const config = testConfig({
      http: { root },
      stats: { interval_s: 1 },
      fleet: { redis_url: redis.url, key_prefix: "srv-stats:", instance_id: "published-1" },
    });
    const server = await startServer(config);
    try {
      await waitFor(
        async () => (await redis.client.send("EXISTS", ["srv-stats:stats:published-1"])) === 1,
        3000,
        "the published entry",
      );
      const source = server.context.fleet!;
      await fetch(`http://127.0.0.1:${server.port}/a.txt`).then((response) => response.arrayBuffer());
      expect((await source.read()).view.instances.map((entry) => entry.id)).toEqual(["published-1"]);
    } finally {
      await server.stop();
    }
    expect(await redis.client.send("EXISTS", ["srv-stats:stats:published-1"])).toBe(0);
  });

  test("a fleet with nothing to share but statistics is pointed out at start", () => {
    const warning = /the fleet shares only statistics/;
    const fleetOnly = testConfig({ fleet: { redis_url: "redis://127.0.0.1:6379" } });
    expect(startupWarnings(fleetOnly).some((line) => warning.test(line))).toBe(true);
    const limited = testConfig({ fleet: { redis_url: "redis://127.0.0.1:6379" }, rate_limit: { enabled: true } });
    expect(startupWarnings(limited).some((line) => warning.test(line))).toBe(false);
    expect(startupWarnings(testConfig()).some((line) => warning.test(line))).toBe(false);
  });

  test("a reload: new rate settings make a new fleet limiter; fleet settings wait for a restart", async () => {
    const config = testConfig({
      http: { root },
      rate_limit: { enabled: true, requests: 3, window_s: 1 },
      fleet: { redis_url: redis.url, key_prefix: "srv-reload:", sync_interval_ms: 20 },
    });
    await using server = await startServer(config);
    const okOf = async (count: number) => {
      let ok = 0;
      for (let i = 0; i < count; i++) {
        const response = await fetch(`http://127.0.0.1:${server.port}/a.txt`);
        await response.arrayBuffer();
        if (response.status === 200) ok++;
      }
      return ok;
    };
    expect(await okOf(6)).toBe(3);
    const report = await server.reload(
      testConfig({
        http: { root },
        rate_limit: { enabled: true, requests: 10, window_s: 60 },
        fleet: { redis_url: redis.url, key_prefix: "srv-reload-other:", sync_interval_ms: 20 },
      }),
    );
    expect(report.applied).toContain("rate_limit.requests");
    expect(report.needsRestart).toContain("fleet.key_prefix");
    // A new limiter with the new settings (one token per 6 s, 10 at once) on the same bucket under the running prefix:
    // the 3 requests so far filled 1 s of it, so 9 more fit (10 when the first answer comes back late: a new lease's
    // credit is the whole burst with one holder).
    const ok = await okOf(15);
    expect(ok).toBeGreaterThanOrEqual(9);
    expect(ok).toBeLessThanOrEqual(10);
    expect(await redis.client.send("EXISTS", ["srv-reload:rate:127.0.0.1"])).toBe(1);
  });

  test("HTTP connections per address count across the fleet (http.connection_limits)", async () => {
    const config = testConfig({
      http: { root, connection_limits: true },
      limits: { max_connections_per_ip: 2 },
      fleet: { redis_url: redis.url, key_prefix: "srv-http-conn:", sync_interval_ms: 20 },
    });
    await using a = await startServer(config);
    await using b = await startServer(config);
    await waitFor(() => (a.context.gauges.get("fleet")?.().holders ?? 0) >= 2, 5000, "two holders");
    await waitFor(() => (b.context.gauges.get("fleet")?.().holders ?? 0) >= 2, 5000, "two holders");
    const sockets: Array<{ end(): void }> = [];
    const statuses: number[] = [];
    try {
      for (let attempt = 0; attempt < 6; attempt++) {
        const port = attempt % 2 === 0 ? a.port : b.port;
        let text = "";
        const socket = await Bun.connect({
          hostname: "127.0.0.1",
          port,
          socket: { data: (_socket, chunk) => void (text += new TextDecoder().decode(chunk)) },
        });
        sockets.push(socket);
        // A keep-alive request: the connection stays open (and counted) after its answer.
        socket.write("GET /a.txt HTTP/1.1\r\nHost: fleet\r\n\r\n");
        await waitFor(() => /^HTTP\/1\.1 \d{3}/.test(text), 5000, "an answer");
        statuses.push(Number(text.slice(9, 12)));
        await Promise.all([a.context.fleet?.member.settle(), b.context.fleet?.member.settle()]);
      }
    } finally {
      for (const socket of sockets) socket.end();
    }
    // Two admitted across both instances (each alone would admit two); the others refused with 503.
    expect(statuses.filter((status) => status === 200).length).toBe(2);
    expect(statuses.filter((status) => status === 503).length).toBe(4);
  });
});
