// limits.max_connections_per_ip across the fleet: connection slots per address leased from a real redis-server.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FleetVerdict } from "../../src/net/connection-gate.ts";
import { FleetField } from "../../src/fleet/counters.ts";
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

let prefixes = 0;
const prefix = () => `c${++prefixes}:`;

/** Connections every holder records for `ip` in Redis. */
async function recorded(keyPrefix: string, ip: string): Promise<Record<string, number>> {
  const flat = (await redis.client.send("HGETALL", [`${keyPrefix}conn:${ip}`])) as Record<string, string> | string[];
  const entries = Array.isArray(flat)
    ? Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!] as const)
    : Object.entries(flat);
  return Object.fromEntries(entries.map(([holder, slots]) => [holder, Number(slots)]));
}

/** Enters from each member in turn, waiting for the fleet's answers after each; returns what each admitted. */
async function enterInTurns(fleet: TestFleet, ip: string, limit: number, rounds: number): Promise<number[]> {
  const admitted = fleet.members.map(() => 0);
  for (let round = 0; round < rounds; round++) {
    fleet.members.forEach(({ member }, i) => {
      if (member.connections.enter(ip, limit, performance.now()) !== FleetVerdict.REFUSED) admitted[i]!++;
    });
    await fleet.settle();
  }
  return admitted;
}

describe("fleet connection slots", () => {
  test("three holders together admit the per-address limit, not three times it", async () => {
    const keyPrefix = prefix();
    await using fleet = await startMembers(3, redis.url, { fleet: { key_prefix: keyPrefix } });
    await waitUntilJoined(fleet);
    const admitted = await enterInTurns(fleet, "203.0.113.9", 6, 10);
    expect(admitted.reduce((sum, n) => sum + n, 0)).toBe(6);
    // Redis records each holder's open connections, plus at most one spare for one of them while there is room.
    const records = await recorded(keyPrefix, "203.0.113.9");
    expect(Object.values(records).reduce((sum, n) => sum + n, 0)).toBe(6);
  });

  test("a connection that closes makes room in the fleet for another holder's newcomer", async () => {
    await using fleet = await startMembers(2, redis.url, { fleet: { key_prefix: prefix() } });
    await waitUntilJoined(fleet);
    const [a, b] = fleet.members;
    const ip = "203.0.113.10";
    expect((await enterInTurns(fleet, ip, 4, 6)).reduce((sum, n) => sum + n, 0)).toBe(4);
    const heldByA = await enterInTurns(fleet, ip, 4, 1);
    expect(heldByA).toEqual([0, 0]);
    // A lets two go; B asks again (at most once per sync interval) and gets them, no more.
    a!.member.connections.leave(ip, performance.now());
    a!.member.connections.leave(ip, performance.now());
    let admittedToB = 0;
    await waitFor(
      async () => {
        if (b!.member.connections.enter(ip, 4, performance.now()) !== FleetVerdict.REFUSED) admittedToB++;
        await fleet.settle();
        return admittedToB === 2;
      },
      3000,
      "B admitted twice after two of A's connections left",
    );
    for (let i = 0; i < 5; i++) {
      expect(b!.member.connections.enter(ip, 4, performance.now())).toBe(FleetVerdict.REFUSED);
      await fleet.settle();
    }
  });

  test("a holder that dies (no goodbye) stops counting after its heartbeats lapse", async () => {
    const keyPrefix = prefix();
    await using survivor = await startMembers(1, redis.url, { fleet: { key_prefix: keyPrefix } });
    const doomed = await startMembers(1, redis.url, { fleet: { key_prefix: keyPrefix } });
    await waitUntilJoined(survivor, 2);
    const ip = "203.0.113.11";
    // The survivor knows the address (one connection); the doomed holder takes the other two.
    expect(survivor.members[0]!.member.connections.enter(ip, 3, performance.now())).toBe(FleetVerdict.ADMITTED);
    await survivor.settle();
    for (let i = 0; i < 4; i++) {
      doomed.members[0]!.member.connections.enter(ip, 3, performance.now());
      await doomed.settle();
    }
    await survivor.settle();
    await waitFor(
      async () => {
        const verdict = survivor.members[0]!.member.connections.enter(ip, 3, performance.now());
        await survivor.settle();
        return verdict === FleetVerdict.REFUSED;
      },
      2000,
      "the survivor to see the fleet full",
    );
    // A crash: the link closes with nothing given back.
    doomed.members[0]!.member.link.close();
    await waitFor(
      async () => {
        const verdict = survivor.members[0]!.member.connections.enter(ip, 3, performance.now());
        await survivor.settle();
        return verdict === FleetVerdict.ADMITTED;
      },
      10_000,
      "the dead holder's slots to lapse",
    );
    await doomed.stop();
  });

  test("a burst of connections after a quiet spell is admitted while the address is far from its limit", async () => {
    await using fleet = await startMembers(3, redis.url, { fleet: { key_prefix: prefix() } });
    await waitUntilJoined(fleet);
    const { member } = fleet.members[0]!;
    const ip = "203.0.113.14";
    // One connection open: the holder has heard from the fleet about the address (and keeps a spare).
    expect(member.connections.enter(ip, 100, performance.now())).toBe(FleetVerdict.ADMITTED);
    await fleet.settle();
    // Later than a sync interval (20 ms here) after that answer, a browser opens six connections at once: the fleet
    // had 98 slots free for three holders, so each holder may admit its part of them before it hears back.
    const laterMs = performance.now() + 1000;
    const verdicts = Array.from({ length: 6 }, () => member.connections.enter(ip, 100, laterMs));
    expect(verdicts.filter((verdict) => verdict === FleetVerdict.REFUSED)).toHaveLength(0);
    await fleet.settle();
    expect(Object.values(await recorded(fleet.members[0]!.member.keyPrefix, ip)).reduce((a, b) => a + b, 0)).toBe(8);
  });

  test("while Redis is away: local defers to the instance's own count, deny refuses beyond the slots leased", async () => {
    await using local = await startMembers(1, "redis://127.0.0.1:1", {});
    expect(local.members[0]!.member.connections.enter("203.0.113.12", 2, 0)).toBe(FleetVerdict.LOCAL);
    await using deny = await startMembers(1, "redis://127.0.0.1:1", { fleet: { on_redis_down: "deny" } });
    expect(deny.members[0]!.member.connections.enter("203.0.113.12", 2, 0)).toBe(FleetVerdict.REFUSED);
    await using allow = await startMembers(1, "redis://127.0.0.1:1", { fleet: { on_redis_down: "allow" } });
    expect(allow.members[0]!.member.connections.enter("203.0.113.12", 2, 0)).toBe(FleetVerdict.ADMITTED);
    expect(local.counters.totals().fallbackDecisions).toBe(1);
  });

  test("FLUSHALL (Redis lost its state): every holder writes its open connections again", async () => {
    const keyPrefix = prefix();
    await using fleet = await startMembers(1, redis.url, { fleet: { key_prefix: keyPrefix } });
    await waitUntilJoined(fleet);
    const { member, counters } = fleet.members[0]!;
    for (let i = 0; i < 2; i++) {
      member.connections.enter("203.0.113.13", 10, performance.now());
      await fleet.settle();
    }
    await redis.client.send("FLUSHALL", []);
    await waitFor(
      async () => Object.values(await recorded(keyPrefix, "203.0.113.13")).some((slots) => slots >= 2),
      3000,
      "the holder's record to be written again",
    );
    expect(counters[FleetField.redisErrors]).toBe(0);
  });
});
