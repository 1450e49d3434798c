// Three hps processes against one redis-server: the fleet-wide rate limit holds (each alone would allow three times
// as much), connections per address are counted across instances, and Redis going away never stops the serving.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../helpers/common.ts";
import { metric, startHpsProcess, type HpsProcess } from "../helpers/hps-process.ts";
import { startRedis, type RedisServer } from "../helpers/redis.ts";

const root = mkdtempSync(join(tmpdir(), "hps-fleet-www-"));
writeFileSync(join(root, "1k.bin"), new Uint8Array(1024).fill(120));
let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Requests per second the tests allow per client address, and the burst (the bucket starts full). */
const RATE = 100;

async function startInstances(count: number, sets: readonly string[]): Promise<HpsProcess[]> {
  return await Promise.all(Array.from({ length: count }, () => startHpsProcess([`http.root=${root}`, ...sets])));
}

async function stopAll(instances: readonly HpsProcess[]): Promise<void> {
  await Promise.all(instances.map((instance) => instance.stop()));
}

/** Keep-alive clients per instance, each sending as fast as its answers come. */
const CLIENTS_PER_INSTANCE = 4;

/**
 * CLIENTS_PER_INSTANCE clients per instance for `durationMs` (and at most 50,000 requests each); returns the 200s
 * and 429s per instance.
 */
async function hammer(instances: readonly HpsProcess[], durationMs: number) {
  const deadline = performance.now() + durationMs;
  return await Promise.all(
    instances.map(async ({ port }) => {
      const counts = { ok: 0, limited: 0, other: 0, retryAfter: "" };
      await Promise.all(
        Array.from({ length: CLIENTS_PER_INSTANCE }, async () => {
          for (let i = 0; i < 50_000 && performance.now() < deadline; i++) {
            const response = await fetch(`http://127.0.0.1:${port}/1k.bin`);
            await response.arrayBuffer();
            if (response.status === 200) counts.ok++;
            else if (response.status === 429) {
              counts.limited++;
              counts.retryAfter = response.headers.get("retry-after") ?? "";
            } else counts.other++;
          }
        }),
      );
      return counts;
    }),
  );
}

describe("a fleet of three processes", () => {
  test("the rate limit holds fleet-wide; without the fleet each instance allows it alone (three times as much)", async () => {
    const seconds = 2;
    const allowed = RATE + RATE * seconds; // the full bucket, then the rate
    const limit = ["rate_limit.enabled=true", `rate_limit.requests=${RATE}`, "rate_limit.window_s=1"];

    const alone = await startInstances(3, limit);
    let aloneOk = 0;
    try {
      aloneOk = (await hammer(alone, seconds * 1000)).reduce((sum, counts) => sum + counts.ok, 0);
    } finally {
      await stopAll(alone);
    }
    // Each alone admits its own burst and rate: about three times what the fleet admits below.
    expect(aloneOk).toBeGreaterThan(allowed * 2.2);

    const fleet = await startInstances(3, [...limit, `fleet.redis_url=${redis.url}`, "fleet.key_prefix=e2e-rate:"]);
    try {
      await waitFor(async () => (await metric(fleet[0]!.adminPort, "hps_fleet_holders")) >= 3, 5000, "3 holders");
      const results = await hammer(fleet, seconds * 1000);
      const ok = results.reduce((sum, counts) => sum + counts.ok, 0);
      const limited = results.reduce((sum, counts) => sum + counts.limited, 0);
      expect(results.every((counts) => counts.other === 0)).toBe(true);
      expect(limited).toBeGreaterThan(ok); // heavily over the limit
      expect(ok).toBeGreaterThan(allowed * 0.85);
      expect(ok).toBeLessThan(allowed * 1.1);
      expect(Number(results[0]!.retryAfter)).toBeGreaterThanOrEqual(1);
      // Each instance counts what it refused, and Redis was there all along.
      expect(await metric(fleet[0]!.adminPort, "hps_rate_limited_total")).toBeGreaterThan(0);
      expect(await metric(fleet[0]!.adminPort, "hps_fleet_redis_up")).toBe(1);
      expect(await metric(fleet[0]!.adminPort, "hps_fleet_redis_errors_total")).toBe(0);
    } finally {
      await stopAll(fleet);
    }
  }, 60_000);

  test("max_connections_per_ip counts connections across instances (echo: refused ones are closed)", async () => {
    const fleet = await startInstances(3, [
      "server.protocol=echo",
      "limits.max_connections_per_ip=4",
      `fleet.redis_url=${redis.url}`,
      "fleet.key_prefix=e2e-conn:",
    ]);
    const sockets: Array<{ end(): void }> = [];
    try {
      await waitFor(async () => (await metric(fleet[0]!.adminPort, "hps_fleet_holders")) >= 3, 5000, "3 holders");
      let admitted = 0;
      for (let attempt = 0; attempt < 18; attempt++) {
        const { port } = fleet[attempt % 3]!;
        let echoed = false;
        let closed = false;
        const socket = await Bun.connect({
          hostname: "127.0.0.1",
          port,
          socket: {
            data: () => void (echoed = true),
            close: () => void (closed = true),
            error: () => void (closed = true),
          },
        });
        socket.write("x");
        await waitFor(() => echoed || closed, 3000, "an echo or a close");
        if (echoed) {
          admitted++;
          sockets.push(socket);
        }
      }
      // The limit, or one more per instance whose view of the fleet was a round trip old (docs/fleet.md).
      expect(admitted).toBeGreaterThanOrEqual(4);
      expect(admitted).toBeLessThanOrEqual(4 + 2);
      let refused = 0;
      for (const instance of fleet) refused += await metric(instance.adminPort, 'hps_refusals_total{reason="per_ip"}');
      expect(refused).toBe(18 - admitted);
    } finally {
      for (const socket of sockets) socket.end();
      await stopAll(fleet);
    }
  }, 60_000);

  test("Redis killed and restarted under load: every request is answered, the outage is logged once and counted", async () => {
    const own = await startRedis();
    const fleet = await startInstances(2, [
      "rate_limit.enabled=true",
      "rate_limit.requests=1000000",
      "rate_limit.window_s=1",
      `fleet.redis_url=${own.url}`,
    ]);
    try {
      await waitFor(async () => (await metric(fleet[0]!.adminPort, "hps_fleet_holders")) >= 2, 5000, "2 holders");
      const load = hammer(fleet, 2500);
      await Bun.sleep(500); // serving shared for a while before the kill
      await own.kill();
      await waitFor(async () => (await metric(fleet[0]!.adminPort, "hps_fleet_redis_up")) === 0, 3000, "down");
      await own.restart();
      await waitFor(async () => (await metric(fleet[0]!.adminPort, "hps_fleet_redis_up")) === 1, 5000, "back up");
      const results = await load;
      for (const counts of results) {
        expect(counts.other).toBe(0);
        expect(counts.limited).toBe(0);
        expect(counts.ok).toBeGreaterThan(100);
      }
      for (const instance of fleet) {
        expect(await metric(instance.adminPort, "hps_fleet_redis_outages_total")).toBe(1);
        expect(await metric(instance.adminPort, "hps_fleet_redis_errors_total")).toBeGreaterThan(0);
        expect(instance.log().match(/WARN .*fleet: Redis at .* is unavailable/g)?.length).toBe(1);
        expect(instance.log().match(/INFO .*fleet: Redis at .* answers again after/g)?.length).toBe(1);
      }
    } finally {
      await stopAll(fleet);
      await own.stop();
    }
  }, 60_000);
});
