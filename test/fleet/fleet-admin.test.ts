// The fleet's statistics on the admin listener (?scope=fleet on /stats, /status, /metrics, /events) and from
// `bun run stats --fleet`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FleetView } from "../../src/fleet/fleet-snapshot.ts";
import { startServer, type Server } from "../../src/server.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { freePort, startRedis, type RedisServer } from "../helpers/redis.ts";

const root = mkdtempSync(join(tmpdir(), "hps-fleet-admin-"));
writeFileSync(join(root, "a.txt"), "fleet\n");
const CLI = join(import.meta.dir, "../../src/stats-cli.ts");
let redis: RedisServer;
let servers: Server[] = [];
beforeAll(async () => {
  redis = await startRedis();
  const config = (id: string) =>
    testConfig({
      http: { root },
      admin: { enabled: true, port: 0 },
      fleet: { redis_url: redis.url, key_prefix: "admin:", instance_id: id },
    });
  servers = [await startServer(config("one")), await startServer(config("two"))];
  for (const [index, server] of servers.entries()) {
    for (let i = 0; i <= index; i++) await (await fetch(`http://127.0.0.1:${server.port}/a.txt`)).arrayBuffer();
  }
  // Each publishes at start; publish again now that both have counted their requests.
  await waitFor(
    async () => ((await (await fetch(adminUrl(0, "/stats?scope=fleet"))).json()) as FleetView).instances.length === 2,
    5000,
    "both instances published",
  );
});
afterAll(async () => {
  for (const server of servers) await server.stop();
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
});

const adminUrl = (index: number, path: string) => `http://127.0.0.1:${servers[index]!.adminPort}${path}`;

/** Publishes every instance's statistics now (tests do not wait for stats.interval_s). */
async function publishAll(): Promise<void> {
  await Promise.all(servers.map((server) => server.context.fleet?.publishNow()));
}

describe("fleet statistics on the admin listener", () => {
  test("/stats?scope=fleet: every instance with its age, and their sum", async () => {
    await publishAll();
    const view = (await (await fetch(adminUrl(1, "/stats?scope=fleet"))).json()) as FleetView;
    expect(view.scope).toBe("fleet");
    expect(view.instances.map((entry) => entry.id)).toEqual(["one", "two"]);
    expect(view.total.counters.requests).toBe(3);
    expect(view.total.counters.http2xx).toBe(3);
    for (const entry of view.instances) expect(entry.ageSeconds).toBeLessThan(10);
    // Without a scope: this instance only.
    const own = (await (await fetch(adminUrl(1, "/stats"))).json()) as { counters: { requests: number } };
    expect(own.counters.requests).toBe(2);
  });

  test("/metrics?scope=fleet and /status?scope=fleet", async () => {
    await publishAll();
    const metrics = await (await fetch(adminUrl(0, "/metrics?scope=fleet"))).text();
    expect(metrics).toContain("hps_fleet_instances 2\n");
    expect(metrics).toContain('hps_fleet_instance_requests_total{instance="one"} 1\n');
    expect(metrics).toContain('hps_fleet_instance_requests_total{instance="two"} 2\n');
    expect(metrics).toContain("hps_request_duration_seconds_count 3\n");
    const status = await (await fetch(adminUrl(0, "/status?scope=fleet"))).text();
    expect(status).toContain("fleet of 2 instances");
    expect(status).toMatch(/instance one: published [\d.]+ s ago/);
  });

  test("/events?scope=fleet streams the fleet's view", async () => {
    const response = await fetch(adminUrl(0, "/events?scope=fleet"));
    const reader = response.body!.getReader();
    let text = "";
    const decoder = new TextDecoder();
    try {
      while (!text.includes("\n\ndata:") && !/data: .*\n\n/.test(text)) {
        const chunk = await Promise.race([reader.read(), Bun.sleep(5000).then(() => null)]);
        if (chunk === null || chunk.done) break;
        text += decoder.decode(chunk.value, { stream: true });
      }
    } finally {
      await reader.cancel();
    }
    const event = JSON.parse(/data: (.*)\n\n/.exec(text)![1]!) as FleetView;
    expect(event.scope).toBe("fleet");
    expect(event.instances.length).toBe(2);
  });

  test("a wrong scope is 400; a server outside any fleet answers 404", async () => {
    expect((await fetch(adminUrl(0, "/stats?scope=galaxy"))).status).toBe(400);
    await using lone = await startServer(testConfig({ http: { root }, admin: { enabled: true, port: 0 } }));
    const response = await fetch(`http://127.0.0.1:${lone.adminPort}/metrics?scope=fleet`);
    expect(response.status).toBe(404);
    expect(await response.text()).toContain("not in a fleet");
    // And its /metrics has no fleet families at all.
    expect(await (await fetch(`http://127.0.0.1:${lone.adminPort}/metrics`)).text()).not.toContain("hps_fleet_");
  });

  test("while Redis is unavailable the fleet's view is 503 with Retry-After", async () => {
    const port = await freePort();
    await using alone = await startServer(
      testConfig({
        http: { root },
        admin: { enabled: true, port: 0 },
        fleet: { redis_url: `redis://127.0.0.1:${port}` },
      }),
    );
    const response = await fetch(`http://127.0.0.1:${alone.adminPort}/stats?scope=fleet`);
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(await response.text()).toContain("Redis is unavailable");
    const metrics = await (await fetch(`http://127.0.0.1:${alone.adminPort}/metrics`)).text();
    expect(metrics).toContain("hps_fleet_redis_up 0\n");
    expect(metrics).toMatch(/hps_fleet_redis_errors_total [1-9]/);
  });

  test("bun run stats --fleet prints the sum and a line per instance", async () => {
    await publishAll();
    const child = Bun.spawn(["bun", CLI, "--url", adminUrl(0, ""), "--fleet"], { stdout: "pipe", stderr: "pipe" });
    const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    expect(code).toBe(0);
    expect(out).toContain("hps fleet status at");
    expect(out).toContain("fleet of 2 instances");
    expect(out).toMatch(/requests: 3 total/);
    expect(out).toMatch(/instance one: published/);
    expect(out).toMatch(/instance two: published/);
  });
});
