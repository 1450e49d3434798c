// Every upstream group of one I/O thread: built from [[upstreams]], looked up by name (routes, the TCP proxy),
// reconfigured by a reload, health-checked, and stopped.
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { checkServer } from "./active-health.ts";
import { UpstreamGroup } from "./group.ts";
import type { UpstreamStats } from "./stats.ts";
import { TimeoutSweep } from "./timeouts.ts";
import type { UpstreamSettings } from "./types.ts";

/** How often threads that do not read the stats write their gauges into them. */
const GAUGE_PUBLISH_MS = 1000;

/**
 * The groups a server running `config` sends to: those its routes name (http) or proxy.upstream (tcp_proxy), in the
 * order of [[upstreams]]. The others are not started (no connections, no health checks); start-up warns about them.
 */
export function usedUpstreams(config: Config): UpstreamSettings[] {
  const names = new Set<string>();
  if (config.server.protocol === "http") for (const route of config.http.routes) names.add(route.upstream);
  if (config.server.protocol === "tcp_proxy") names.add(config.proxy.upstream);
  return config.upstreams.filter((group) => names.has(group.name));
}

export interface UpstreamsOptions {
  readonly stats: UpstreamStats;
  readonly logger: Logger;
  /** Write the gauges on a timer (threads other than the one that serves /stats). */
  readonly publishesGauges: boolean;
}

export class Upstreams {
  readonly stats: UpstreamStats;
  readonly sweep = new TimeoutSweep();
  private readonly groups = new Map<string, UpstreamGroup>();
  private readonly checks = new Map<string, HealthChecks>();
  private readonly logger: Logger;
  private readonly gaugeTimer: ReturnType<typeof setInterval> | null = null;
  private readonly stopRefreshing: () => void;
  private isStopped = false;

  constructor(settings: readonly UpstreamSettings[], options: UpstreamsOptions) {
    this.stats = options.stats;
    this.logger = options.logger;
    for (const group of settings) this.add(group);
    // This thread's gauges are written before its own reads; for reads on other threads (the admin listener runs on
    // the main thread), on a timer.
    this.stopRefreshing = this.stats.onRead(() => this.publishGauges());
    if (options.publishesGauges) {
      this.gaugeTimer = setInterval(() => this.publishGauges(), GAUGE_PUBLISH_MS);
      this.gaugeTimer.unref();
    }
  }

  group(name: string): UpstreamGroup | undefined {
    return this.groups.get(name);
  }

  get size(): number {
    return this.groups.size;
  }

  all(): Iterable<UpstreamGroup> {
    return this.groups.values();
  }

  /**
   * Applies a reloaded [[upstreams]] list: new groups start, removed ones stop (their busy connections finish their
   * requests first), changed ones are reconfigured in place (see UpstreamGroup.reconfigure).
   */
  reconfigure(settings: readonly UpstreamSettings[]): void {
    const names = new Set(settings.map((group) => group.name));
    for (const [name, group] of this.groups) {
      if (names.has(name)) continue;
      this.checks.get(name)?.stop();
      this.checks.delete(name);
      group.stop();
      this.groups.delete(name);
    }
    for (const next of settings) {
      const group = this.groups.get(next.name);
      if (group === undefined) {
        this.add(next);
        continue;
      }
      const before = group.settings;
      group.reconfigure(next);
      if (
        before.health_check_path !== next.health_check_path ||
        before.health_check_interval_s !== next.health_check_interval_s
      ) {
        this.checks.get(next.name)?.stop();
        this.checks.delete(next.name);
        // Checks turned off: a server the last one failed would otherwise stay out for good.
        if (next.health_check_path === "") for (const server of group.servers) server.health.uncheck();
        this.startChecks(group);
      }
    }
  }

  /** Writes every server's gauges into this thread's stats shard. */
  publishGauges(): void {
    const nowMs = performance.now();
    for (const group of this.groups.values()) group.publishGauges(nowMs);
  }

  stop(): void {
    if (this.isStopped) return;
    this.isStopped = true;
    if (this.gaugeTimer !== null) clearInterval(this.gaugeTimer);
    this.stopRefreshing();
    for (const checks of this.checks.values()) checks.stop();
    this.checks.clear();
    for (const group of this.groups.values()) group.stop();
    this.sweep.stop();
  }

  private add(settings: UpstreamSettings): void {
    const logger = this.logger;
    const group = new UpstreamGroup(settings, this.stats, this.sweep, () =>
      logger.warn(`upstream ${settings.name}: too many upstream servers to count them all in stats`),
    );
    group.onHealthChange = (server, change) => logger.warn(`upstream ${group.name}: ${server.address} ${change}`);
    this.groups.set(settings.name, group);
    this.startChecks(group);
  }

  private startChecks(group: UpstreamGroup): void {
    // Every I/O thread checks for itself (each keeps its own health, as each nginx worker does): a few more
    // requests per interval, and no shared state on the request path.
    if (group.settings.health_check_path === "") return;
    this.checks.set(group.name, new HealthChecks(group));
  }
}

/** The active checks of one group: every server each interval, at most one check per server at a time. */
class HealthChecks {
  private readonly group: UpstreamGroup;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly running = new Set<string>();
  private isStopped = false;

  constructor(group: UpstreamGroup) {
    this.group = group;
    this.timer = setInterval(() => this.round(), group.settings.health_check_interval_s * 1000);
    this.timer.unref();
    this.round();
  }

  private round(): void {
    const group = this.group;
    const { health_check_path, health_check_interval_s, connect_timeout_s, read_timeout_s } = group.settings;
    const timeoutMs = Math.min(health_check_interval_s, connect_timeout_s + read_timeout_s) * 1000;
    for (const server of group.servers) {
      if (this.running.has(server.address)) continue;
      this.running.add(server.address);
      void checkServer(server, health_check_path, timeoutMs).then((result) => {
        this.running.delete(server.address);
        if (!this.isStopped && !server.isRemoved) group.checked(server, result.isHealthy, result.detail);
      });
    }
  }

  stop(): void {
    this.isStopped = true;
    clearInterval(this.timer);
  }
}
