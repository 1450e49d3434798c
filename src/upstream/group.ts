// An upstream group ([[upstreams]] entry): its servers, the strategy that picks among them, their connection pools and
// health, and what a reload may change without dropping a request.
import { makeBalancer, type Balancer } from "./balancer.ts";
import type { UpstreamConnection } from "./http-connection.ts";
import { ConnectionPool } from "./pool.ts";
import { UpstreamServer } from "./server.ts";
import { Field, NO_SERVER, type UpstreamStats } from "./stats.ts";
import type { TimeoutSweep } from "./timeouts.ts";
import type { UpstreamSettings } from "./types.ts";

/** A server of a group with what the group keeps for it. */
export interface Member {
  readonly server: UpstreamServer;
  readonly pool: ConnectionPool<UpstreamConnection>;
  /** Offset of the server's slot in UpstreamStats (-1: not counted). */
  readonly statsSlot: number;
}

const NO_EXCLUSION: readonly UpstreamServer[] = [];

export class UpstreamGroup {
  readonly name: string;
  settings: UpstreamSettings;
  /** The servers requests may go to, in configuration order. */
  servers: UpstreamServer[] = [];
  private readonly members = new Map<UpstreamServer, Member>();
  private balancer: Balancer;
  readonly stats: UpstreamStats;
  /** Idle and read timeouts of this thread's upstream connections. */
  readonly sweep: TimeoutSweep;
  /** Slot counting answers given when no server was available. */
  readonly noServerSlot: number;
  private readonly onStatsFull: () => void;
  /** Told when health changes a server's state (logged by Upstreams). */
  onHealthChange: (server: UpstreamServer, change: string) => void = () => {};

  constructor(
    settings: UpstreamSettings,
    stats: UpstreamStats,
    sweep: TimeoutSweep,
    onStatsFull: () => void = () => {},
  ) {
    this.name = settings.name;
    this.settings = settings;
    this.stats = stats;
    this.sweep = sweep;
    this.onStatsFull = onStatsFull;
    this.balancer = makeBalancer(settings.strategy);
    this.noServerSlot = stats.slotOf(settings.name, NO_SERVER, onStatsFull);
    stats.set(this.noServerSlot, Field.present, 1);
    for (const server of settings.servers) this.addServer(new UpstreamServer(server, settings));
  }

  /** The server for the next request, or null when none is available. */
  pick(clientKey: string, exclude: readonly UpstreamServer[] = NO_EXCLUSION, nowMs = performance.now()) {
    return this.balancer.pick(this.servers, clientKey, exclude, nowMs);
  }

  member(server: UpstreamServer): Member {
    return this.members.get(server)!;
  }

  /**
   * Applies a reloaded [[upstreams]] entry: servers added start getting requests at once; removed ones get nothing
   * new, and close their connections as their requests finish; weights, limits, health and pool settings change in
   * place (failure counts and pooled connections are kept). A new strategy starts fresh.
   */
  reconfigure(settings: UpstreamSettings): void {
    const previous = this.settings;
    this.settings = settings;
    if (settings.strategy !== previous.strategy) this.balancer = makeBalancer(settings.strategy);
    const byAddress = new Map(this.servers.map((server) => [server.address, server]));
    const next: UpstreamServer[] = [];
    for (const spec of settings.servers) {
      const existing = byAddress.get(spec.address);
      if (existing === undefined) {
        next.push(this.addServer(new UpstreamServer(spec, settings), false));
        continue;
      }
      byAddress.delete(spec.address);
      existing.weight = spec.weight;
      existing.maxConnections = spec.max_connections;
      existing.health.configure(settings.max_fails, settings.fail_timeout_s);
      this.members.get(existing)!.pool.configure(settings.keepalive_connections, settings.keepalive_timeout_s);
      next.push(existing);
    }
    for (const removed of byAddress.values()) this.removeServer(removed);
    this.servers = next;
    for (const server of next) server.currentWeight = 0;
  }

  /**
   * A request to `server` failed (no connection, lost, timed out): counted by passive health, which may eject it.
   * `slot` is the server's stats slot.
   */
  serverFailed(server: UpstreamServer, slot: number): void {
    if (!server.health.failed(performance.now())) return;
    this.stats.add(slot, Field.ejections, 1);
    const { max_fails, fail_timeout_s } = this.settings;
    this.onHealthChange(
      server,
      `ejected for ${fail_timeout_s} s after ${max_fails} failures within ${fail_timeout_s} s`,
    );
  }

  /** An active check's verdict on `server`; a change of state is reported. */
  checked(server: UpstreamServer, isHealthy: boolean, detail: string): void {
    const wasUp = server.health.isUp(performance.now());
    server.health.checked(isHealthy);
    if (isHealthy && !wasUp) this.onHealthChange(server, `back up (health check: ${detail})`);
    else if (!isHealthy && wasUp) this.onHealthChange(server, `down (health check: ${detail})`);
  }

  /** A request or connection to `server` ended; a removed server leaves once nothing is in flight. */
  finished(server: UpstreamServer): void {
    server.inFlight -= 1;
    if (server.isRemoved && server.inFlight === 0) {
      const member = this.members.get(server);
      if (member !== undefined) this.forget(member);
    }
  }

  /**
   * Writes the gauges of every server into this thread's stats shard: the thread that reads the stats calls it first;
   * other I/O threads call it on a timer.
   */
  publishGauges(nowMs = performance.now()): void {
    for (const member of this.members.values()) {
      const { server, statsSlot } = member;
      this.stats.set(statsSlot, Field.connections, server.connections);
      this.stats.set(statsSlot, Field.idle, server.idleConnections);
      this.stats.set(statsSlot, Field.health, server.health.state(nowMs));
      this.stats.set(statsSlot, Field.inFlight, server.inFlight);
    }
  }

  /** Every member, current and leaving (for health checks and stats). */
  allMembers(): Iterable<Member> {
    return this.members.values();
  }

  /** Closes every idle connection; busy ones close when their exchange ends. The group leaves the stats. */
  stop(): void {
    for (const member of this.members.values()) {
      member.pool.stop();
      member.server.isRemoved = true;
      this.stats.set(member.statsSlot, Field.present, 0);
    }
    this.stats.set(this.noServerSlot, Field.present, 0);
  }

  private addServer(server: UpstreamServer, append = true): UpstreamServer {
    const slot = this.stats.slotOf(this.name, server.address, this.onStatsFull);
    const pool = new ConnectionPool<UpstreamConnection>(
      server,
      this.settings.keepalive_connections,
      this.settings.keepalive_timeout_s,
    );
    this.members.set(server, { server, pool, statsSlot: slot });
    this.stats.set(slot, Field.present, 1);
    if (append) this.servers.push(server);
    return server;
  }

  private removeServer(server: UpstreamServer): void {
    server.isRemoved = true;
    const member = this.members.get(server)!;
    member.pool.stop();
    if (server.inFlight === 0) this.forget(member);
  }

  private forget(member: Member): void {
    this.members.delete(member.server);
    // The same address may be back in the group already (removed, then added again): its slot stays present.
    for (const other of this.members.values()) if (other.statsSlot === member.statsSlot) return;
    this.stats.set(member.statsSlot, Field.present, 0);
    this.stats.set(member.statsSlot, Field.inFlight, 0);
  }
}
