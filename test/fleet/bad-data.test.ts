// Bad input from Redis never crashes the server: keys of the wrong type or with impossible values are replaced, a key
// deleted while its lease is out is simply written again, and limits keep working.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FleetVerdict } from "../../src/net/connection-gate.ts";
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
const prefix = () => `b${++prefixes}:`;

/** Takes `count` times from the first member, waiting for the fleet's answer after each; returns how many it admitted. */
async function takeSettled(fleet: TestFleet, key: string, count: number): Promise<number> {
  let admitted = 0;
  for (let i = 0; i < count; i++) {
    if (fleet.members[0]!.limiter.take(key, performance.now()) === 0) admitted++;
    await fleet.settle();
  }
  return admitted;
}

describe("bad data in Redis", () => {
  test("rate keys of the wrong type or with impossible values are replaced; the limit holds", async () => {
    const keyPrefix = prefix();
    const send = (command: string, args: string[]) => redis.client.send(command, args);
    await send("RPUSH", [`${keyPrefix}rate:192.0.2.10`, "not", "a", "number"]);
    await send("HSET", [`${keyPrefix}rate:192.0.2.11`, "field", "1"]);
    await send("SET", [`${keyPrefix}rate:192.0.2.12`, "garbage"]);
    await send("SET", [`${keyPrefix}rate:192.0.2.13`, "1e300"]);
    await send("SET", [`${keyPrefix}rate:192.0.2.14`, "nan"]);
    await using fleet = await startMembers(1, redis.url, {
      rate_limit: { requests: 5, window_s: 60, burst: 0 },
      fleet: { key_prefix: keyPrefix },
    });
    await waitUntilJoined(fleet);
    for (const ip of ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"]) {
      expect(await takeSettled(fleet, ip, 8)).toBe(5);
      expect(await send("TYPE", [`${keyPrefix}rate:${ip}`])).toBe("string");
    }
    const totals = fleet.counters.totals();
    expect(totals.repairedKeys).toBe(5);
    expect(totals.redisErrors).toBe(0);
    expect(totals.redisUp).toBe(1);
  });

  test("a holders key and connection keys of the wrong type are replaced", async () => {
    const keyPrefix = prefix();
    const send = (command: string, args: string[]) => redis.client.send(command, args);
    await send("SET", [`${keyPrefix}holders`, "oops"]);
    await send("SET", [`${keyPrefix}conn:192.0.2.20`, "oops"]);
    await send("HSET", [`${keyPrefix}conn:192.0.2.21`, "ghost#1", "-5", "ghost#2", "many"]);
    await using fleet = await startMembers(1, redis.url, { fleet: { key_prefix: keyPrefix } });
    await waitUntilJoined(fleet);
    const { connections } = fleet.members[0]!.member;
    for (const ip of ["192.0.2.20", "192.0.2.21"]) {
      let admitted = 0;
      for (let i = 0; i < 6; i++) {
        if (connections.enter(ip, 3, performance.now()) !== FleetVerdict.REFUSED) admitted++;
        await fleet.settle();
      }
      expect(admitted).toBe(3);
      expect(await send("TYPE", [`${keyPrefix}conn:${ip}`])).toBe("hash");
    }
    expect(await send("TYPE", [`${keyPrefix}holders`])).toBe("zset");
    const totals = fleet.counters.totals();
    expect(totals.repairedKeys).toBe(3);
    expect(totals.redisErrors).toBe(0);
  });

  test("a rate key deleted while its lease is out: the lease is still spent, the bucket starts over", async () => {
    const keyPrefix = prefix();
    await using fleet = await startMembers(2, redis.url, {
      rate_limit: { requests: 10, window_s: 60, burst: 0 },
      fleet: { key_prefix: keyPrefix },
    });
    await waitUntilJoined(fleet);
    const [a, b] = fleet.members;
    const takeFrom = async (member: typeof a, count: number) => {
      let admitted = 0;
      for (let i = 0; i < count; i++) {
        if (member!.limiter.take("192.0.2.30", performance.now()) === 0) admitted++;
        await fleet.settle();
      }
      return admitted;
    };
    // A leases its share (5) and spends 2; B leases the other 5.
    expect(await takeFrom(a, 2)).toBe(2);
    expect(await takeFrom(b, 1)).toBe(1);
    await redis.client.send("DEL", [`${keyPrefix}rate:192.0.2.30`]);
    // The leases in hand (A 4, B 3) are still spent, and the fresh bucket grants again: the deleted state is lost,
    // no more (at most the leases plus one bucket).
    const after = (await takeFrom(a, 20)) + (await takeFrom(b, 20));
    expect(after).toBeGreaterThan(7);
    expect(after).toBeLessThanOrEqual(17);
    const totals = fleet.counters.totals();
    expect(totals.redisErrors).toBe(0);
    expect(totals.redisUp).toBe(1);
  });

  test("a connection key deleted while slots are out is written again with the next change", async () => {
    const keyPrefix = prefix();
    await using fleet = await startMembers(2, redis.url, { fleet: { key_prefix: keyPrefix } });
    await waitUntilJoined(fleet);
    const [a, b] = fleet.members;
    const ip = "192.0.2.31";
    // B holds one connection; A takes the other two of the address's three.
    expect(b!.member.connections.enter(ip, 3, performance.now())).toBe(FleetVerdict.ADMITTED);
    await fleet.settle();
    for (let i = 0; i < 4; i++) {
      a!.member.connections.enter(ip, 3, performance.now());
      await fleet.settle();
    }
    await redis.client.send("DEL", [`${keyPrefix}conn:${ip}`]);
    // A connection of A's closes and another opens: A writes its record (2) again.
    a!.member.connections.leave(ip, performance.now());
    a!.member.connections.enter(ip, 3, performance.now());
    await fleet.settle();
    const records = (await redis.client.send("HVALS", [`${keyPrefix}conn:${ip}`])) as string[];
    expect(records.map(Number)).toEqual([2]);
    // B's next newcomer is recorded beside it, and from then on the address is full for B.
    b!.member.connections.enter(ip, 3, performance.now());
    await fleet.settle();
    for (let i = 0; i < 3; i++) {
      expect(b!.member.connections.enter(ip, 3, performance.now())).toBe(FleetVerdict.REFUSED);
      await fleet.settle();
    }
    expect(fleet.counters.totals().redisErrors).toBe(0);
  });
});
