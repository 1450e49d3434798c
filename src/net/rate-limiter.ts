// Per-address rate limiter: GCRA (src/net/gcra.ts) in a bounded least-recently-seen table.
//
// An address whose tat is in the past has a full bucket, the same as an address never seen, so evicting the
// least recently seen address loses at most the state of the quietest client.
//
// The table: Map<address, slot> plus, per slot, tat and prev/next links in typed arrays (a doubly linked
// recency list). A hit is one Map.get and a few array stores; nothing is allocated once the arrays have grown.

import { bucketState, nextTat, waitMs } from "./gcra.ts";
import type { SharedAddressTable } from "./shared-address-table.ts";

const NONE = -1;
/** Slots allocated at first; the arrays double up to maxTrackedIps. */
const INITIAL_SLOTS = 1024;

export interface RateLimitState {
  /** Bucket capacity: requests allowed at once. */
  limit: number;
  /** Requests the address could make now. */
  remaining: number;
  /** Seconds until the bucket is full again (0 when it is). */
  resetSeconds: number;
}

/** What Admission needs of a rate limiter: one per thread (RateLimiter) or shared by every I/O thread (SharedRateLimiter). */
export interface AddressRateLimiter {
  take(key: string, nowMs: number): number;
  peek(key: string, nowMs: number): Readonly<RateLimitState>;
  readonly size: number;
}

/**
 * The same GCRA over the table every I/O thread shares (server.io_threads > 1), so a client's rate is one rate
 * whichever thread its connections land on. `nowMs` is this thread's performance.now() (the table converts it to
 * the clock all threads share).
 */
export class SharedRateLimiter implements AddressRateLimiter {
  readonly intervalMs: number;
  readonly capacity: number;
  private readonly toleranceMs: number;
  private readonly table: SharedAddressTable;
  private readonly state: RateLimitState;

  constructor(table: SharedAddressTable, requests: number, windowSeconds: number, burst: number) {
    this.table = table;
    this.intervalMs = (windowSeconds * 1000) / requests;
    this.capacity = burst === 0 ? requests : burst;
    this.toleranceMs = this.capacity * this.intervalMs;
    this.state = { limit: this.capacity, remaining: this.capacity, resetSeconds: 0 };
  }

  get size(): number {
    return this.table.size;
  }

  take(key: string, nowMs: number): number {
    return this.table.take(key, nowMs, this.intervalMs, this.toleranceMs);
  }

  peek(key: string, nowMs: number): Readonly<RateLimitState> {
    bucketState(this.state, this.table.tatOf(key, nowMs), nowMs, this.intervalMs, this.toleranceMs);
    return this.state;
  }
}

export class RateLimiter implements AddressRateLimiter {
  /** Milliseconds per token (window / requests). */
  readonly intervalMs: number;
  /** Requests allowed at once (the bucket size). */
  readonly capacity: number;
  private readonly toleranceMs: number;
  private readonly maxTracked: number;
  private readonly slotOf = new Map<string, number>();
  private keys: string[] = [];
  private tats: Float64Array;
  private prev: Int32Array;
  private next: Int32Array;
  /** Most recently seen slot. */
  private head = NONE;
  /** Least recently seen slot (evicted first). */
  private tail = NONE;
  private readonly state: RateLimitState;

  /**
   * @param requests tokens per window (the sustained rate)
   * @param windowSeconds the window
   * @param burst bucket size; 0 = same as requests
   * @param maxTrackedIps addresses remembered at most
   */
  constructor(requests: number, windowSeconds: number, burst: number, maxTrackedIps: number) {
    this.intervalMs = (windowSeconds * 1000) / requests;
    this.capacity = burst === 0 ? requests : burst;
    this.toleranceMs = this.capacity * this.intervalMs;
    this.maxTracked = maxTrackedIps;
    const slots = Math.min(INITIAL_SLOTS, maxTrackedIps);
    this.tats = new Float64Array(slots);
    this.prev = new Int32Array(slots);
    this.next = new Int32Array(slots);
    this.state = { limit: this.capacity, remaining: this.capacity, resetSeconds: 0 };
  }

  /** Addresses in the table now. */
  get size(): number {
    return this.slotOf.size;
  }

  /** Takes one token for `key` at `nowMs`: 0 when admitted, else milliseconds (>= 1) until a token is available. */
  take(key: string, nowMs: number): number {
    let slot = this.slotOf.get(key);
    if (slot === undefined) slot = this.insert(key, nowMs);
    else this.touch(slot);
    const newTat = nextTat(this.tats[slot]!, nowMs, this.intervalMs);
    const wait = waitMs(newTat, nowMs, this.toleranceMs);
    if (wait === 0) this.tats[slot] = newTat;
    return wait;
  }

  /**
   * The bucket of `key` at `nowMs` without taking a token. The returned object is reused by the next call:
   * read it at once, do not keep it.
   */
  peek(key: string, nowMs: number): Readonly<RateLimitState> {
    const slot = this.slotOf.get(key);
    bucketState(this.state, slot === undefined ? nowMs : this.tats[slot]!, nowMs, this.intervalMs, this.toleranceMs);
    return this.state;
  }

  /** Forgets every address. */
  clear(): void {
    this.slotOf.clear();
    this.keys = [];
    this.head = NONE;
    this.tail = NONE;
  }

  private insert(key: string, nowMs: number): number {
    let slot: number;
    if (this.slotOf.size < this.maxTracked) {
      slot = this.slotOf.size;
      if (slot === this.tats.length) this.grow();
    } else {
      // Full: reuse the least recently seen slot.
      slot = this.tail;
      this.slotOf.delete(this.keys[slot]!);
      this.unlink(slot);
    }
    this.keys[slot] = key;
    this.slotOf.set(key, slot);
    this.tats[slot] = nowMs;
    this.linkAtHead(slot);
    return slot;
  }

  private touch(slot: number): void {
    if (slot === this.head) return;
    this.unlink(slot);
    this.linkAtHead(slot);
  }

  private unlink(slot: number): void {
    const before = this.prev[slot]!;
    const after = this.next[slot]!;
    if (before === NONE) this.head = after;
    else this.next[before] = after;
    if (after === NONE) this.tail = before;
    else this.prev[after] = before;
  }

  private linkAtHead(slot: number): void {
    this.prev[slot] = NONE;
    this.next[slot] = this.head;
    if (this.head !== NONE) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail === NONE) this.tail = slot;
  }

  private grow(): void {
    const slots = Math.min(this.tats.length * 2, this.maxTracked);
    const tats = new Float64Array(slots);
    tats.set(this.tats);
    const prev = new Int32Array(slots);
    prev.set(this.prev);
    const next = new Int32Array(slots);
    next.set(this.next);
    this.tats = tats;
    this.prev = prev;
    this.next = next;
  }
}
