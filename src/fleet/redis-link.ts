// One thread's connection to the fleet's Redis: bounded calls, outage detection, reconnection by itself.
//
// Nothing on a request's path waits for this link: callers (leases, slots, stats) send a call now and then and apply
// the answer when it comes. A call that fails or gets no answer within fleet.redis_timeout_ms takes the link down:
// the connection is closed (so nothing piles up behind a Redis that stopped reading: a SIGSTOP, a network stall, a
// long DEBUG SLEEP), the outage is logged once, and a new connection is tried with growing pauses until one answers
// the probe. Bun's RedisClient reconnects by itself too, but it neither bounds a call nor notices a stalled peer, so
// it runs with autoReconnect off and this class owns the connection's life.
import { RedisClient } from "bun";
import type { Logger } from "../log.ts";
import { FleetField } from "./counters.ts";
import { diagnoseConnection } from "./diagnose.ts";
import type { Script } from "./scripts.ts";

/** First pause before reconnecting; doubles up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;
/** Weight of the newest round trip in the smoothed figure. */
const ROUND_TRIP_WEIGHT = 0.2;

export interface RedisLinkOptions {
  url: string;
  /** A call or a connection attempt without an answer this long fails (and takes the link down). */
  timeoutMs: number;
  /** Where the outage and recovery lines go. */
  logger: Pick<Logger, "warn" | "info">;
  /** This thread's row of fleet counters (src/fleet/counters.ts). */
  counters: Float64Array;
  /** Says what the outage means for traffic, appended to the log line (e.g. the on_redis_down fallback). */
  whileDown: string;
  /**
   * Run on every new connection before the link counts as up: it must succeed (e.g. a heartbeat that writes), so a
   * Redis that accepts connections but not our scripts stays down. Default: PING.
   */
  probe?: (link: RedisLink) => Promise<unknown>;
  /** Called each time the link comes up (the first time and after every outage). */
  onUp?: () => void;
}

/** The reason a call failed: Redis unreachable, too slow, or an error reply. */
export class RedisLinkError extends Error {
  override readonly name = "RedisLinkError";
}

export class RedisLink {
  /** True while calls are answered. Read it on hot paths: it is a plain field. */
  up = false;
  private readonly options: RedisLinkOptions;
  private readonly counters: Float64Array;
  /** The URL without its password, for log lines. */
  private readonly shownUrl: string;
  private client: RedisClient | null = null;
  /** Connected, the probe running: calls may go out, but the link does not count as up yet. */
  private probing = false;
  private connecting: Promise<void> | null = null;
  private retryTimer: Timer | null = null;
  private retryMs = RETRY_MIN_MS;
  private closed = false;
  /** Wall-clock start of the outage being logged, or null while none is. */
  private outageSinceMs: number | null = null;
  private outageFailures = 0;

  constructor(options: RedisLinkOptions) {
    this.options = options;
    this.counters = options.counters;
    this.shownUrl = withoutPassword(options.url);
    this.counters[FleetField.redisUp] = 0;
  }

  /** Connects once (bounded by the timeout); on failure logs the outage and keeps trying in the background. */
  async start(): Promise<void> {
    await this.connect();
  }

  /**
   * Runs `script` (EVALSHA; EVAL when Redis does not know it yet). Rejects with a RedisLinkError at once while the
   * link is down, and when the call fails or takes longer than the timeout (the link then goes down).
   */
  async run(script: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const client = this.client;
    if (!(this.up || this.probing) || client === null) throw new RedisLinkError("Redis is unavailable");
    const params = [script.sha, String(keys.length), ...keys, ...args];
    const startedMs = performance.now();
    this.counters[FleetField.redisCalls]! += 1;
    try {
      let reply: unknown;
      try {
        reply = await this.bounded(client.send("EVALSHA", params), client);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        // Redis restarted (or flushed its scripts): send the source once; it is cached again from then on.
        params[0] = script.source;
        reply = await this.bounded(client.send("EVAL", params), client);
      }
      this.noteRoundTrip(performance.now() - startedMs);
      return reply;
    } catch (error) {
      const reason = error instanceof RedisLinkError ? error.message : describe(error);
      this.fail(client, `${script.name}: ${reason}`);
      throw new RedisLinkError(reason);
    }
  }

  /** A plain command (PING, for the default probe), bounded like a script. */
  async command(command: string, args: readonly string[]): Promise<unknown> {
    const client = this.client;
    if (client === null) throw new RedisLinkError("Redis is unavailable");
    return await this.bounded(client.send(command, [...args]), client);
  }

  /** Closes the connection and stops reconnecting. */
  close(): void {
    this.closed = true;
    this.up = false;
    this.counters[FleetField.redisUp] = 0;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const client = this.client;
    this.client = null;
    client?.close();
  }

  /**
   * `promise`, or a RedisLinkError once the timeout passes (the caller then takes the link down). A timer that fires
   * more than half a timeout late says this thread was busy (a long GC pause, a starved CPU) rather than Redis slow:
   * the call may not even have been written yet (calls are pipelined at the end of a turn), and its answer may be
   * waiting in the socket behind the timer. Redis then gets one more timeout, from now, before the link goes down.
   * `dropOnTimeout` false: the caller fails the connection itself (a connection attempt, once its reason is known).
   */
  private bounded<T>(promise: Promise<T>, client: RedisClient, dropOnTimeout = true): Promise<T> {
    const timeoutMs = this.options.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let dueMs = performance.now() + timeoutMs;
      let isExtended = false;
      const onTimer = () => {
        if (settled) return;
        const nowMs = performance.now();
        if (!isExtended && nowMs - dueMs > timeoutMs / 2) {
          isExtended = true;
          dueMs = nowMs + timeoutMs;
          timer = setTimeout(onTimer, timeoutMs);
          return;
        }
        settled = true;
        reject(new RedisLinkError(`no answer within ${timeoutMs} ms`));
        // A peer that stopped reading keeps every later call waiting too: drop the connection now.
        if (dropOnTimeout && this.client === client) this.fail(client, `no answer within ${timeoutMs} ms`);
      };
      let timer = setTimeout(onTimer, timeoutMs);
      promise.then(
        (value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    const client = new RedisClient(this.options.url, {
      autoReconnect: false,
      enableOfflineQueue: false,
      connectionTimeout: this.options.timeoutMs,
      enableAutoPipelining: true,
    });
    let isConnected = false;
    client.onclose = (error: Error) => {
      // Before it was up, the attempt's own catch says why.
      if (isConnected && this.client === client) this.fail(client, `connection lost (${describe(error)})`);
    };
    this.client = client;
    try {
      try {
        // A connection attempt that times out is failed below, once its reason is known.
        await this.bounded(client.connect(), client, false);
      } catch (error) {
        // The first failure of an outage is logged: worth a probe of its own, as Bun's reason is "Connection closed"
        // whatever happened (bounded by the timeout; nothing waits on the link meanwhile).
        const reason =
          this.outageSinceMs === null && !this.closed
            ? ((await diagnoseConnection(this.options.url, this.options.timeoutMs)) ?? describe(error))
            : describe(error);
        throw new RedisLinkError(`cannot connect: ${reason}`);
      }
      if (this.client !== client) return;
      isConnected = true;
      // Calls may go out for the probe only; a failed probe takes the connection down through run()/fail().
      this.probing = true;
      try {
        await (this.options.probe ? this.options.probe(this) : this.command("PING", []));
      } finally {
        this.probing = false;
      }
    } catch (error) {
      this.fail(client, describe(error));
      return;
    }
    if (this.client !== client || this.closed) return;
    this.up = true;
    this.retryMs = RETRY_MIN_MS;
    this.counters[FleetField.redisUp] = 1;
    if (this.outageSinceMs !== null) {
      const seconds = ((Date.now() - this.outageSinceMs) / 1000).toFixed(1);
      this.options.logger.info(
        `fleet: Redis at ${this.shownUrl} answers again after ${seconds} s (${this.outageFailures} failed attempts); limits are fleet-wide again`,
      );
      this.outageSinceMs = null;
    }
    this.options.onUp?.();
  }

  /** The connection `client` failed: down, counted, logged once per outage, retried later. */
  private fail(client: RedisClient, reason: string): void {
    // An old connection's late news (calls it still had pending when it was dropped) is the same failure.
    if (this.client !== client) return;
    this.counters[FleetField.redisErrors]! += 1;
    this.up = false;
    this.counters[FleetField.redisUp] = 0;
    this.client = null;
    client.onclose = null;
    client.close();
    if (this.closed) return;
    this.outageFailures++;
    if (this.outageSinceMs === null) {
      this.outageSinceMs = Date.now();
      this.outageFailures = 1;
      this.counters[FleetField.outages]! += 1;
      this.options.logger.warn(
        `fleet: Redis at ${this.shownUrl} is unavailable (${reason}); ${this.options.whileDown} until it answers again (retrying by itself)`,
      );
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.closed) return;
    const pauseMs = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, pauseMs);
  }

  private noteRoundTrip(ms: number): void {
    const previous = this.counters[FleetField.roundTripMicros]!;
    const micros = ms * 1000;
    this.counters[FleetField.roundTripMicros] =
      previous === 0 ? micros : previous + (micros - previous) * ROUND_TRIP_WEIGHT;
  }
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** redis://user:secret@host:6379/0 -> redis://user@host:6379/0 (passwords stay out of logs). */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "";
    return parsed.toString();
  } catch {
    return "(unparsable fleet.redis_url)";
  }
}
