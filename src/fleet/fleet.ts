// One thread's part of the fleet (fleet.redis_url set): its member, the fleet's counters, and, in the main thread, the
// instance's statistics.
//
// createFleet runs where the thread's context is built (src/context.ts), before anything listens: the member it
// makes gives admission its stores, and start() connects it (bounded) before the thread admits anything, so the
// first request is already counted fleet-wide (or, Redis being unavailable, by fleet.on_redis_down). The main thread
// creates the counters every thread then claims a row of; once its public port is known it publishes the
// instance's statistics under fleet.instance_id (hostname:port by default).
import { hostname } from "node:os";
import type { Config } from "../config/schema.ts";
import type { GaugeRegistry, ServerContext } from "../context.ts";
import type { Logger } from "../log.ts";
import type { LatencyHistogram } from "../stats/histogram.ts";
import { FleetCounters } from "./counters.ts";
import type { FleetView } from "./fleet-snapshot.ts";
import { FleetMember } from "./member.ts";
import { FleetStatsPublisher, readFleetStats } from "./stats-publisher.ts";

/** What the admin listener needs of the fleet: its statistics, read from Redis on demand. */
export interface FleetStatsSource {
  /** Rejects (with a reason for people) while Redis is unavailable. */
  read(): Promise<{ view: FleetView; histogram: LatencyHistogram }>;
  /** Publishes this instance's statistics now, besides every stats.interval_s (resolves when sent or failed). */
  publishNow(): Promise<void>;
}

export interface Fleet extends FleetStatsSource {
  /** This thread's member: admission's stores (AdmissionStores). */
  readonly member: FleetMember;
  /** Every thread's fleet counters (the buffer goes to the I/O threads with the other shared resources). */
  readonly counters: FleetCounters;
  /** Connects (bounded by fleet.redis_timeout_ms; an unavailable Redis is logged and retried) and starts ticking. */
  start(): Promise<void>;
  /** Main thread: starts publishing this instance's statistics (once the public port is known). */
  publish(context: ServerContext, port: number): void;
  /** stats.interval_s changed (a reload). */
  reschedule(statsIntervalSeconds: number): void;
  /** Withdraws the statistics, gives leases and slots back, closes the link. */
  stop(): Promise<void>;
}

/**
 * This thread's part of the fleet, or null when fleet.redis_url is empty. `countersBuffer`: null in the main thread
 * (which creates the counters), else the main thread's (an I/O thread). Registers the "fleet" gauge group.
 */
export function createFleet(
  config: Config,
  logger: Logger,
  gauges: GaugeRegistry,
  countersBuffer: SharedArrayBuffer | null,
): Fleet | null {
  if (config.fleet.redis_url === "") return null;
  const counters = countersBuffer === null ? FleetCounters.create() : FleetCounters.attach(countersBuffer);
  const { row, index } = counters.claimRow();
  const member = new FleetMember({ fleet: config.fleet, logger, counters: row, threadIndex: index });
  gauges.set("fleet", () => fleetGauges(counters));
  let publisher: FleetStatsPublisher | null = null;
  return {
    member,
    counters,
    start: () => member.start(),
    publish(context, port) {
      const instanceId = config.fleet.instance_id || `${hostname()}:${port}`;
      publisher = new FleetStatsPublisher({
        link: member.link,
        context,
        instanceId,
        keyPrefix: config.fleet.key_prefix,
      });
      publisher.reschedule(context.config.stats.interval_s);
    },
    reschedule(statsIntervalSeconds) {
      publisher?.reschedule(statsIntervalSeconds);
    },
    async publishNow() {
      await publisher?.publish();
    },
    async read() {
      if (!member.link.up) throw new Error("Redis is unavailable (see hps_fleet_redis_up and the log)");
      return await readFleetStats(member.link, config.fleet.key_prefix);
    },
    async stop() {
      await publisher?.stop();
      await member.stop();
    },
  };
}

/** The "fleet" gauge group: every thread's counters (src/fleet/counters.ts), the round trip in seconds. */
function fleetGauges(counters: FleetCounters): Record<string, number> {
  const { roundTripMicros, ...rest } = counters.totals();
  return { ...rest, redisRoundTripSeconds: roundTripMicros / 1e6 };
}
