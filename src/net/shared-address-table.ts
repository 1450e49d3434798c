// Per-address state shared by every I/O thread (server.io_threads > 1): open connections per address and the
// rate limiter's GCRA timestamp, in one SharedArrayBuffer, so limits.max_connections_per_ip and rate_limit apply to
// the client across all threads instead of once per thread.
//
// The table: open addressing with linear probing over a power-of-two number of slots, at most half of them used.
// A slot holds the address as four Int32 words (IPv4 as IPv4-mapped IPv6; a string that is not an address is
// hashed into the words), its open-connection count, its theoretical arrival time (`tat`, on a clock every thread
// shares: milliseconds since the creating thread's time origin) and when it was last used. A slot with no open connection and a tat in the past
// carries no information (a full bucket is what a new address gets), so it may be dropped at any time; when the
// table is full, the least recently used such slot among a few candidates is dropped. Deletion shifts the following
// run back (no tombstones), so lookups stay short.
//
// Every operation runs under one lock word: a compare-and-swap, a few dozen nanoseconds uncontended. A thread that
// finds it held spins briefly (Atomics.pause) and then sleeps on it for at most a millisecond at a time; the holder
// never blocks or allocates inside, so the wait is bounded by a few hundred nanoseconds of work.
import { parseAddressInto } from "./cidr.ts";

const LOCK = 0;
const USED = 1;
const META_INT32S = 4;
const KEY_INT32S = 4;
/** Slots examined for the least recently used droppable one when the table is full. */
const EVICTION_CANDIDATES = 64;
const SPINS_BEFORE_SLEEP = 128;
/** Rounding slack for the float comparisons (well under a microsecond), as in rate-limiter.ts. */
const EPSILON_MS = 1e-6;

/** What the table is made of, to hand to another thread (postMessage) and attach there. */
export interface SharedAddressTableShare {
  readonly meta: SharedArrayBuffer;
  /** [0]: the creating thread's performance.timeOrigin, the table clock's zero. */
  readonly origin: SharedArrayBuffer;
  readonly keys: SharedArrayBuffer;
  readonly counts: SharedArrayBuffer;
  readonly tats: SharedArrayBuffer;
  readonly seen: SharedArrayBuffer;
}

/** Remaining tokens and reset time of one address (RateLimit-* headers). */
export interface SharedRateState {
  remaining: number;
  resetSeconds: number;
}

export class SharedAddressTable {
  /** Addresses held at most (half the slots). */
  readonly maxEntries: number;
  private readonly meta: Int32Array;
  /** KEY_INT32S words per slot; a slot is empty when its count is -1 (see counts). */
  private readonly keys: Int32Array;
  /** Open connections per slot; -1 = empty slot. */
  private readonly counts: Int32Array;
  private readonly tats: Float64Array;
  private readonly seen: Float64Array;
  private readonly mask: number;
  private readonly words = new Int32Array(KEY_INT32S);
  private readonly state: SharedRateState = { remaining: 0, resetSeconds: 0 };
  private evictionCursor = 0;
  /** The address `words` hold now (this thread's last lookup). */
  private lastIp = "";
  private readonly origin: SharedArrayBuffer;
  /**
   * Added to this thread's performance.now() to get the table clock (milliseconds since the creating thread's time
   * origin): small numbers, so the GCRA arithmetic keeps sub-microsecond precision, the same in every thread.
   */
  private readonly clockOffsetMs: number;

  private constructor(share: SharedAddressTableShare) {
    this.origin = share.origin;
    this.clockOffsetMs = performance.timeOrigin - new Float64Array(share.origin)[0]!;
    this.meta = new Int32Array(share.meta);
    this.keys = new Int32Array(share.keys);
    this.counts = new Int32Array(share.counts);
    this.tats = new Float64Array(share.tats);
    this.seen = new Float64Array(share.seen);
    this.mask = this.counts.length - 1;
    this.maxEntries = this.counts.length >>> 1;
  }

  /** A new table for at least `entries` addresses (rounded up to a power of two, at least 1024). */
  static create(entries: number): SharedAddressTable {
    let slots = 2048;
    while (slots < entries * 2) slots *= 2;
    const counts = new SharedArrayBuffer(slots * 4);
    new Int32Array(counts).fill(-1);
    const origin = new SharedArrayBuffer(8);
    new Float64Array(origin)[0] = performance.timeOrigin;
    return new SharedAddressTable({
      origin,
      meta: new SharedArrayBuffer(META_INT32S * 4),
      keys: new SharedArrayBuffer(slots * KEY_INT32S * 4),
      counts,
      tats: new SharedArrayBuffer(slots * 8),
      seen: new SharedArrayBuffer(slots * 8),
    });
  }

  /** The same table in another thread. */
  static attach(share: SharedAddressTableShare): SharedAddressTable {
    return new SharedAddressTable(share);
  }

  share(): SharedAddressTableShare {
    return { origin: this.origin, meta: this.meta.buffer as SharedArrayBuffer, keys: this.keys.buffer as SharedArrayBuffer, counts: this.counts.buffer as SharedArrayBuffer, tats: this.tats.buffer as SharedArrayBuffer, seen: this.seen.buffer as SharedArrayBuffer };
  }

  /** Addresses held now (with connections open or a rate-limit debt, or not yet dropped). */
  get size(): number {
    return Atomics.load(this.meta, USED);
  }

  /**
   * Counts one more connection from `ip` unless it has `maxPerIp` open already (false then, nothing counted).
   * Also false when the table is full of addresses with open connections (it holds maxEntries).
   */
  enter(ip: string, maxPerIp: number, nowMs: number): boolean {
    const tableMs = nowMs + this.clockOffsetMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, true);
      if (slot < 0) return false;
      const open = this.counts[slot]!;
      if (open >= maxPerIp) return false;
      this.counts[slot] = open + 1;
      return true;
    } finally {
      this.unlock();
    }
  }

  /** Forgets one connection counted by enter(ip). A leave without a matching enter is ignored. */
  leave(ip: string, nowMs: number): void {
    const tableMs = nowMs + this.clockOffsetMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, false);
      if (slot < 0 || this.counts[slot]! === 0) return;
      this.counts[slot] = this.counts[slot]! - 1;
      if (this.counts[slot] === 0 && this.tats[slot]! <= tableMs) this.remove(slot);
    } finally {
      this.unlock();
    }
  }

  /** Open connections from `ip`. */
  openFrom(ip: string): number {
    this.lock();
    try {
      const slot = this.slotFor(ip, 0, false);
      return slot < 0 ? 0 : this.counts[slot]!;
    } finally {
      this.unlock();
    }
  }

  /**
   * GCRA, as RateLimiter.take: a token for `ip` at `nowMs` (this thread's performance.now(); see clockOffsetMs).
   * 0 when admitted, else milliseconds (>= 1) until a token is available. An address the full table cannot take
   * is admitted (the table forgets, it never refuses for itself).
   */
  take(ip: string, nowMs: number, intervalMs: number, toleranceMs: number): number {
    const tableMs = nowMs + this.clockOffsetMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, true);
      if (slot < 0) return 0;
      const stored = this.tats[slot]!;
      const newTat = (stored > tableMs ? stored : tableMs) + intervalMs;
      const excessMs = newTat - tableMs - toleranceMs;
      if (excessMs > EPSILON_MS) return Math.max(1, Math.ceil(excessMs));
      this.tats[slot] = newTat;
      return 0;
    } finally {
      this.unlock();
    }
  }

  /** The bucket of `ip` without taking a token. The returned object is reused by the next call. */
  peek(ip: string, nowMs: number, intervalMs: number, toleranceMs: number): Readonly<SharedRateState> {
    const tableMs = nowMs + this.clockOffsetMs;
    let stored = tableMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, false);
      if (slot >= 0) stored = this.tats[slot]!;
    } finally {
      this.unlock();
    }
    const debtMs = stored > tableMs ? stored - tableMs : 0;
    const remaining = Math.floor((toleranceMs - debtMs) / intervalMs + EPSILON_MS);
    this.state.remaining = remaining > 0 ? remaining : 0;
    this.state.resetSeconds = debtMs > 0 ? Math.ceil(debtMs / 1000) : 0;
    return this.state;
  }

  /** Every address's rate-limit state starts over (new rate settings); open connections stay counted. */
  clearRates(): void {
    this.lock();
    try {
      this.tats.fill(0);
    } finally {
      this.unlock();
    }
  }

  private lock(): void {
    const meta = this.meta;
    if (Atomics.compareExchange(meta, LOCK, 0, 1) === 0) return;
    for (let spins = 0; ; spins++) {
      if (Atomics.compareExchange(meta, LOCK, 0, 1) === 0) return;
      if (spins < SPINS_BEFORE_SLEEP) Atomics.pause();
      else Atomics.wait(meta, LOCK, 1, 1); // the holder notifies nobody: a timed wait bounds the sleep instead
    }
  }

  private unlock(): void {
    Atomics.store(this.meta, LOCK, 0);
  }

  /**
   * The slot holding `ip` (touched: last used now), or with `insert` a new one for it; -1 when absent (or the table
   * cannot take it). Called with the lock held.
   */
  private slotFor(ip: string, tableMs: number, insert: boolean): number {
    const words = this.words;
    if (ip !== this.lastIp) {
      // A connection's requests repeat its address: one parse for the run of them.
      keyWords(ip, words);
      this.lastIp = ip;
    }
    const w0 = words[0]!, w1 = words[1]!, w2 = words[2]!, w3 = words[3]!;
    const keys = this.keys;
    const counts = this.counts;
    const mask = this.mask;
    let slot = hashWords(w0, w1, w2, w3) & mask;
    for (;;) {
      if (counts[slot] === -1) break;
      const at = slot * KEY_INT32S;
      if (keys[at] === w0 && keys[at + 1] === w1 && keys[at + 2] === w2 && keys[at + 3] === w3) {
        if (insert) this.seen[slot] = tableMs;
        return slot;
      }
      slot = (slot + 1) & mask;
    }
    if (!insert) return -1;
    if (Atomics.load(this.meta, USED) >= this.maxEntries) {
      if (!this.evictOne(tableMs)) return -1;
      return this.slotFor(ip, tableMs, true); // the run may have shifted: look again
    }
    const at = slot * KEY_INT32S;
    keys[at] = w0;
    keys[at + 1] = w1;
    keys[at + 2] = w2;
    keys[at + 3] = w3;
    counts[slot] = 0;
    this.tats[slot] = 0;
    this.seen[slot] = tableMs;
    Atomics.store(this.meta, USED, Atomics.load(this.meta, USED) + 1);
    return slot;
  }

  /** Drops the least recently used slot without open connections among the next few; false when there is none. */
  private evictOne(tableMs: number): boolean {
    const counts = this.counts;
    let victim = -1;
    let oldest = Infinity;
    let slot = this.evictionCursor;
    for (let examined = 0; examined <= this.mask && (examined < EVICTION_CANDIDATES || victim < 0); examined++) {
      if (counts[slot] === 0) {
        const seen = this.tats[slot]! <= tableMs ? -1 : this.seen[slot]!; // no debt: the best victim
        if (seen < oldest) {
          oldest = seen;
          victim = slot;
        }
      }
      slot = (slot + 1) & this.mask;
    }
    this.evictionCursor = slot;
    if (victim < 0) return false;
    this.remove(victim);
    return true;
  }

  /** Empties `slot` and shifts back the entries after it that probed past it (backward-shift deletion). */
  private remove(slot: number): void {
    const keys = this.keys;
    const counts = this.counts;
    const mask = this.mask;
    let hole = slot;
    let next = (hole + 1) & mask;
    while (counts[next] !== -1) {
      const at = next * KEY_INT32S;
      const home = hashWords(keys[at]!, keys[at + 1]!, keys[at + 2]!, keys[at + 3]!) & mask;
      // Move `next` into the hole unless its home lies cyclically in (hole, next].
      const stays = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!stays) {
        const to = hole * KEY_INT32S;
        keys[to] = keys[at]!;
        keys[to + 1] = keys[at + 1]!;
        keys[to + 2] = keys[at + 2]!;
        keys[to + 3] = keys[at + 3]!;
        counts[hole] = counts[next]!;
        this.tats[hole] = this.tats[next]!;
        this.seen[hole] = this.seen[next]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    counts[hole] = -1;
    Atomics.store(this.meta, USED, Atomics.load(this.meta, USED) - 1);
  }
}

/** The address as four words; a string that is not an address (it should not happen) is hashed into them. */
function keyWords(ip: string, out: Int32Array): void {
  if (parseAddressInto(ip, out)) return;
  let a = 0x811c9dc5 | 0;
  let b = 0x01000193 | 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) + i;
  }
  out[0] = a;
  out[1] = b;
  out[2] = ip.length | 0x40000000; // outside the IPv4-mapped prefix, so never equal to a parsed address
  out[3] = Math.imul(a ^ b, 0x27d4eb2d);
}

function hashWords(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ w1 ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ w2 ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ w3 ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
