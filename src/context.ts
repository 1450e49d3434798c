// What every listener receives from the server: the configuration and the shared resources, built in one place.
import type { Config } from "./config/schema.ts";
import { createFleet, type Fleet } from "./fleet/fleet.ts";
import { Logger } from "./log.ts";
import { Admission, sharedAddressEntries } from "./net/admission.ts";
import { SharedAddressTable, type SharedAddressTableShare } from "./net/shared-address-table.ts";
import { NO_CHANGE, type PreparedChange } from "./reload/two-phase.ts";
import { Counter, Stats } from "./stats/stats.ts";
import type { TlsState } from "./tls/tls-state.ts";
import { UpstreamStats } from "./upstream/stats.ts";

/**
 * Gauges that live outside the shared counters (pool queue depth, arena bytes in use, tracked IPs),
 * registered by the module that owns them and read by snapshots, /metrics and reports.
 * Key: a group name such as "pool"; value: a function returning that group's current numbers.
 */
export type GaugeRegistry = Map<string, () => Record<string, number>>;

export interface ServerContext {
  readonly config: Config;
  readonly stats: Stats;
  readonly logger: Logger;
  readonly gauges: GaugeRegistry;
  /** The edge's decisions (allow/deny, connection limits, rate limit, client address); one per listener thread. */
  readonly admission: Admission;
  /** With fleet.redis_url: this thread's part of the fleet (its stores are the admission's; started by the thread). */
  readonly fleet?: Fleet | null;
  /**
   * The certificates and settings TLS listeners use (tls.enabled): read by the server at start and on every reload.
   * Absent or null: listeners are plain.
   */
  readonly tls?: TlsState | null;
  /**
   * Per upstream server counters, shared by every thread (src/upstream/stats.ts). Built by createContext; a context
   * made by hand (tests) may leave it out, and a listener that proxies then counts into statistics of its own.
   */
  readonly upstreamStats?: UpstreamStats;
}

/**
 * What the listener threads share (server.io_threads > 1): the counters, and the total connection count and
 * per-address table that make limits and rates span every thread. Sent to each I/O thread at its start.
 */
export interface SharedResources {
  readonly statsBuffer: SharedArrayBuffer;
  readonly startedAtMs: number;
  /** The total connection count limits.max_connections applies to; null with one I/O thread. */
  readonly connections: Int32Array | null;
  /** Connections per address and rate-limit state; null with one I/O thread. */
  readonly addresses: SharedAddressTableShare | null;
  /** With fleet.redis_url: every thread's fleet counters (src/fleet/counters.ts). */
  readonly fleetCounters: SharedArrayBuffer | null;
  /** Per upstream server counters (UpstreamStats), a shard per I/O thread. */
  readonly upstreamStatsBuffer: SharedArrayBuffer;
}

/**
 * The context of one listener thread. `shared` null: the main thread, which creates the shared resources (with
 * several I/O threads, the shared count and table too); otherwise an I/O thread, which attaches to them. Every thread
 * logs to log.file, each through a descriptor of its own opened for appending (every batch lands whole: a write in
 * append mode is atomic on a local file system). Throws (ENOENT, EACCES, …) when log.file cannot be opened for
 * appending. `tls`: the certificates the main thread read (tls.enabled).
 */
export function createContext(
  config: Config,
  shared: SharedResources | null,
  tls: TlsState | null = null,
): { context: ServerContext; shared: SharedResources } {
  const logger = new Logger({
    level: config.log.level,
    file: config.log.file,
    format: config.log.format,
    maxBufferedBytes: config.log.max_buffered_bytes,
  });
  const threaded = config.server.io_threads > 1;
  const stats = shared === null ? Stats.create() : Stats.attach(shared.statsBuffer, shared.startedAtMs);
  logger.countDroppedWith((lines) => stats.add(Counter.logLinesDropped, lines));
  const connections =
    shared === null ? (threaded ? new Int32Array(new SharedArrayBuffer(4)) : null) : shared.connections;
  const addresses =
    shared === null
      ? threaded
        ? SharedAddressTable.create(sharedAddressEntries(config))
        : null
      : shared.addresses === null
        ? null
        : SharedAddressTable.attach(shared.addresses);
  const gauges: GaugeRegistry = new Map();
  // With a fleet, rate limits and connections per address are counted across instances (each thread a holder).
  const fleet = createFleet(config, logger, gauges, shared?.fleetCounters ?? null);
  const admission = new Admission(config, stats, gauges, connections, addresses, fleet?.member ?? null);
  const upstreamStats =
    shared === null ? UpstreamStats.create(config.server.io_threads) : UpstreamStats.attach(shared.upstreamStatsBuffer);
  return {
    context: { config, stats, logger, gauges, admission, fleet, tls, upstreamStats },
    shared: shared ?? {
      statsBuffer: stats.buffer,
      startedAtMs: stats.startedAtMs,
      connections,
      addresses: addresses?.share() ?? null,
      fleetCounters: fleet?.counters.buffer ?? null,
      upstreamStatsBuffer: upstreamStats.buffer,
    },
  };
}

export interface StopOptions {
  /** true: stop accepting, let in-flight work finish within timeoutMs, then close the rest. false: close now. */
  readonly graceful: boolean;
  readonly timeoutMs: number;
}

/** A running listener (public HTTP/TCP port or the admin port). */
export interface Listener {
  readonly port: number;
  /** Requests or frames being worked on now; graceful stop waits for this to reach 0. */
  inFlight(): number;
  stop(options: StopOptions): Promise<void>;
  /** Reopens the files this listener writes (the access log) by path, after log rotation. */
  reopenLogs?(): Promise<void>;
  /**
   * First phase of a configuration reload (src/reload/two-phase.ts): checks and builds what `context.config` needs
   * (settings that need a restart keep their running values; stats, logger, gauges and admission are the same
   * objects) and rejects, changing nothing, when it cannot run. The thread then reconfigures the admission and
   * commits (see src/reload/thread-steps.ts).
   */
  prepareReconfigure?(context: ServerContext): Promise<PreparedReconfigure>;
  /** Serves new certificates to new connections (a listener outside the reload's two phases: the admin listener). */
  applyTls?(state: TlsState): Promise<void>;
}

/** A reload a listener has prepared: commit swaps it in (synchronously, cannot fail); abort drops it. */
export interface PreparedReconfigure extends PreparedChange {
  commit(): void;
  abort(): void;
}

/** Nothing to swap: the settings the listener reads are unchanged. */
export const UNCHANGED: PreparedReconfigure = NO_CHANGE as PreparedReconfigure;
