// The fleet's rate limiter against a real redis-server: one fleet-wide GCRA bucket, spent from local leases.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FleetField } from "../../src/fleet/counters.ts";
import { RateLimiter } from "../../src/net/rate-limiter.ts";
import { waitFor } from "../helpers/common.ts";
import { startMembers, waitUntilJoined, type TestFleet } from "../helpers/fleet.ts";
import { startRedis, type RedisServer } from "../helpers/redis.ts";

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

/** A different key prefix per test: tests share the Redis, not their buckets. */
let prefixes = 0;
const prefix = () => `t${++prefixes}:`;

/**
 * Takes from every member in turn as fast as the event loop lets answers in, for `durationMs`; returns what each
 * admitted and how long it ran. Bounded by time and by `maxTakes` per member.
 */
async function hammerFor(
  fleet: TestFleet,
  key: string,
  durationMs: number,
  maxTakes = 50_000_000,
): Promise<{ admitted: number[]; refused: number; elapsedMs: number }> {
  const admitted = fleet.members.map(() => 0);
  let refused = 0;
  const startedMs = performance.now();
  let takes = 0;
  while (performance.now() - startedMs < durationMs && takes < maxTakes) {
    for (let i = 0; i < fleet.members.length; i++) {
      if (fleet.members[i]!.limiter.take(key, performance.now()) === 0) admitted[i]!++;
      else refused++;
    }
    takes++;
    if (takes % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return { admitted, refused, elapsedMs: performance.now() - startedMs };
}

async function hammer(fleet: TestFleet, key: string, durationMs: number): Promise<number[]> {
  return (await hammerFor(fleet, key, durationMs)).admitted;
}

describe("fleet rate limiter", () => {
  test("three holders under heavy overload admit the fleet's rate, not three times it", async () => {
    await using fleet = await startMembers(3, redis.url, {
      rate_limit: { requests: 200, window_s: 1, burst: 0 },
      fleet: { key_prefix: prefix() },
    });
    await waitUntilJoined(fleet);
    const { admitted, elapsedMs } = await hammerFor(fleet, "203.0.113.7", 2000);
    const total = admitted.reduce((sum, n) => sum + n, 0);
    // One bucket: the burst (200) plus 200 per second. Each holder alone would have admitted that much by itself.
    const expected = 200 + 200 * (elapsedMs / 1000);
    expect(total).toBeGreaterThan(expected * 0.9);
    expect(total).toBeLessThan(expected * 1.05);
    for (const n of admitted) expect(n).toBeLessThan(expected * 0.7);
    expect(fleet.counters.totals().redisErrors).toBe(0);
  });

  test("a client within the limit is never refused, though its requests spread over every holder", async () => {
    await using fleet = await startMembers(3, redis.url, {
      rate_limit: { requests: 300, window_s: 1, burst: 0 },
      fleet: { key_prefix: prefix() },
    });
    await waitUntilJoined(fleet);
    // 3 requests (one per holder) every 20 ms: 150 per second, half the limit, for 1.5 s.
    let refused = 0;
    let sent = 0;
    const startedMs = performance.now();
    while (performance.now() - startedMs < 1500) {
      for (const { limiter } of fleet.members) {
        sent++;
        if (limiter.take("198.51.100.20", performance.now()) !== 0) refused++;
      }
      await Bun.sleep(20); // pacing the client, not waiting for an event
    }
    expect(sent).toBeGreaterThan(100);
    expect(refused).toBe(0);
  });

  test("a client that pauses between bursts gets no fresh credit: the fleet remembers its bucket", async () => {
    await using fleet = await startMembers(2, redis.url, {
      rate_limit: { requests: 20, window_s: 1, burst: 0 },
      fleet: { key_prefix: prefix() },
    });
    await waitUntilJoined(fleet);
    let admitted = 0;
    const startedMs = performance.now();
    // Bursts of 30 ms, then 200 ms of quiet: long enough for leases to be given back after each burst.
    while (performance.now() - startedMs < 3000) {
      for (const count of await hammer(fleet, "192.0.2.66", 30)) admitted += count;
      await Bun.sleep(200); // the client's pause, not a wait for an event
    }
    // The burst (20) and 20 per second. Forgetting the bucket in each pause would hand out new credit each time
    // (about 1.15 times as much here).
    const allowed = 20 + (20 * (performance.now() - startedMs)) / 1000;
    expect(admitted).toBeLessThanOrEqual(allowed * 1.06);
    expect(admitted).toBeGreaterThan(allowed * 0.8);
  });

  test("a generous limit refuses nothing while Redis answers slowly (within its timeout)", async () => {
    await using fleet = await startMembers(2, redis.url, {
      // Far above what this loop can take (a few million a second).
      rate_limit: { requests: 1_000_000_000, window_s: 1, burst: 0 },
      fleet: { key_prefix: prefix(), redis_timeout_ms: 500 },
    });
    await waitUntilJoined(fleet);
    await hammer(fleet, "192.0.2.77", 200);
    // Redis busy for 300 ms: top-ups come back late, but the fleet's bucket is far from empty.
    const sleeper = redis.client.send("DEBUG", ["SLEEP", "0.3"]);
    const { admitted, refused } = await hammerFor(fleet, "192.0.2.77", 400);
    await sleeper;
    expect(refused).toBe(0);
    expect(admitted.every((count) => count > 1000)).toBe(true);
    // Redis never counted as down: every decision was the fleet's.
    expect(fleet.counters.totals().fallbackDecisions).toBe(0);
  });

  test("a refusal says when the fleet's next token is due; the bucket refills at the fleet's rate", async () => {
    await using fleet = await startMembers(1, redis.url, {
      rate_limit: { requests: 10, window_s: 1, burst: 0 },
      fleet: { key_prefix: prefix() },
    });
    await waitUntilJoined(fleet);
    const { limiter } = fleet.members[0]!;
    const key = "192.0.2.33";
    let admitted = 0;
    for (let i = 0; i < 30; i++) {
      if (limiter.take(key, performance.now()) === 0) admitted++;
      await fleet.settle();
    }
    expect(admitted).toBe(10); // the burst, as the local limiter would
    const waitMs = limiter.take(key, performance.now());
    expect(waitMs).toBeGreaterThan(0);
    expect(waitMs).toBeLessThanOrEqual(100); // one token per 100 ms
    const headers = limiter.peek(key, performance.now());
    expect(headers.limit).toBe(10);
    expect(headers.remaining).toBe(0);
    expect(headers.resetSeconds).toBe(1);
    await Bun.sleep(waitMs + 5); // let the fleet's clock reach the token
    expect(limiter.take(key, performance.now())).toBe(0);
  });

  test("quiet addresses give their tokens back: another holder then gets the whole burst", async () => {
    await using fleet = await startMembers(2, redis.url, {
      rate_limit: { requests: 40, window_s: 100, burst: 0 },
      fleet: { key_prefix: prefix() },
    });
    await waitUntilJoined(fleet);
    const [a, b] = fleet.members;
    const key = "192.0.2.44";
    // A leases its share (20) with its first request and spends 5 of them.
    for (let i = 0; i < 5; i++) {
      expect(a!.limiter.take(key, performance.now())).toBe(0);
      await fleet.settle();
    }
    await waitFor(() => a!.counters[FleetField.leasedTokens]! > 0, 2000, "a lease in hand");
    // Quiet for two sync intervals: A gives back what it did not spend (and keeps what it knows of the bucket).
    await waitFor(() => a!.counters[FleetField.leasedTokens] === 0, 2000, "the quiet lease to be given back");
    expect(a!.limiter.size).toBe(1);
    await fleet.settle();
    let admitted = 0;
    for (let i = 0; i < 60; i++) {
      if (b!.limiter.take(key, performance.now()) === 0) admitted++;
      await fleet.settle();
    }
    // 40 in the bucket, 5 spent by A; the slow refill (0.4 per second) may add one.
    expect(admitted).toBeGreaterThanOrEqual(35);
    expect(admitted).toBeLessThanOrEqual(36);
  });

  test("the same verdicts as the local limiter for a single holder that waits for each answer", async () => {
    await using fleet = await startMembers(1, redis.url, {
      rate_limit: { requests: 5, window_s: 1, burst: 8 },
      fleet: { key_prefix: prefix() },
    });
    await waitUntilJoined(fleet);
    const { limiter } = fleet.members[0]!;
    const local = new RateLimiter(5, 1, 8, 100);
    const fleetVerdicts: boolean[] = [];
    const localVerdicts: boolean[] = [];
    for (let i = 0; i < 20; i++) {
      fleetVerdicts.push(limiter.take("192.0.2.55", performance.now()) === 0);
      localVerdicts.push(local.take("192.0.2.55", performance.now()) === 0);
      await fleet.settle();
    }
    expect(fleetVerdicts).toEqual(localVerdicts);
    expect(fleetVerdicts.filter(Boolean).length).toBe(8);
  });
});
