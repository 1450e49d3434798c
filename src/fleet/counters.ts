// Fleet counters and gauges of every I/O thread in one SharedArrayBuffer: a row per thread, written by that thread only.
//
// Each thread talks to Redis on its own link (src/fleet/redis-link.ts), so each keeps its own numbers; the admin
// listener (main thread) sums the rows. One writer per row makes a plain Float64 store exact, as in src/stats/stats.ts.

/** Fields of a row. Totals only grow; the others are gauges (read as they are now). */
export const FleetField = {
  /** gauge: 1 while this thread's link to Redis answers, else 0 */
  redisUp: 0,
  /** calls to Redis (and connection attempts) that failed or timed out */
  redisErrors: 1,
  /** times the link went down (one log line each) */
  outages: 2,
  /** requests admitted on credit: before the fleet granted a token, charged to the fleet with the next call */
  creditAdmitted: 3,
  /** rate or connection decisions made by fleet.on_redis_down because Redis was unavailable */
  fallbackDecisions: 4,
  /** gauge: addresses this thread holds rate-limit tokens (or credit) for */
  rateAddresses: 5,
  /** gauge: tokens leased from the fleet and not yet spent */
  leasedTokens: 6,
  /** gauge: addresses this thread holds connection slots for */
  slotAddresses: 7,
  /** gauge: connection slots leased from the fleet (open connections included) */
  leasedSlots: 8,
  /** gauge: lease holders (I/O threads of every instance) alive in the fleet, as last seen */
  holders: 9,
  /** gauge: smoothed round trip of a call to Redis, microseconds */
  roundTripMicros: 10,
  /** keys under fleet.key_prefix found holding a wrong value or type, replaced */
  repairedKeys: 11,
  /** calls to Redis */
  redisCalls: 12,
} as const;
export type FleetFieldName = keyof typeof FleetField;
const FIELD_NAMES = Object.keys(FleetField) as FleetFieldName[];

/**
 * Fields that every thread (and every instance) sees alike, the same Redis and the same fleet: their sum would count
 * one thing several times. redisUp is 1 only when every link is up; an outage is seen by every link (the most any
 * saw); holders is the fleet's count (the largest view); the round trip the slowest. The rest add up. The keys are
 * the fields and the names they are published under (src/fleet/fleet.ts fleetGauges).
 */
const COMBINE: Readonly<Record<string, "min" | "max">> = {
  redisUp: "min",
  outages: "max",
  holders: "max",
  roundTripMicros: "max",
  redisRoundTripSeconds: "max",
};

/** `value` of field `name` combined into what the rows or instances before gave (undefined: none yet). */
export function combineFleetValue(name: string, soFar: number | undefined, value: number): number {
  if (soFar === undefined) return value;
  const rule = COMBINE[name];
  return rule === "min" ? Math.min(soFar, value) : rule === "max" ? Math.max(soFar, value) : soFar + value;
}

const ROW_FLOATS = 16;
/** server.io_threads is at most 64; a row more for safety. */
const MAX_ROWS = 65;
const HEADER_BYTES = 8;

export class FleetCounters {
  readonly buffer: SharedArrayBuffer;
  private readonly header: Int32Array;
  private readonly all: Float64Array;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.header = new Int32Array(buffer, 0, 1);
    this.all = new Float64Array(buffer, HEADER_BYTES);
  }

  static create(): FleetCounters {
    return new FleetCounters(new SharedArrayBuffer(HEADER_BYTES + MAX_ROWS * ROW_FLOATS * 8));
  }

  static attach(buffer: SharedArrayBuffer): FleetCounters {
    return new FleetCounters(buffer);
  }

  /** A row of its own for the calling thread (index it with FleetField), and which row it is (0 = the first claimed). */
  claimRow(): { row: Float64Array; index: number } {
    const index = Math.min(Atomics.add(this.header, 0, 1), MAX_ROWS - 1);
    return { row: new Float64Array(this.buffer, HEADER_BYTES + index * ROW_FLOATS * 8, ROW_FLOATS), index };
  }

  /** Every field over the rows in use, each combined by its rule (combineFleetValue). */
  totals(): Record<FleetFieldName, number> {
    const rows = Math.min(Atomics.load(this.header, 0), MAX_ROWS);
    const result = {} as Record<FleetFieldName, number>;
    for (const name of FIELD_NAMES) {
      const field = FleetField[name];
      let value: number | undefined;
      for (let row = 0; row < rows; row++) value = combineFleetValue(name, value, this.all[row * ROW_FLOATS + field]!);
      result[name] = value ?? 0;
    }
    return result;
  }
}
