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
// finds it held spins briefly (Atomics.pause), then sleeps on it until the holder's unlock notifies; the holder
// never blocks or allocates inside, so the wait is bounded by a few hundred nanoseconds of work. The hash is seeded
// per table, so clients cannot pick addresses that pile up in one run of slots.
import { parseAddressInto } from "./cidr.ts";
import { nextTat, waitMs } from "./gcra.ts";

const LOCK = 0;
const USED = 1;
/** Random per table: keeps clients from choosing addresses that collide (the hash is not theirs to predict). */
const SEED = 2;
const META_INT32S = 4;
// Lock word states (a futex-style mutex): free, held, held with threads asleep on it.
const FREE = 0;
const HELD = 1;
const CONTENDED = 2;
/** A lock held this long is taken to belong to a thread that died holding it (an operation takes well under 1 µs). */
const STALE_LOCK_MS = 1000;
/** At most this many slots are examined for one to drop when the table is full. */
const EVICTION_SCAN_LIMIT = 4096;
const KEY_INT32S = 4;
// One slot, 40 bytes, all its fields together (one or two cache lines per lookup): as Int32 words the key (0-3) and
// the open-connection count (4; -1 = empty slot); as Float64 words the tat (3) and the last use (4).
const SLOT_BYTES = 40;
const SLOT_INT32S = SLOT_BYTES / 4;
const SLOT_FLOAT64S = SLOT_BYTES / 8;
const COUNT = 4;
const TAT = 3;
const SEEN = 4;
/** Slots examined for the least recently used droppable one when the table is full. */
const EVICTION_CANDIDATES = 64;
const SPINS_BEFORE_SLEEP = 128;

/** What SharedAddressTable.enter decided. */
export const EnterResult = { COUNTED: 0, REFUSED: 1, UNCOUNTED: 2 } as const;

/** What the table is made of, to hand to another thread (postMessage) and attach there. */
export interface SharedAddressTableShare {
  readonly meta: SharedArrayBuffer;
  /** [0]: the creating thread's performance.timeOrigin, the table clock's zero. */
  readonly origin: SharedArrayBuffer;
  readonly slots: SharedArrayBuffer;
}

export class SharedAddressTable {
  /** Addresses held at most (half the slots). */
  readonly maxEntries: number;
  private readonly meta: Int32Array;
  /** The slots (SLOT_BYTES each) as Int32 and as Float64 words. */
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly mask: number;
  private readonly words = new Int32Array(KEY_INT32S);
  private evictionCursor = 0;
  /** The address `words` hold now (this thread's last lookup). */
  private lastIp = "";
  private readonly origin: SharedArrayBuffer;
  /**
   * Added to this thread's performance.now() to get the table clock (milliseconds since the creating thread's time
   * origin): small numbers, so the GCRA arithmetic keeps sub-microsecond precision, the same in every thread.
   */
  private readonly clockOffsetMs: number;
  private readonly seed: number;
  /** True in the thread that created the table (the main thread): it alone clears rates on a reload. */
  isCreator = false;

  private constructor(share: SharedAddressTableShare) {
    this.origin = share.origin;
    this.clockOffsetMs = performance.timeOrigin - new Float64Array(share.origin)[0]!;
    this.meta = new Int32Array(share.meta);
    this.seed = this.meta[SEED]!;
    this.ints = new Int32Array(share.slots);
    this.floats = new Float64Array(share.slots);
    const slotCount = share.slots.byteLength / SLOT_BYTES;
    this.mask = slotCount - 1;
    this.maxEntries = slotCount >>> 1;
  }

  /** A new table for at least `entries` addresses (rounded up to a power of two, at least 1024). */
  static create(entries: number): SharedAddressTable {
    let slots = 2048;
    while (slots < entries * 2) slots *= 2;
    const slotBuffer = new SharedArrayBuffer(slots * SLOT_BYTES);
    const ints = new Int32Array(slotBuffer);
    for (let slot = 0; slot < slots; slot++) ints[slot * SLOT_INT32S + COUNT] = -1;
    const origin = new SharedArrayBuffer(8);
    new Float64Array(origin)[0] = performance.timeOrigin;
    const meta = new SharedArrayBuffer(META_INT32S * 4);
    new Int32Array(meta)[SEED] = crypto.getRandomValues(new Int32Array(1))[0]!;
    const table = new SharedAddressTable({
      origin,
      meta,
      slots: slotBuffer,
    });
    table.isCreator = true;
    return table;
  }

  /** The same table in another thread. */
  static attach(share: SharedAddressTableShare): SharedAddressTable {
    return new SharedAddressTable(share);
  }

  share(): SharedAddressTableShare {
    return {
      origin: this.origin,
      meta: this.meta.buffer as SharedArrayBuffer,
      slots: this.ints.buffer as SharedArrayBuffer,
    };
  }

  /** Addresses held now (with connections open or a rate-limit debt, or not yet dropped). */
  get size(): number {
    return Atomics.load(this.meta, USED);
  }

  /**
   * Counts one more connection from `ip` unless it has `maxPerIp` open already (EnterResult.REFUSED, nothing
   * counted). When the table is full of addresses with connections open (it was sized at start for
   * limits.max_connections + rate_limit.max_tracked_ips), the connection is admitted without being counted per
   * address (UNCOUNTED: the caller must not leave() it): the total limit still holds, and nobody is refused for the
   * table's sake.
   */
  enter(ip: string, maxPerIp: number, nowMs: number): number {
    const tableMs = nowMs + this.clockOffsetMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, true);
      if (slot < 0) return EnterResult.UNCOUNTED;
      const at = slot * SLOT_INT32S + COUNT;
      const open = this.ints[at]!;
      if (open >= maxPerIp) return EnterResult.REFUSED;
      this.ints[at] = open + 1;
      return EnterResult.COUNTED;
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
      if (slot < 0) return;
      const at = slot * SLOT_INT32S + COUNT;
      const open = this.ints[at]!;
      if (open === 0) return;
      this.ints[at] = open - 1;
      if (open === 1 && this.floats[slot * SLOT_FLOAT64S + TAT]! <= tableMs) this.remove(slot);
    } finally {
      this.unlock();
    }
  }

  /** Open connections from `ip`. */
  openFrom(ip: string): number {
    this.lock();
    try {
      const slot = this.slotFor(ip, 0, false);
      return slot < 0 ? 0 : this.ints[slot * SLOT_INT32S + COUNT]!;
    } finally {
      this.unlock();
    }
  }

  /**
   * GCRA (src/net/gcra.ts), as RateLimiter.take: a token for `ip` at `nowMs` (this thread's performance.now(); see clockOffsetMs).
   * 0 when admitted, else milliseconds (>= 1) until a token is available. An address the full table cannot take
   * is admitted (the table forgets, it never refuses for itself).
   */
  take(ip: string, nowMs: number, intervalMs: number, toleranceMs: number): number {
    const tableMs = nowMs + this.clockOffsetMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, true);
      if (slot < 0) return 0;
      const at = slot * SLOT_FLOAT64S + TAT;
      const newTat = nextTat(this.floats[at]!, tableMs, intervalMs);
      const wait = waitMs(newTat, tableMs, toleranceMs);
      if (wait === 0) this.floats[at] = newTat;
      return wait;
    } finally {
      this.unlock();
    }
  }

  /** The tat of `ip` on the caller's clock (this thread's performance.now()): `nowMs` for an address not held. */
  tatOf(ip: string, nowMs: number): number {
    const tableMs = nowMs + this.clockOffsetMs;
    this.lock();
    try {
      const slot = this.slotFor(ip, tableMs, false);
      return slot < 0 ? nowMs : this.floats[slot * SLOT_FLOAT64S + TAT]! - this.clockOffsetMs;
    } finally {
      this.unlock();
    }
  }

  /** Every address's rate-limit state starts over (new rate settings); open connections stay counted. */
  clearRates(): void {
    this.lock();
    try {
      const floats = this.floats;
      for (let at = TAT; at < floats.length; at += SLOT_FLOAT64S) floats[at] = 0;
    } finally {
      this.unlock();
    }
  }

  private lock(): void {
    const meta = this.meta;
    if (Atomics.compareExchange(meta, LOCK, FREE, HELD) === FREE) return;
    for (let spins = 0; spins < SPINS_BEFORE_SLEEP; spins++) {
      Atomics.pause();
      if (Atomics.compareExchange(meta, LOCK, FREE, HELD) === FREE) return;
    }
    // Sleep until the holder's unlock notifies (state CONTENDED tells it someone sleeps). The 1 ms timeout only
    // bounds the wait should a notify race past; a holder that never lets go within STALE_LOCK_MS died holding it
    // (a thread terminated mid-operation): the lock is taken over rather than every thread hanging forever.
    const startedMs = performance.now();
    while (Atomics.exchange(meta, LOCK, CONTENDED) !== FREE) {
      Atomics.wait(meta, LOCK, CONTENDED, 1);
      if (performance.now() - startedMs > STALE_LOCK_MS) {
        Atomics.store(meta, LOCK, CONTENDED);
        return;
      }
    }
  }

  private unlock(): void {
    if (Atomics.exchange(this.meta, LOCK, FREE) === CONTENDED) Atomics.notify(this.meta, LOCK, 1);
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
    const w0 = words[0]!,
      w1 = words[1]!,
      w2 = words[2]!,
      w3 = words[3]!;
    const ints = this.ints;
    const mask = this.mask;
    let slot = hashWords(this.seed, w0, w1, w2, w3) & mask;
    for (;;) {
      const at = slot * SLOT_INT32S;
      if (ints[at + COUNT] === -1) break;
      if (ints[at] === w0 && ints[at + 1] === w1 && ints[at + 2] === w2 && ints[at + 3] === w3) {
        if (insert) this.floats[slot * SLOT_FLOAT64S + SEEN] = tableMs;
        return slot;
      }
      slot = (slot + 1) & mask;
    }
    if (!insert) return -1;
    if (Atomics.load(this.meta, USED) >= this.maxEntries) {
      if (!this.evictOne(tableMs)) return -1;
      return this.slotFor(ip, tableMs, true); // the run may have shifted: look again
    }
    const at = slot * SLOT_INT32S;
    ints[at] = w0;
    ints[at + 1] = w1;
    ints[at + 2] = w2;
    ints[at + 3] = w3;
    ints[at + COUNT] = 0;
    this.floats[slot * SLOT_FLOAT64S + TAT] = 0;
    this.floats[slot * SLOT_FLOAT64S + SEEN] = tableMs;
    Atomics.store(this.meta, USED, Atomics.load(this.meta, USED) + 1);
    return slot;
  }

  /** Drops the least recently used slot without open connections among the next few; false when there is none. */
  private evictOne(tableMs: number): boolean {
    const ints = this.ints;
    const floats = this.floats;
    let victim = -1;
    let oldest = Infinity;
    let slot = this.evictionCursor;
    const limit = Math.min(this.mask + 1, EVICTION_SCAN_LIMIT);
    for (let examined = 0; examined < limit && (examined < EVICTION_CANDIDATES || victim < 0); examined++) {
      if (ints[slot * SLOT_INT32S + COUNT] === 0) {
        const at = slot * SLOT_FLOAT64S;
        const seen = floats[at + TAT]! <= tableMs ? -1 : floats[at + SEEN]!; // no debt: the best victim
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
    const ints = this.ints;
    const floats = this.floats;
    const mask = this.mask;
    let hole = slot;
    let next = (hole + 1) & mask;
    while (ints[next * SLOT_INT32S + COUNT] !== -1) {
      const at = next * SLOT_INT32S;
      const home = hashWords(this.seed, ints[at]!, ints[at + 1]!, ints[at + 2]!, ints[at + 3]!) & mask;
      // Move `next` into the hole unless its home lies cyclically in (hole, next].
      const stays = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!stays) {
        const to = hole * SLOT_INT32S;
        for (let i = 0; i <= COUNT; i++) ints[to + i] = ints[at + i]!;
        floats[hole * SLOT_FLOAT64S + TAT] = floats[next * SLOT_FLOAT64S + TAT]!;
        floats[hole * SLOT_FLOAT64S + SEEN] = floats[next * SLOT_FLOAT64S + SEEN]!;
        hole = next;
      }
      next = (next + 1) & mask;
    }
    ints[hole * SLOT_INT32S + COUNT] = -1;
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
  out[2] = ip.length | 0x40000000; // (an IPv6 address could in theory have the same words: it would share the entry)
  out[3] = Math.imul(a ^ b, 0x27d4eb2d);
}

/** Seeded: each word goes through a full avalanche (murmur3's finalizer) before it is folded into the next. */
function hashWords(seed: number, w0: number, w1: number, w2: number, w3: number): number {
  let h = fmix32(seed ^ w0);
  h = fmix32(h ^ w1);
  h = fmix32(h ^ w2);
  return fmix32(h ^ w3) >>> 0;
}

function fmix32(value: number): number {
  let h = value ^ (value >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
