// Counts connections (or HTTP in-flight requests) open now, in total and per client address, against two limits.
import { EnterResult, type SharedAddressTable } from "./shared-address-table.ts";

/** What `ConnectionGate.enter` decided. */
export const GateResult = { ADMITTED: 0, MAX_CONNECTIONS: 1, PER_IP: 2 } as const;

/** Addresses with nothing open kept in the table before a sweep (see perIp). */
export const ZERO_ENTRIES_KEPT = 1024;

/** What a connection budget shared beyond this instance decided about one more connection. */
export const FleetVerdict = {
  /** Counted there, and within the limit. */
  ADMITTED: 0,
  /** Over the limit; nothing counted. */
  REFUSED: 1,
  /** Counted there, but it cannot decide now (its store is unavailable): this instance's own count decides. */
  LOCAL: 2,
} as const;

/**
 * limits.max_connections_per_ip counted across several instances (a fleet, src/fleet/connection-slots.ts). It
 * decides without waiting on the network; the gate still keeps this instance's own count.
 */
export interface ConnectionBudget {
  /** A FleetVerdict for one more connection from `ip`; ADMITTED and LOCAL must be matched by one leave(ip). */
  enter(ip: string, maxPerIp: number, nowMs: number): number;
  leave(ip: string, nowMs: number): void;
}

/** The shared table's per-address count with no limit of its own (the fleet's budget decided). */
const NO_LIMIT = 0x7fffffff;

export class ConnectionGate {
  private maxConnections: number;
  private maxPerIp: number;
  private total = 0;
  /** With several I/O threads: the total across all of them, in shared memory (index 0), updated with Atomics. */
  private readonly sharedTotal: Int32Array | null;
  /**
   * Open count per address. An address whose count returns to 0 stays (as 0) so the next request from it
   * updates an entry in place instead of inserting and deleting one per request; zero entries are swept
   * once they outnumber both the live ones and ZERO_ENTRIES_KEPT, so size <= 2 * total + ZERO_ENTRIES_KEPT.
   */
  private readonly perIp = new Map<string, number>();
  private zeroEntries = 0;

  /** With several I/O threads: the per-address counts across all of them (this thread's map still says what it admitted). */
  private readonly sharedPerIp: SharedAddressTable | null;
  /** Connections per address this thread admitted while the shared table was full (not counted there). */
  private readonly uncounted = new Map<string, number>();
  /** With a fleet: the per-address budget shared by every instance, asked before this instance's own count. */
  private readonly budget: ConnectionBudget | null;

  /**
   * `sharedTotal`: a one-element Int32Array over a SharedArrayBuffer when several threads share the total limit;
   * `sharedPerIp`: the table the per-address limit is then counted in; `budget`: a fleet's per-address budget.
   */
  constructor(
    maxConnections: number,
    maxConnectionsPerIp: number,
    sharedTotal: Int32Array | null = null,
    sharedPerIp: SharedAddressTable | null = null,
    budget: ConnectionBudget | null = null,
  ) {
    this.maxConnections = maxConnections;
    this.maxPerIp = maxConnectionsPerIp;
    this.sharedTotal = sharedTotal;
    this.sharedPerIp = sharedPerIp;
    this.budget = budget;
  }

  /**
   * New limits for the connections that enter from now on (a configuration reload). What is counted stays counted
   * and is released as usual; a limit below the current count refuses newcomers until enough have left.
   */
  setLimits(maxConnections: number, maxConnectionsPerIp: number): void {
    this.maxConnections = maxConnections;
    this.maxPerIp = maxConnectionsPerIp;
  }

  /** Admits and counts one more connection from `ip`, or says which limit refuses it (nothing is counted then). */
  enter(ip: string): number {
    const shared = this.sharedTotal;
    if (shared === null) {
      if (this.total >= this.maxConnections) return GateResult.MAX_CONNECTIONS;
    } else if (Atomics.add(shared, 0, 1) >= this.maxConnections) {
      Atomics.sub(shared, 0, 1);
      return GateResult.MAX_CONNECTIONS;
    }
    // The fleet's budget first (it counts across instances); this instance's count decides when it cannot.
    const budget = this.budget;
    let localLimit = this.maxPerIp;
    if (budget !== null) {
      const verdict = budget.enter(ip, this.maxPerIp, performance.now());
      if (verdict === FleetVerdict.REFUSED) {
        if (shared !== null) Atomics.sub(shared, 0, 1);
        return GateResult.PER_IP;
      }
      if (verdict === FleetVerdict.ADMITTED) localLimit = NO_LIMIT;
    }
    const open = this.perIp.get(ip);
    const sharedPerIp = this.sharedPerIp;
    let overPerIp: boolean;
    if (sharedPerIp === null) {
      overPerIp = open !== undefined && open >= localLimit;
    } else {
      const entered = sharedPerIp.enter(ip, localLimit, performance.now());
      overPerIp = entered === EnterResult.REFUSED;
      if (entered === EnterResult.UNCOUNTED) this.uncounted.set(ip, (this.uncounted.get(ip) ?? 0) + 1);
    }
    if (overPerIp) {
      if (shared !== null) Atomics.sub(shared, 0, 1);
      budget?.leave(ip, performance.now());
      return GateResult.PER_IP;
    }
    if (open === undefined) {
      this.perIp.set(ip, 1);
    } else {
      if (open === 0) this.zeroEntries--;
      this.perIp.set(ip, open + 1);
    }
    this.total++;
    return GateResult.ADMITTED;
  }

  /** Forgets one admitted connection from `ip`. A release without a matching enter is ignored. */
  leave(ip: string): void {
    const open = this.perIp.get(ip);
    if (open === undefined || open === 0) return;
    this.perIp.set(ip, open - 1);
    this.total--;
    if (this.sharedTotal !== null) Atomics.sub(this.sharedTotal, 0, 1);
    this.budget?.leave(ip, performance.now());
    if (this.sharedPerIp !== null) {
      // A connection the full shared table admitted without a count leaves nothing there (it must not take another's).
      const uncounted = this.uncounted.get(ip);
      if (uncounted === undefined) this.sharedPerIp.leave(ip, performance.now());
      else if (uncounted === 1) this.uncounted.delete(ip);
      else this.uncounted.set(ip, uncounted - 1);
    }
    if (open === 1 && ++this.zeroEntries > ZERO_ENTRIES_KEPT && this.zeroEntries * 2 > this.perIp.size) this.sweep();
  }

  private sweep(): void {
    for (const [ip, open] of this.perIp) if (open === 0) this.perIp.delete(ip);
    this.zeroEntries = 0;
  }

  /** Connections (or in-flight requests) admitted and not yet released. */
  get openTotal(): number {
    return this.total;
  }

  /** Open count for one address (across every I/O thread when they share the count). */
  openFrom(ip: string): number {
    return this.sharedPerIp !== null ? this.sharedPerIp.openFrom(ip) : (this.perIp.get(ip) ?? 0);
  }

  /** Addresses in the per-address table, including up to (live + ZERO_ENTRIES_KEPT) with nothing open. */
  get tableSize(): number {
    return this.perIp.size;
  }
}
