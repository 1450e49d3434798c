// Each instance publishes its statistics to Redis every stats.interval_s with a TTL; any instance reads the fleet's.
//
// The entry of an instance that stops publishing (a crash, a partition) expires after its TTL and drops out of the
// view; one that stops cleanly withdraws its entry at once.
import type { ServerContext } from "../context.ts";
import { SnapshotSampler } from "../stats/snapshot.ts";
import type { LatencyHistogram } from "../stats/histogram.ts";
import {
  decodeSnapshot,
  encodeSnapshot,
  mergeFleet,
  type FleetView,
  type PublishedSnapshot,
} from "./fleet-snapshot.ts";
import type { RedisLink } from "./redis-link.ts";
import { STATS_PUBLISH, STATS_READ } from "./scripts.ts";

/** How often an instance publishes when stats.interval_s is 0 (no periodic report): the fleet view still needs data. */
export const DEFAULT_PUBLISH_INTERVAL_S = 10;
/** An entry lives this many publish intervals: one missed publish does not drop an instance. */
const TTL_INTERVALS = 3;

export interface PublisherOptions {
  readonly link: RedisLink;
  readonly context: ServerContext;
  /** fleet.instance_id, or hostname:port. */
  readonly instanceId: string;
  readonly keyPrefix: string;
}

/** Seconds between publishes for stats.interval_s. */
export function publishIntervalSeconds(statsIntervalSeconds: number): number {
  return statsIntervalSeconds > 0 ? statsIntervalSeconds : DEFAULT_PUBLISH_INTERVAL_S;
}

export class FleetStatsPublisher {
  private readonly options: PublisherOptions;
  private readonly sampler: SnapshotSampler;
  private readonly bootId = crypto.randomUUID();
  private readonly indexKey: string;
  private readonly entryKey: string;
  private previousLatency: Float64Array | null = null;
  private timer: Timer | null = null;
  private intervalMs: number;
  private warnedDuplicate = false;
  private publishing: Promise<void> | null = null;

  constructor(options: PublisherOptions) {
    this.options = options;
    this.sampler = new SnapshotSampler(options.context);
    this.indexKey = `${options.keyPrefix}stats`;
    this.entryKey = `${options.keyPrefix}stats:${options.instanceId}`;
    this.intervalMs = publishIntervalSeconds(options.context.config.stats.interval_s) * 1000;
  }

  /** Publishes now and then every `statsIntervalSeconds` (0 = DEFAULT_PUBLISH_INTERVAL_S); a reload calls it again. */
  reschedule(statsIntervalSeconds: number): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.intervalMs = publishIntervalSeconds(statsIntervalSeconds) * 1000;
    this.timer = setInterval(() => void this.publish(), this.intervalMs);
    void this.publish();
  }

  /** One publish (skipped while Redis is unavailable: the link counts and logs that). Never rejects. */
  publish(): Promise<void> {
    this.publishing ??= this.publishOnce().finally(() => {
      this.publishing = null;
    });
    return this.publishing;
  }

  /** Stops publishing and withdraws this instance's entry (bounded by the link's timeout). */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.publishing;
    if (!this.options.link.up) return;
    await this.options.link
      .run(STATS_PUBLISH, [this.indexKey, this.entryKey], [this.options.instanceId, "0", "", this.bootId])
      .catch(() => {});
  }

  private async publishOnce(): Promise<void> {
    const { link, context, instanceId } = this.options;
    if (!link.up) return;
    const snapshot = this.sampler.take();
    const latency = context.stats.latency().counts;
    const previous = this.previousLatency;
    const interval = new Float64Array(latency.length);
    for (let i = 0; i < latency.length; i++) interval[i] = Math.max(0, latency[i]! - (previous?.[i] ?? 0));
    this.previousLatency = latency;
    const ttlMs = TTL_INTERVALS * this.intervalMs;
    try {
      const owner = await link.run(
        STATS_PUBLISH,
        [this.indexKey, this.entryKey],
        [instanceId, String(ttlMs), encodeSnapshot(snapshot, latency, interval), this.bootId],
      );
      if (typeof owner === "string" && !this.warnedDuplicate) {
        this.warnedDuplicate = true;
        context.logger.warn(
          `fleet: another instance publishes its statistics as "${instanceId}" too; give each instance its own fleet.instance_id`,
        );
      }
    } catch {
      // Counted and logged by the link.
    }
  }
}

/** The fleet's statistics now, and the merged latency histogram; rejects when Redis is unavailable. */
export async function readFleetStats(
  link: RedisLink,
  keyPrefix: string,
): Promise<{ view: FleetView; histogram: LatencyHistogram }> {
  const reply = await link.run(STATS_READ, [`${keyPrefix}stats`], [`${keyPrefix}stats:`]);
  const values = Array.isArray(reply) ? reply : [];
  const redisNowMs = Number(values[0]);
  const entries: Array<{ id: string; ageSeconds: number; published: PublishedSnapshot }> = [];
  let unreadable = 0;
  for (let i = 1; i + 2 < values.length; i += 3) {
    const id = String(values[i]);
    const publishedAtMs = Number(values[i + 1]);
    const published = typeof values[i + 2] === "string" ? decodeSnapshot(values[i + 2] as string) : null;
    if (published === null || !Number.isFinite(publishedAtMs)) {
      unreadable++;
      continue;
    }
    const ageSeconds = Number.isFinite(redisNowMs) ? Math.max(0, (redisNowMs - publishedAtMs) / 1000) : 0;
    entries.push({ id, ageSeconds, published });
  }
  return mergeFleet(entries, unreadable, Date.now());
}
