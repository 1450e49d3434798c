// Fleet members in one process (each stands for an I/O thread of an instance), with their counters and log lines.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { FleetCounters } from "../../src/fleet/counters.ts";
import { FleetMember } from "../../src/fleet/member.ts";
import { Logger } from "../../src/log.ts";
import type { AddressRateLimiter } from "../../src/net/rate-limiter.ts";
import { RateLimiter } from "../../src/net/rate-limiter.ts";
import { testConfig, waitFor } from "./common.ts";

export interface TestMember {
  readonly member: FleetMember;
  /** This member's row of counters (index with FleetField). */
  readonly counters: Float64Array;
  /** The fleet's rate limiter (with a RateLimiter of its own behind it), when rate_limit.enabled. */
  readonly limiter: AddressRateLimiter;
}

export interface TestFleet {
  readonly members: TestMember[];
  readonly counters: FleetCounters;
  /** Every line the members logged so far. */
  log(): Promise<string>;
  /** Resolves once every member's queued calls have been answered. */
  settle(): Promise<void>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * `count` members of one fleet on `redisUrl` (fleet.sync_interval_ms 20 and redis_timeout_ms 500 unless overridden),
 * started. Each member
 * gets its own thread index, so only the first logs outages at warn (as the main thread of an instance does).
 */
export async function startMembers(
  count: number,
  redisUrl: string,
  overrides: ConfigOverrides = {},
): Promise<TestFleet> {
  const config = testConfig({
    ...overrides,
    rate_limit: { enabled: true, ...overrides.rate_limit },
    // A generous timeout: on a busy machine a call can wait 100 ms for a CPU; the fault tests set their own.
    fleet: { redis_url: redisUrl, sync_interval_ms: 20, redis_timeout_ms: 500, ...overrides.fleet },
  });
  const directory = mkdtempSync(join(tmpdir(), "hps-fleet-"));
  const logPath = join(directory, "fleet.log");
  const logger = new Logger({ level: "info", file: logPath });
  const counters = FleetCounters.create();
  const members: TestMember[] = [];
  for (let i = 0; i < count; i++) {
    const { row } = counters.claimRow();
    const member = new FleetMember({ fleet: config.fleet, logger, counters: row, threadIndex: i });
    const rate = config.rate_limit;
    const local = new RateLimiter(rate.requests, rate.window_s, rate.burst, rate.max_tracked_ips);
    members.push({ member, counters: row, limiter: member.rateLimiter(local, rate) });
  }
  await Promise.all(members.map(({ member }) => member.start()));
  let stopped = false;
  const fleet: TestFleet = {
    members,
    counters,
    async log() {
      await logger.flush();
      return readFileSync(logPath, "utf8");
    },
    async settle() {
      await Promise.all(members.map(({ member }) => member.settle()));
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(members.map(({ member }) => member.stop()));
      await logger.close();
      rmSync(directory, { recursive: true, force: true });
    },
    [Symbol.asyncDispose]: () => fleet.stop(),
  };
  return fleet;
}

/** Waits until every member's link is up and each knows all `holders` of the fleet. */
export async function waitUntilJoined(fleet: TestFleet, holders = fleet.members.length, timeoutMs = 5000) {
  await waitFor(
    () => fleet.members.every(({ member }) => member.link.up && member.holders >= holders),
    timeoutMs,
    `${holders} holders with their links up`,
  );
}
