// What every listener receives from the server: the configuration and the shared resources.
import type { Config } from "./config/schema.ts";
import type { Logger } from "./log.ts";
import type { Admission } from "./net/admission.ts";
import type { Stats } from "./stats/stats.ts";

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
   * First phase of a configuration reload (Server.reload): checks and builds what `context.config` needs (settings
   * that need a restart keep their running values; stats, logger, gauges and admission are the same objects) and
   * rejects, changing nothing, when it cannot run. The server then reconfigures the admission and commits.
   */
  prepareReconfigure?(context: ServerContext): Promise<PreparedReconfigure>;
}

/** A reload a listener has prepared: commit swaps it in (synchronously, cannot fail); abort drops it. */
export interface PreparedReconfigure {
  commit(): void;
  abort(): void;
}

/** Nothing to swap: the settings the listener reads are unchanged. */
export const UNCHANGED: PreparedReconfigure = Object.freeze({ commit() {}, abort() {} });
