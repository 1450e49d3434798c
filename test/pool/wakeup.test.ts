// Pool wake-ups under sustained load over real sockets: a worker never sleeps through tasks put in its ring.
import { expect, test } from "bun:test";
import { parseLoadArgs } from "../../src/client/options.ts";
import { runLoad } from "../../src/client/run.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { testConfig, waitFor } from "../helpers/common.ts";

// A wake-up for a task the worker had already taken used to land between its last look at the ring and its wait:
// the wait then began with the sleeping flag cleared, the pool never notified that worker again, and every task
// later put in its ring stayed there (no timeout either: pool.task_timeout_ms counts from when a task starts).
// It takes a busy pool and a main thread free to wake workers quickly, hence the load runs on client threads.
test("HASH load from 16 connections on client threads: every request is answered, nothing is left in flight", async () => {
  await using server = await startServer(
    testConfig({ server: { protocol: "custom" }, pool: { threads: 2, task_timeout_ms: 5000 } }),
  );
  const options = parseLoadArgs([
    `hps://127.0.0.1:${server.port}`,
    "--opcode",
    "hash",
    "-s",
    "64",
    "-c",
    "16",
    "-t",
    "2",
    "-d",
    "2s",
    "--timeout",
    "2s",
  ]);
  if (options === null) throw new Error("load options did not parse");
  const report = await runLoad(options);
  const tcpGauges = server.context.gauges.get("tcp");
  if (tcpGauges === undefined) throw new Error("the tcp gauge group is missing");
  // The load stops with requests still out; those are answered within moments, unless a worker sleeps through them.
  const settled = await waitFor(() => tcpGauges().inFlight === 0, 3000, "every pool task answered").then(
    () => true,
    () => false,
  );
  expect({ settled, inFlight: tcpGauges().inFlight, timeouts: report.errors.timeout }).toEqual({
    settled: true,
    inFlight: 0,
    timeouts: 0,
  });
  expect(report.requests.ok).toBeGreaterThan(1000);
  const stats = server.stats;
  expect(stats.total(Counter.poolCompleted)).toBe(stats.total(Counter.poolSubmitted));
}, 15_000);
