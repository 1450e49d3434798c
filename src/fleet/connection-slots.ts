// limits.max_connections_per_ip across the fleet: connection slots per address leased from Redis, decided locally.
//
// The fleet keeps, per address, how many slots each holder (an I/O thread of an instance) holds (scripts.ts
// CONNECTION_SLOTS). This thread records there the connections it has open from the address plus, while the address
// is far from its limit, one spare slot, so the next connection is admitted at once; it learns the other holders'
// total with every answer. A connection that finds no spare slot is admitted on credit within this holder's part of
// the room the fleet had at its last answer (room / holders: all holders may do so at once; at least one connection
// when that answer is older than an interval, so a stale view lets a holder pass the limit by its part once), and
// recorded with the next call. Closer to the limit, it is refused and the fleet is asked for one of the last slots,
// which the client's next attempt finds; once the fleet is full as last seen, newcomers are refused and the fleet is
// asked again at most once per sync interval. A record may pass the limit (connections admitted on credit are open), and
// then keeps newcomers out until enough close. Before the fleet's first answer about an
// address, a holder gives credit up to its fair share (limit / holders): so a client already at its limit through
// some instances that reaches a holder new to it can get up to a fair share more, once. What is recorded is absolute (connections open now), never a difference, so a key that was
// deleted or a Redis that lost its state is simply written again; holders that died drop out with their heartbeat.
//
// While Redis is unavailable, spare slots already leased are still used; the rest is decided by fleet.on_redis_down:
// this instance's own count (local), the total limit only (allow), or refused (deny).
import { FleetVerdict, type ConnectionBudget } from "../net/connection-gate.ts";
import { Batcher } from "./batcher.ts";
import { FleetField } from "./counters.ts";
import type { LeaseContext } from "./rate-leases.ts";
import { CONNECTION_SLOTS } from "./scripts.ts";

/** A holder's record under an address expires when not rewritten for this long (refreshed at a third of it). */
export const SLOT_KEY_TTL_MS = 10 * 60 * 1000;

class Slots {
  readonly key: string;
  /** Connections this thread has admitted and not yet released. */
  open = 0;
  /** Slots the fleet has recorded for this thread (its open connections and spares), as of the last answer. */
  recorded = 0;
  /** Slots the other holders held at the last answer. */
  others = 0;
  answered = false;
  /** limits.max_connections_per_ip as of the last enter. */
  limit: number;
  lastAnswerMs = 0;
  lastCallMs = 0;
  queued = false;
  /** In the list of entries whose count changed since the last tick. */
  changed = false;
  /** A newcomer was refused near the limit: the next call asks for a slot even from the last free ones. */
  needSlot = false;
  /** Nothing open any more: the next call writes 0 for it, and its answer takes it out of the table. */
  retiring = false;
  inFlight = false;

  constructor(key: string, limit: number) {
    this.key = key;
    this.limit = limit;
  }
}

export class FleetConnectionBudget implements ConnectionBudget {
  private readonly context: LeaseContext;
  private readonly slots = new Map<string, Slots>();
  private changed: Slots[] = [];
  private readonly batcher: Batcher<Slots>;
  private readonly keyPrefix: string;
  private readonly holdersKey: string;
  private readonly holderId: string;
  private lastRefreshMs = 0;
  private slotsHeld = 0;

  constructor(context: LeaseContext, holderId: string, holdersKey: string) {
    this.context = context;
    this.holderId = holderId;
    this.holdersKey = holdersKey;
    this.keyPrefix = `${context.keyPrefix}conn:`;
    this.batcher = new Batcher<Slots>(
      (batch) => this.call(batch),
      () => context.link.up,
    );
  }

  /** Addresses this thread holds slots for. */
  get size(): number {
    return this.slots.size;
  }

  enter(ip: string, maxPerIp: number, nowMs: number): number {
    let entry = this.slots.get(ip);
    if (entry === undefined) {
      entry = new Slots(ip, maxPerIp);
      this.slots.set(ip, entry);
    }
    entry.limit = maxPerIp;
    entry.retiring = false;
    this.noteChange(entry);
    const context = this.context;
    if (entry.open < entry.recorded) {
      entry.open++;
      if (entry.open === entry.recorded && context.link.up) this.batcher.add(entry); // a new spare
      return FleetVerdict.ADMITTED;
    }
    if (!context.link.up) {
      context.counters[FleetField.fallbackDecisions]! += 1;
      if (context.onRedisDown === "deny") return this.forgetIfEmpty(entry, FleetVerdict.REFUSED);
      entry.open++;
      return context.onRedisDown === "local" ? FleetVerdict.LOCAL : FleetVerdict.ADMITTED;
    }
    const share = Math.max(1, Math.floor(maxPerIp / context.holders));
    if (!entry.answered) return entry.open < share ? this.admitOnCredit(entry) : FleetVerdict.REFUSED;
    // Credit within this holder's part of the room the fleet had at its last answer (every holder may take its part
    // at once without passing the limit): admitted now, recorded with the next call, whose answer brings the view up
    // to date. An older answer gets the same part, at least one connection: others may have taken the room since, so
    // a stale view can pass the limit by that part once; refusing instead would turn away a browser's parallel
    // connections far below the limit whenever the address had been quiet for an interval.
    const roomAtAnswer = maxPerIp - entry.others - entry.recorded;
    const roomShare = Math.floor(roomAtAnswer / context.holders);
    const isFresh = nowMs - entry.lastAnswerMs < context.syncIntervalMs;
    const creditLimit = isFresh ? roomShare : Math.max(roomShare, Math.min(1, roomAtAnswer));
    if (entry.open - entry.recorded < creditLimit) return this.admitOnCredit(entry);
    if (maxPerIp - entry.others - entry.open > 0) {
      // Near the limit, what another holder did since matters: ask for one of the last slots (the client's next
      // attempt finds it) rather than admit on a guess.
      entry.needSlot = true;
      this.batcher.add(entry);
    } else if (nowMs - entry.lastCallMs >= context.syncIntervalMs) {
      // Full as last seen: ask again, at most once per interval, whether someone has left.
      this.batcher.add(entry);
    }
    return this.forgetIfEmpty(entry, FleetVerdict.REFUSED);
  }

  private admitOnCredit(entry: Slots): number {
    entry.open++;
    this.context.counters[FleetField.creditAdmitted]! += 1;
    this.batcher.add(entry);
    return FleetVerdict.ADMITTED;
  }

  leave(ip: string, _nowMs: number): void {
    const entry = this.slots.get(ip);
    if (entry === undefined || entry.open === 0) return;
    entry.open--;
    this.noteChange(entry);
  }

  /**
   * Every fleet.sync_interval_ms: addresses whose count changed give back what they hold beyond their connections
   * and a spare (all of it when none is open: they leave the table); every third of SLOT_KEY_TTL_MS the records of
   * addresses with connections open are rewritten so they do not expire. Also publishes this thread's gauges.
   */
  tick(nowMs: number): void {
    const changed = this.changed;
    this.changed = [];
    for (const entry of changed) {
      entry.changed = false;
      if (entry.open === 0) this.retire(entry);
      else if (entry.recorded > entry.open + 1) this.batcher.add(entry);
    }
    if (nowMs - this.lastRefreshMs >= SLOT_KEY_TTL_MS / 3) {
      this.lastRefreshMs = nowMs;
      this.resync();
    }
    const counters = this.context.counters;
    counters[FleetField.slotAddresses] = this.slots.size;
    counters[FleetField.leasedSlots] = this.slotsHeld;
  }

  /** Writes every address's record again (Redis came back, or lost its state). */
  resync(): void {
    if (!this.context.link.up) return;
    for (const entry of this.slots.values()) this.batcher.add(entry);
  }

  /** Gives every slot back (the server stops); resolves when sent or failed. */
  async close(): Promise<void> {
    for (const entry of this.slots.values()) {
      entry.open = 0;
      this.retire(entry);
    }
    await this.batcher.settle();
  }

  /** Resolves once no call is queued or out (tests; a clean stop). */
  settle(): Promise<void> {
    return this.batcher.settle();
  }

  private noteChange(entry: Slots): void {
    if (entry.changed) return;
    entry.changed = true;
    this.changed.push(entry);
  }

  /** A refusal for an address with nothing open and nothing held leaves no entry behind. */
  private forgetIfEmpty(entry: Slots, verdict: number): number {
    if (entry.open === 0 && entry.recorded === 0 && !entry.queued && !entry.inFlight) this.slots.delete(entry.key);
    return verdict;
  }

  /** Nothing open: gives its record back, then leaves the table (at once when the fleet holds nothing for it). */
  private retire(entry: Slots): void {
    if (entry.recorded === 0 && !entry.queued && !entry.inFlight) {
      this.slots.delete(entry.key);
      return;
    }
    entry.retiring = true;
    if (this.context.link.up) this.batcher.add(entry);
  }

  private async call(batch: readonly Slots[]): Promise<void> {
    const keys: string[] = [this.holdersKey];
    const args: string[] = [this.holderId, String(SLOT_KEY_TTL_MS)];
    const nowMs = performance.now();
    const reserve = String(this.context.holders);
    for (const entry of batch) {
      keys.push(this.keyPrefix + entry.key);
      const held = entry.retiring ? 0 : entry.open;
      const spare = entry.retiring || held >= entry.limit ? 0 : 1;
      args.push(String(entry.limit), String(held), String(spare), entry.needSlot ? "0" : reserve);
      entry.needSlot = false;
      entry.lastCallMs = nowMs;
      entry.inFlight = true;
    }
    let reply: unknown;
    try {
      reply = await this.context.link.run(CONNECTION_SLOTS, keys, args);
    } catch {
      // Redis is down now; once it is back, resync writes every record again.
      for (const entry of batch) entry.inFlight = false;
      return;
    }
    const values = Array.isArray(reply) ? reply : [];
    const replyMs = performance.now();
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i]!;
      entry.inFlight = false;
      const recorded = Math.max(0, Math.floor(Number(values[3 * i]) || 0));
      if (values[3 * i + 2] === 1) this.context.counters[FleetField.repairedKeys]! += 1;
      this.slotsHeld += recorded - entry.recorded;
      entry.recorded = recorded;
      if (entry.retiring) {
        // Written 0 (or asked for something before it retired, then it is written again): out of the table.
        if (recorded > 0) this.batcher.add(entry);
        else if (!entry.queued && this.slots.get(entry.key) === entry) this.slots.delete(entry.key);
        continue;
      }
      entry.others = Math.max(0, Number(values[3 * i + 1]) || 0);
      entry.answered = true;
      entry.lastAnswerMs = replyMs;
      // Connections admitted on credit while the call was out are not in the record yet.
      if (entry.open > entry.recorded) this.batcher.add(entry);
    }
  }
}
