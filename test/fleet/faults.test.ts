// A fleet whose Redis fails: down at start, killed under load, restarted empty, slow, stalled. Decisions never wait,
// follow fleet.on_redis_down while it is away, an outage is logged once and counted, and the fleet comes back by itself.
import { describe, expect, test } from "bun:test";
import { FleetField } from "../../src/fleet/counters.ts";
import { waitFor } from "../helpers/common.ts";
import { startMembers, waitUntilJoined, type TestFleet } from "../helpers/fleet.ts";
import { freePort, startRedis } from "../helpers/redis.ts";

const RATE = { requests: 50, window_s: 1, burst: 0 } as const;

interface TakeResult {
  admitted: number;
  takes: number;
  /** Takes that took 5 ms or more (a take never waits on Redis: only a descheduled thread or a GC pause shows here). */
  slowTakes: number;
}

/** Takes from every member for `durationMs`, yielding to the event loop now and then (so answers and timers run). */
async function takeFor(fleet: TestFleet, key: string, durationMs: number): Promise<TakeResult> {
  const result: TakeResult = { admitted: 0, takes: 0, slowTakes: 0 };
  const startedMs = performance.now();
  while (performance.now() - startedMs < durationMs && result.takes < 2_000_000) {
    for (const { limiter } of fleet.members) {
      const beforeMs = performance.now();
      if (limiter.take(key, beforeMs) === 0) result.admitted++;
      if (performance.now() - beforeMs >= 5) result.slowTakes++;
      result.takes++;
    }
    if (result.takes % 32 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return result;
}

/** Takes went on all along, none waiting (a rare descheduling on a shared machine aside). */
function expectNoWaits(result: TakeResult): void {
  expect(result.takes).toBeGreaterThan(1000);
  expect(result.slowTakes).toBeLessThanOrEqual(Math.max(2, result.takes / 1000));
}

const countOf = (text: string, pattern: RegExp) => text.split("\n").filter((line) => pattern.test(line)).length;
const UNAVAILABLE = /WARN .*fleet: Redis at .* is unavailable/;
const BACK = /INFO .*fleet: Redis at .* answers again/;

describe("Redis faults", () => {
  test("down at start: each instance limits alone (local), logs once, then joins the fleet by itself", async () => {
    const port = await freePort();
    await using fleet = await startMembers(2, `redis://127.0.0.1:${port}`, { rate_limit: RATE });
    const [a] = fleet.members;
    expect(a!.member.link.up).toBe(false);
    // Several reconnection attempts fail; one line says so.
    await waitFor(() => fleet.counters.totals().redisErrors >= 6, 5000, "reconnection attempts");
    // Local: each member's own limiter, so together they admit twice the burst.
    let admitted = 0;
    for (let i = 0; i < 200; i++)
      for (const { limiter } of fleet.members) if (limiter.take("192.0.2.1", 0) === 0) admitted++;
    expect(admitted).toBe(2 * RATE.requests);
    expect(fleet.counters.totals().fallbackDecisions).toBeGreaterThan(0);
    expect(fleet.counters.totals().redisUp).toBe(0);

    await using redis = await startRedis({ port });
    await waitUntilJoined(fleet, 2, 5000);
    expect(fleet.counters.totals().redisUp).toBe(1);
    // Shared now: a new address's bucket lives in Redis, and both members draw from the one bucket.
    const { admitted: shared } = await takeFor(fleet, "192.0.2.2", 300);
    expect(shared).toBeLessThan(RATE.requests * 1.6);
    expect(await redis.client.send("EXISTS", ["hps:rate:192.0.2.2"])).toBe(1);
    const log = await fleet.log();
    expect(countOf(log, UNAVAILABLE)).toBe(1);
    expect(countOf(log, BACK)).toBe(1);
    expect(fleet.counters.totals().outages).toBe(1);
  });

  test("killed under load, then restarted empty: no take waits, local decisions meanwhile, shared again after", async () => {
    await using redis = await startRedis();
    await using fleet = await startMembers(2, redis.url, { rate_limit: RATE });
    await waitUntilJoined(fleet);
    const load = takeFor(fleet, "192.0.2.3", 1500);
    await Bun.sleep(300); // let the load run shared for a while before the kill
    await redis.kill();
    await waitFor(() => fleet.counters.totals().redisUp === 0, 2000, "the outage to be noticed");
    const fallbackBefore = fleet.counters.totals().fallbackDecisions;
    await waitFor(() => fleet.counters.totals().fallbackDecisions > fallbackBefore, 2000, "local decisions");
    expectNoWaits(await load);
    await redis.restart();
    await waitUntilJoined(fleet, 2, 5000);
    // Shared again: a new address's one bucket lives in the restarted Redis (which lost everything before it).
    const callsBefore = fleet.counters.totals().redisCalls;
    const { admitted } = await takeFor(fleet, "192.0.2.8", 200);
    expect(admitted).toBeLessThan(RATE.requests * 1.6);
    expect(fleet.counters.totals().redisCalls).toBeGreaterThan(callsBefore);
    expect(await redis.client.send("EXISTS", ["hps:rate:192.0.2.8"])).toBe(1);
    const log = await fleet.log();
    expect(countOf(log, UNAVAILABLE)).toBe(1);
    expect(countOf(log, BACK)).toBe(1);
  });

  test("slow (DEBUG SLEEP) and stalled (SIGSTOP): calls time out, takes never wait, the fleet resumes by itself", async () => {
    await using redis = await startRedis();
    await using fleet = await startMembers(2, redis.url, { rate_limit: RATE, fleet: { redis_timeout_ms: 50 } });
    await waitUntilJoined(fleet);

    // Slow: Redis busy for 600 ms answers nobody meanwhile.
    const sleeper = redis.client.send("DEBUG", ["SLEEP", "0.6"]);
    expectNoWaits(await takeFor(fleet, "192.0.2.4", 400));
    expect(fleet.counters.totals().outages).toBe(1);
    await sleeper;
    await waitUntilJoined(fleet, 2, 5000);

    // Stalled: the process stops; its sockets stay open and silent.
    redis.pause();
    try {
      expectNoWaits(await takeFor(fleet, "192.0.2.5", 400));
      expect(fleet.counters.totals().redisUp).toBe(0);
      expect(fleet.counters.totals().outages).toBe(2);
    } finally {
      redis.resume();
    }
    await waitUntilJoined(fleet, 2, 5000);
    const log = await fleet.log();
    expect(countOf(log, UNAVAILABLE)).toBe(2);
    expect(log).toContain("no answer within 50 ms");
    expect(countOf(log, BACK)).toBe(2);
  });

  test("on_redis_down = allow admits everything, deny refuses what was not leased; both count their decisions", async () => {
    const port = await freePort();
    await using allow = await startMembers(1, `redis://127.0.0.1:${port}`, {
      rate_limit: RATE,
      fleet: { on_redis_down: "allow" },
    });
    await using deny = await startMembers(1, `redis://127.0.0.1:${port}`, {
      rate_limit: RATE,
      fleet: { on_redis_down: "deny" },
    });
    let allowed = 0;
    let denied = 0;
    for (let i = 0; i < 500; i++) {
      if (allow.members[0]!.limiter.take("192.0.2.6", 0) === 0) allowed++;
      const waitMs = deny.members[0]!.limiter.take("192.0.2.6", 0);
      if (waitMs !== 0) {
        denied++;
        expect(waitMs).toBeGreaterThanOrEqual(1000); // Retry-After: 1
      }
    }
    expect(allowed).toBe(500);
    expect(denied).toBe(500);
    expect(allow.counters.totals().fallbackDecisions).toBe(500);
    expect(deny.counters.totals().fallbackDecisions).toBe(500);
    expect(await deny.log()).toContain("fleet.on_redis_down = deny");
  });

  test("tokens leased before an outage are still spent while Redis is down", async () => {
    await using redis = await startRedis();
    await using fleet = await startMembers(1, redis.url, {
      rate_limit: { requests: 100, window_s: 1, burst: 0 },
      // A lease quiet for two intervals is given back: long intervals keep it in hand however slow this machine is.
      fleet: { on_redis_down: "deny", sync_interval_ms: 1000 },
    });
    await waitUntilJoined(fleet);
    const { limiter, counters } = fleet.members[0]!;
    // A steady client: its lease is topped up ahead of need.
    for (let i = 0; i < 20; i++) {
      expect(limiter.take("192.0.2.7", performance.now())).toBe(0);
      await fleet.settle();
    }
    // The gauge is published every interval.
    await waitFor(() => counters[FleetField.leasedTokens]! > 0, 5000, "the gauge of tokens in hand");
    const inHand = counters[FleetField.leasedTokens]!;
    await redis.kill();
    await waitFor(() => !fleet.members[0]!.member.link.up, 2000, "the outage to be noticed");
    let admitted = 0;
    for (let i = 0; i < 200; i++) if (limiter.take("192.0.2.7", performance.now()) === 0) admitted++;
    expect(admitted).toBeGreaterThan(0);
    expect(admitted).toBeLessThanOrEqual(inHand);
  });
});
