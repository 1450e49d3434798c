// The link to Redis on its own: a call's bound is about Redis, not about this thread being busy.
import { expect, test } from "bun:test";
import { FleetField } from "../../src/fleet/counters.ts";
import { RedisLink } from "../../src/fleet/redis-link.ts";
import { HEARTBEAT } from "../../src/fleet/scripts.ts";
import { startRedis } from "../helpers/redis.ts";

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
