// One thread's place in the fleet: its Redis link, its heartbeat, and the stores it gives admission (src/net).
//
// Every I/O thread of every instance is a lease holder of its own: it keeps its own link, leases and slots, so
// threads never wait on each other. A heartbeat (heartbeatTimes) keeps the holder alive in Redis and tells it how many
// holders there are, which sets each one's fair share of a burst or a connection budget. A holder that stops (a crash,
// a partition) counts as gone after a few missed heartbeats, and its connection slots with it.
import { hostname } from "node:os";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { AdmissionStores } from "../net/admission.ts";
import type { AddressRateLimiter } from "../net/rate-limiter.ts";
import { FleetConnectionBudget } from "./connection-slots.ts";
import { FleetField } from "./counters.ts";
import { FleetRateLimiter, type LeaseContext, type OnRedisDown } from "./rate-leases.ts";
import { RedisLink } from "./redis-link.ts";
import { HEARTBEAT } from "./scripts.ts";

/** How often a holder says it is alive: five sync intervals, within these bounds. */
const HEARTBEAT_MIN_MS = 100;
const HEARTBEAT_MAX_MS = 1000;
/** Heartbeats a holder may miss before it counts as gone (its connection slots no longer count). */
const HEARTBEATS_MISSED = 5;

/** Milliseconds between a holder's heartbeats, and after its last one until it counts as gone. */
export function heartbeatTimes(fleet: Config["fleet"]): { intervalMs: number; ttlMs: number } {
  const intervalMs = Math.min(HEARTBEAT_MAX_MS, Math.max(HEARTBEAT_MIN_MS, 5 * fleet.sync_interval_ms));
  // Never shorter than a few timeouts: a holder is not declared dead for one slow answer.
  return { intervalMs, ttlMs: Math.max(HEARTBEATS_MISSED * intervalMs, 4 * fleet.redis_timeout_ms) };
}

export interface FleetMemberOptions {
  readonly fleet: Config["fleet"];
  readonly logger: Logger;
  /** This thread's row of fleet counters. */
  readonly counters: Float64Array;
  /** Which thread (0 = the main thread): names the holder; only the main thread logs outages (they share Redis). */
  readonly threadIndex: number;
}

/** What each on_redis_down mode means for traffic, for the outage's log line. */
const WHILE_DOWN: Record<OnRedisDown, string> = {
  local: "rate limits and connections per address are counted by each instance alone (fleet.on_redis_down = local)",
  allow:
    "requests are not rate limited and connections only limited by limits.max_connections (fleet.on_redis_down = allow)",
  deny: "requests and connections beyond the tokens and slots already leased are refused (fleet.on_redis_down = deny)",
};

export class FleetMember implements LeaseContext, AdmissionStores {
  readonly link: RedisLink;
  readonly counters: Float64Array;
  holders = 1;
  readonly keyPrefix: string;
  readonly syncIntervalMs: number;
  readonly onRedisDown: OnRedisDown;
  /** Unique per thread and start: instance, process, thread, a random part. */
  readonly holderId: string;
  readonly connections: FleetConnectionBudget;
  private readonly holdersKey: string;
  private limiter: FleetRateLimiter | null = null;
  private tickTimer: Timer | null = null;
  private heartbeatTimer: Timer | null = null;
  private heartbeats = 0;
  private readonly heartbeatMs: number;
  private readonly holderTtlMs: number;
  private stopping: Promise<void> | null = null;

  constructor(options: FleetMemberOptions) {
    const fleet = options.fleet;
    this.counters = options.counters;
    this.keyPrefix = fleet.key_prefix;
    this.syncIntervalMs = fleet.sync_interval_ms;
    this.onRedisDown = fleet.on_redis_down;
    this.holdersKey = `${fleet.key_prefix}holders`;
    ({ intervalMs: this.heartbeatMs, ttlMs: this.holderTtlMs } = heartbeatTimes(fleet));
    const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
    this.holderId = `${fleet.instance_id || hostname()}#${process.pid}.${options.threadIndex}.${random}`;
    const logger = options.logger;
    this.link = new RedisLink({
      url: fleet.redis_url,
      timeoutMs: fleet.redis_timeout_ms,
      // The threads share one Redis: the main thread speaks for all of them.
      logger: options.threadIndex === 0 ? logger : quietLogger(logger),
      counters: this.counters,
      whileDown: WHILE_DOWN[fleet.on_redis_down],
      probe: () => this.heartbeat(),
      onUp: () => {
        this.limiter?.onLinkUp();
        this.connections.resync();
      },
    });
    this.connections = new FleetConnectionBudget(this, this.holderId, this.holdersKey);
  }

  /** Connects (bounded by fleet.redis_timeout_ms; an unavailable Redis is logged and retried) and starts ticking. */
  async start(): Promise<void> {
    await this.link.start();
    this.tickTimer = setInterval(() => this.tick(), this.syncIntervalMs);
    this.heartbeatTimer = setInterval(() => {
      if (this.link.up) void this.heartbeat().catch(() => {}); // a failure took the link down; it retries
    }, this.heartbeatMs);
  }

  /** AdmissionStores: the fleet's limiter over `local`; a limiter made before (an older configuration) gives its leases back. */
  rateLimiter(local: AddressRateLimiter, rate: Config["rate_limit"]): AddressRateLimiter {
    const previous = this.limiter;
    this.limiter = new FleetRateLimiter(
      this,
      {
        requests: rate.requests,
        windowSeconds: rate.window_s,
        burst: rate.burst,
        maxTrackedIps: rate.max_tracked_ips,
      },
      local,
    );
    if (previous !== null) void previous.close();
    return this.limiter;
  }

  /** Resolves once the calls queued now have been answered (or failed). */
  async settle(): Promise<void> {
    await Promise.all([this.limiter?.settle(), this.connections.settle()]);
  }

  /** Gives leases and slots back, leaves the holders, closes the link. Bounded by the link's timeout per call. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.tickTimer !== null) clearInterval(this.tickTimer);
      if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
      await Promise.all([this.limiter?.close(), this.connections.close()]);
      if (this.link.up) await this.link.run(HEARTBEAT, [this.holdersKey], [this.holderId, "0"]).catch(() => {});
      this.link.close();
    })();
    return this.stopping;
  }

  private tick(): void {
    const nowMs = performance.now();
    this.limiter?.tick(nowMs);
    this.connections.tick(nowMs);
  }

  /** Says this holder is alive; learns how many are. A holder Redis did not know (it lost its state) writes its slots again. */
  private async heartbeat(): Promise<void> {
    const reply = await this.link.run(HEARTBEAT, [this.holdersKey], [this.holderId, String(this.holderTtlMs)]);
    const values = Array.isArray(reply) ? reply : [];
    this.holders = Math.max(1, Number(values[0]) || 1);
    this.counters[FleetField.holders] = this.holders;
    if (values[2] === 1) this.counters[FleetField.repairedKeys]! += 1;
    if (values[1] === 1 && this.heartbeats > 0) this.connections.resync();
    this.heartbeats++;
  }
}

/** The logger of a thread that does not speak for the fleet: outages go to debug. */
function quietLogger(logger: Logger): Pick<Logger, "warn" | "info"> {
  return {
    warn: (message: string) => logger.debug(message),
    info: (message: string) => logger.debug(message),
  };
}
