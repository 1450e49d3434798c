// Fleet statistics: each instance publishes its snapshot with a TTL; the fleet's view sums counters and gauges and
// merges latency histograms exactly; an instance that stops publishing drops out.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FleetCounters } from "../../src/fleet/counters.ts";
import { decodeSnapshot, encodeSnapshot, mergeFleet } from "../../src/fleet/fleet-snapshot.ts";
import { FleetMember } from "../../src/fleet/member.ts";
import { FleetStatsPublisher, readFleetStats } from "../../src/fleet/stats-publisher.ts";
import { Logger } from "../../src/log.ts";
import { LatencyHistogram } from "../../src/stats/histogram.ts";
import { snapshot } from "../../src/stats/snapshot.ts";
import { Counter } from "../../src/stats/stats.ts";
import { testContext, waitFor } from "../helpers/common.ts";
import { startRedis, type RedisServer } from "../helpers/redis.ts";

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

let prefixes = 0;
const prefix = () => `s${++prefixes}:`;

/** An instance's statistics (a context of its own) with a link to Redis, publishing as `id`. */
async function instance(id: string, keyPrefix: string, statsIntervalSeconds = 0) {
  const context = testContext({
    fleet: { redis_url: redis.url, key_prefix: keyPrefix, instance_id: id },
    stats: { interval_s: statsIntervalSeconds },
  });
  const member = new FleetMember({
    fleet: context.config.fleet,
    logger: Logger.silent(),
    counters: FleetCounters.create().claimRow().row,
    threadIndex: 0,
  });
  await member.start();
  const publisher = new FleetStatsPublisher({ link: member.link, context, instanceId: id, keyPrefix });
  return {
    context,
    member,
    publisher,
    async [Symbol.asyncDispose]() {
      await publisher.stop();
      await member.stop();
    },
  };
}

describe("fleet statistics", () => {
  test("the fleet's view sums counters and merges latency histograms bucket by bucket", async () => {
    const keyPrefix = prefix();
    await using a = await instance("a:1", keyPrefix);
    await using b = await instance("b:2", keyPrefix);
    // a: 300 fast requests (100 µs); b: 100 slow ones (10 ms). An average of the two p50s would say ~5 ms.
    for (let i = 0; i < 300; i++) a.context.stats.requestDone(100);
    for (let i = 0; i < 100; i++) b.context.stats.requestDone(10_000);
    a.context.stats.add(Counter.bytesWritten, 1000);
    b.context.stats.add(Counter.bytesWritten, 234);
    a.context.gauges.set("pool", () => ({ queued: 2 }));
    b.context.gauges.set("pool", () => ({ queued: 5 }));
    await Promise.all([a.publisher.publish(), b.publisher.publish()]);
    const { view, histogram } = await readFleetStats(a.member.link, keyPrefix);
    expect(view.instances.map((entry) => entry.id)).toEqual(["a:1", "b:2"]);
    expect(view.total.counters.requests).toBe(400);
    expect(view.total.counters.bytesWritten).toBe(1234);
    expect(view.total.counters.requestMicrosMax).toBe(10_000);
    expect(view.total.gauges.pool?.queued).toBe(7);
    expect(view.unreadable).toBe(0);
    // Exactly the histogram of all 400 requests.
    const expected = new LatencyHistogram();
    for (let i = 0; i < 300; i++) expected.record(100);
    for (let i = 0; i < 100; i++) expected.record(10_000);
    expect(Array.from(histogram.counts)).toEqual(Array.from(expected.counts));
    expect(view.total.latency.count).toBe(400);
    expect(view.total.latency.p50Micros).toBe(expected.percentile(50));
    expect(view.total.latency.p90Micros).toBe(Math.min(expected.percentile(90), 10_000));
    for (const entry of view.instances) expect(entry.ageSeconds).toBeLessThan(5);
  });

  test("an instance that stops publishing drops out after its TTL; one that stops cleanly at once", async () => {
    const keyPrefix = prefix();
    // stats.interval_s = 0.2: the entry lives three intervals (600 ms).
    const crashed = await instance("crashed:1", keyPrefix, 0.2);
    await using clean = await instance("clean:2", keyPrefix, 0.2);
    await using reader = await instance("reader:3", keyPrefix);
    crashed.publisher.reschedule(0.2);
    clean.publisher.reschedule(0.2);
    await waitFor(
      async () => (await readFleetStats(reader.member.link, keyPrefix)).view.instances.length === 2,
      3000,
      "both instances in the view",
    );
    // A crash: nothing published any more, nothing withdrawn.
    await crashed.member.stop();
    const crashedAtMs = Date.now();
    await waitFor(
      async () => (await readFleetStats(reader.member.link, keyPrefix)).view.instances.length === 1,
      3000,
      "the crashed instance to expire",
    );
    expect(Date.now() - crashedAtMs).toBeGreaterThan(200);
    await clean.publisher.stop();
    expect((await readFleetStats(reader.member.link, keyPrefix)).view.instances.length).toBe(0);
    await crashed.publisher.stop(); // its timer (Redis is out of its reach: nothing is withdrawn)
  });

  test("an entry that is not a snapshot of this version is left out and counted", async () => {
    const keyPrefix = prefix();
    await using a = await instance("a:1", keyPrefix);
    a.context.stats.requestDone(50);
    await a.publisher.publish();
    const send = (command: string, args: string[]) => redis.client.send(command, args);
    await send("HSET", [`${keyPrefix}stats:junk`, "at", "1", "snapshot", "{not json"]);
    await send("ZADD", [`${keyPrefix}stats`, "99999999999999", "junk"]);
    await send("HSET", [`${keyPrefix}stats:future`, "at", "1", "snapshot", JSON.stringify({ version: 99 })]);
    await send("ZADD", [`${keyPrefix}stats`, "99999999999999", "future"]);
    const { view } = await readFleetStats(a.member.link, keyPrefix);
    expect(view.instances.map((entry) => entry.id)).toEqual(["a:1"]);
    expect(view.unreadable).toBe(2);
    expect(view.total.counters.requests).toBe(1);
  });

  test("two instances publishing under one instance_id are told so in the log", async () => {
    const keyPrefix = prefix();
    const warnings: string[] = [];
    await using a = await instance("same:1", keyPrefix);
    await using b = await instance("same:1", keyPrefix);
    b.context.logger.warn = (message: string) => void warnings.push(message);
    await a.publisher.publish();
    await b.publisher.publish();
    expect(warnings.some((line) => line.includes('publishes its statistics as "same:1"'))).toBe(true);
  });

  test("the fleet's own gauges add up where a sum means something: holders and round trips are not counted twice", () => {
    const published = (fleet: Record<string, number>) => {
      const context = testContext();
      const snap = snapshot(context);
      const latency = context.stats.latency().counts;
      const decoded = decodeSnapshot(encodeSnapshot({ ...snap, gauges: { ...snap.gauges, fleet } }, latency, latency));
      expect(decoded).not.toBeNull();
      return decoded!;
    };
    // Two instances that see the same fleet: four holders, the same outage, their own calls and round trips.
    const a = published({ redisUp: 1, outages: 1, holders: 4, redisCalls: 10, redisRoundTripSeconds: 0.001 });
    const b = published({ redisUp: 0, outages: 1, holders: 4, redisCalls: 5, redisRoundTripSeconds: 0.003 });
    const { view } = mergeFleet(
      [
        { id: "a", ageSeconds: 0, published: a },
        { id: "b", ageSeconds: 0, published: b },
      ],
      0,
      Date.now(),
    );
    expect(view.total.gauges.fleet).toEqual({
      redisUp: 0, // 1 only when every instance's link is up
      outages: 1,
      holders: 4,
      redisCalls: 15,
      redisRoundTripSeconds: 0.003,
    });
  });

  test("encode, decode and merge round-trip a live snapshot", () => {
    const context = testContext();
    context.stats.requestDone(1234);
    const snap = snapshot(context);
    const latency = context.stats.latency().counts;
    const decoded = decodeSnapshot(encodeSnapshot(snap, latency, latency));
    expect(decoded).not.toBeNull();
    const { view, histogram } = mergeFleet([{ id: "x", ageSeconds: 0, published: decoded! }], 0, Date.now());
    expect(Array.from(histogram.counts)).toEqual(Array.from(latency));
    expect(view.total.counters).toEqual(snap.counters);
    expect(decodeSnapshot('{"version":1,"snapshot":{"counters":{"requests":"many"}}}')).toBeNull();
  });
});
