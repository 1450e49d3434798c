// The fleet of one instance (fleet.redis_url set): its members (one per I/O thread), its counters, its statistics.
//
// startFleet runs in the main thread before anything listens: the member it makes gives admission its stores, so the
// first request is already counted fleet-wide (or, Redis being unavailable, by fleet.on_redis_down). Each extra I/O
// thread joins with joinFleet and a member of its own. Once the public port is known, the main thread publishes the
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
}

export interface Fleet extends FleetStatsSource {
  /** The main thread's member: admission's stores (AdmissionStores). */
  readonly member: FleetMember;
  /** Every thread's fleet counters, to hand to the I/O threads. */
  readonly counters: FleetCounters;
  /** Starts publishing this instance's statistics (called once the port is bound). */
  publish(context: ServerContext, port: number): void;
  /** stats.interval_s changed (a reload). */
  reschedule(statsIntervalSeconds: number): void;
  /** Withdraws the statistics, gives leases and slots back, closes the link. */
  stop(): Promise<void>;
}

/** The fleet for `config`, or null when fleet.redis_url is empty. Registers the "fleet" gauge group. */
export async function startFleet(config: Config, logger: Logger, gauges: GaugeRegistry): Promise<Fleet | null> {
  if (config.fleet.redis_url === "") return null;
  const counters = FleetCounters.create();
  const member = new FleetMember({ fleet: config.fleet, logger, counters: counters.claimRow(), threadIndex: 0 });
  await member.start();
  gauges.set("fleet", () => fleetGauges(counters));
  let publisher: FleetStatsPublisher | null = null;
  return {
    member,
    counters,
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

/** An extra I/O thread's member of the fleet, counting into the row it claims in `countersBuffer`. */
export async function joinFleet(
  config: Config,
  logger: Logger,
  countersBuffer: SharedArrayBuffer,
  threadIndex: number,
): Promise<FleetMember> {
  const counters = FleetCounters.attach(countersBuffer).claimRow();
  const member = new FleetMember({ fleet: config.fleet, logger, counters, threadIndex });
  await member.start();
  return member;
}

/** The "fleet" gauge group: every thread's counters (src/fleet/counters.ts), the round trip in seconds. */
function fleetGauges(counters: FleetCounters): Record<string, number> {
  const { roundTripMicros, ...rest } = counters.totals();
  return { ...rest, redisRoundTripSeconds: roundTripMicros / 1e6 };
}
