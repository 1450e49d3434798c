// The link to Redis on its own: a call's bound is about Redis, not about this thread being busy.
import { describe, expect, test } from "bun:test";
import { FleetField } from "../../src/fleet/counters.ts";
import { RedisLink } from "../../src/fleet/redis-link.ts";
import { HEARTBEAT } from "../../src/fleet/scripts.ts";
import { freePort, startRedis } from "../helpers/redis.ts";

test("a thread busy past the timeout (a long GC pause, a starved CPU) does not take a healthy link down", async () => {
  await using redis = await startRedis();
  const counters = new Float64Array(16);
  const lines: string[] = [];
  const link = new RedisLink({
    url: redis.url,
    timeoutMs: 100,
    logger: { warn: (line) => lines.push(line), info: (line) => lines.push(line) },
    counters,
    whileDown: "each instance limits alone",
  });
  await link.start();
  expect(link.up).toBe(true);
  const failures: string[] = [];
  for (let i = 0; i < 10; i++) {
    const call = link.run(HEARTBEAT, ["busy:holders"], ["me", "1000"]).catch((error: Error) => {
      failures.push(error.message);
    });
    // Redis answers within a millisecond, but this thread reads the answer only after 250 ms of other work, when the
    // call's timer is already due too.
    const busyUntilMs = performance.now() + 250;
    while (performance.now() < busyUntilMs) {}
    await call;
  }
  link.close();
  expect(failures).toEqual([]);
  expect(lines).toEqual([]);
  expect(counters[FleetField.redisErrors]).toBe(0);
  expect(counters[FleetField.outages]).toBe(0);
});

describe("a connection Redis does not accept says why in the outage's log line", () => {
  /** The reason the link logs for `url` (a first connection attempt that fails). */
  async function outageReason(url: string): Promise<string> {
    const lines: string[] = [];
    const link = new RedisLink({
      url,
      timeoutMs: 1000,
      logger: { warn: (line) => lines.push(line), info: (line) => lines.push(line) },
      counters: new Float64Array(16),
      whileDown: "each instance limits alone",
    });
    try {
      await link.start();
      expect(link.up).toBe(false);
      expect(lines).toHaveLength(1);
      return lines[0]!;
    } finally {
      link.close();
    }
  }

  test("a password Redis does not take, none where it wants one, a host or a port that is not there", async () => {
    await using redis = await startRedis({ password: "s3cr@t:x/y" });
    // The password (with characters a URL must escape) is right: the link comes up.
    const counters = new Float64Array(16);
    const link = new RedisLink({
      url: redis.url,
      timeoutMs: 1000,
      logger: { warn() {}, info() {} },
      counters,
      whileDown: "",
    });
    await link.start();
    expect(link.up).toBe(true);
    link.close();
    expect(await outageReason(`redis://:wrong@127.0.0.1:${redis.port}`)).toContain(
      'cannot connect: Redis answered AUTH with "WRONGPASS',
    );
    expect(await outageReason(`redis://127.0.0.1:${redis.port}`)).toContain(
      'cannot connect: Redis answered PING with "NOAUTH Authentication required.": check the user and password',
    );
    // The password never reaches the log.
    expect(await outageReason(`redis://:wrong@127.0.0.1:${redis.port}`)).not.toContain("wrong@");
    expect(await outageReason("redis://no-such-host.invalid:6379")).toContain(
      'cannot connect: host "no-such-host.invalid" not found',
    );
    const closedPort = await freePort();
    expect(await outageReason(`redis://127.0.0.1:${closedPort}`)).toContain(
      `cannot connect: connection refused by 127.0.0.1:${closedPort}`,
    );
    expect(await outageReason(`rediss://127.0.0.1:${redis.port}`)).toContain(
      `cannot connect: no TLS handshake with 127.0.0.1:${redis.port} (is it a TLS port?)`,
    );
  }, 30_000);
});
