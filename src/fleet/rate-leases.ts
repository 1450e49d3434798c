// The fleet's rate limiter: GCRA buckets kept in Redis, spent locally from token leases, so no request waits on Redis.
//
// Per address the fleet keeps one GCRA bucket (src/fleet/scripts.ts RATE_LEASE, the arithmetic of src/net/gcra.ts).
// This thread leases small batches of tokens from it and spends them locally: a request with a token in hand is
// admitted at once, and the lease is topped up in the background when it runs low. Batches are sized to last about
// fleet.sync_interval_ms of the address's traffic, at most its fair share of the burst (capacity / holders), so a hot
// address costs about one Redis call per interval, whatever its request rate.
//
// A request that finds no token is admitted on credit, and the credit is charged to the fleet's bucket with the next
// call, even past empty: so the fleet-wide count stays exact over time, and what credit lets through early is
// refused later. An address this holder has not heard the fleet about yet gets credit up to its fair share of the
// burst (a new client is not kept waiting a round trip); after that, up to its part of what the bucket holds as last
// seen (so a generous limit never refuses while a top-up is out). Once the fleet says the bucket is empty, requests
// are refused until its next token is due (no sooner than a sync interval after the last call: tokens due meanwhile
// wait in the bucket), and then each holder admits its part of them on credit. How far past the burst the first
// instants of an address can go is thus bounded by a fair share per holder that meets it at once. Leases of
// addresses quiet for two intervals are given back.
//
// While Redis is unavailable, tokens in hand are still spent (the fleet granted them); the rest is decided by
// fleet.on_redis_down: this thread's own limiter (local), everyone admitted (allow) or everyone refused (deny).
import { bucketState, waitMs } from "../net/gcra.ts";
import type { AddressRateLimiter, RateLimitState } from "../net/rate-limiter.ts";
import { Batcher } from "./batcher.ts";
import { FleetField } from "./counters.ts";
import type { RedisLink } from "./redis-link.ts";
import { RATE_LEASE } from "./scripts.ts";

/** What the limiter needs from the thread's fleet member. */
export interface LeaseContext {
  readonly link: RedisLink;
  /** This thread's row of fleet counters. */
  readonly counters: Float64Array;
  /** Lease holders alive in the fleet (each I/O thread of each instance), as last seen; at least 1. */
  readonly holders: number;
  readonly keyPrefix: string;
  readonly syncIntervalMs: number;
  readonly onRedisDown: OnRedisDown;
}

export type OnRedisDown = "local" | "allow" | "deny";

export interface RateSettings {
  readonly requests: number;
  readonly windowSeconds: number;
  /** 0 = same as requests. */
  readonly burst: number;
  readonly maxTrackedIps: number;
}

/** What a request refused with on_redis_down = deny waits (Retry-After: 1). */
const DENY_WAIT_MS = 1000;

/** One address's lease, linked in recency order (most recent first) so quiet ones are found from the tail. */
class Lease {
  readonly key: string;
  /** Tokens granted by the fleet and not yet spent. */
  tokens = 0;
  /** Requests admitted without a token, not yet charged to the fleet. */
  credit = 0;
  /** Tokens asked for in the last call (the batch size); the lease is topped up at half of it. */
  batch = 0;
  /** Requests admitted since the last call went out (demand, for the next batch's size). */
  spentSinceCall = 0;
  lastCallMs = 0;
  lastTakeMs: number;
  /** The fleet has answered about this address at least once. */
  answered = false;
  /** The fleet's tat for this address on this thread's clock, as of its last answer. */
  fleetTatMs: number;
  /** The last answer granted less than asked: no token before emptyUntilMs. */
  fleetEmpty = false;
  emptyUntilMs = 0;
  queued = false;
  /** The next call gives the tokens back (and charges the credit) instead of asking for more. */
  givingBack = false;
  /** Out of the table (a closed limiter): whatever a call in flight grants goes back too. */
  retiring = false;
  /** A call about this address is out; what it asked for, and the credit it charged (still counted as credit). */
  inFlight = false;
  asked = 0;
  charging = 0;
  prev: Lease | null = null;
  next: Lease | null = null;

  constructor(key: string, nowMs: number) {
    this.key = key;
    this.lastTakeMs = nowMs;
    this.fleetTatMs = nowMs;
  }
}

export class FleetRateLimiter implements AddressRateLimiter {
  readonly intervalMs: number;
  readonly capacity: number;
  private readonly toleranceMs: number;
  private readonly maxTracked: number;
  private readonly context: LeaseContext;
  /** This thread's own limiter: on_redis_down = local, and addresses past max_tracked_ips. */
  private readonly local: AddressRateLimiter;
  private readonly leases = new Map<string, Lease>();
  private head: Lease | null = null;
  private tail: Lease | null = null;
  private readonly batcher: Batcher<Lease>;
  private readonly state: RateLimitState;
  private readonly keyPrefix: string;
  private readonly intervalArg: string;
  private readonly toleranceArg: string;
  private closed = false;
  /** Tokens in hand over every lease (a gauge). */
  private tokensHeld = 0;

  constructor(context: LeaseContext, settings: RateSettings, local: AddressRateLimiter) {
    this.context = context;
    this.local = local;
    this.intervalMs = (settings.windowSeconds * 1000) / settings.requests;
    this.capacity = settings.burst === 0 ? settings.requests : settings.burst;
    this.toleranceMs = this.capacity * this.intervalMs;
    this.maxTracked = settings.maxTrackedIps;
    this.state = { limit: this.capacity, remaining: this.capacity, resetSeconds: 0 };
    this.keyPrefix = `${context.keyPrefix}rate:`;
    this.intervalArg = String(this.intervalMs);
    this.toleranceArg = String(this.toleranceMs);
    this.batcher = new Batcher<Lease>(
      (batch) => this.call(batch),
      () => context.link.up,
    );
  }

  /** Addresses this thread holds a lease for. */
  get size(): number {
    return this.leases.size;
  }

  /** 0 when admitted, else milliseconds (>= 1) until the fleet expects a token for `key`. Never waits on Redis. */
  take(key: string, nowMs: number): number {
    let lease = this.leases.get(key);
    if (lease === undefined) {
      if (!this.context.link.up) return this.whileDown(key, nowMs);
      // A table full of busy addresses: the newcomer is judged by this thread alone rather than evicting one of them.
      if (this.leases.size >= this.maxTracked || this.closed) return this.local.take(key, nowMs);
      lease = this.insert(key, nowMs);
    } else if (lease !== this.head) {
      this.unlink(lease);
      this.linkAtHead(lease);
    }
    lease.lastTakeMs = nowMs;
    if (lease.tokens > 0) {
      lease.tokens--;
      this.tokensHeld--;
      lease.spentSinceCall++;
      if (lease.tokens * 2 <= lease.batch && !lease.fleetEmpty) this.batcher.add(lease);
      return 0;
    }
    const context = this.context;
    if (!context.link.up) return this.whileDown(key, nowMs);
    if (lease.fleetEmpty && nowMs < lease.emptyUntilMs) return Math.max(1, Math.ceil(lease.emptyUntilMs - nowMs));
    // Credit: a fair share of the burst before the fleet's first answer about the address (so a new client is not
    // kept waiting a round trip); after it, this holder's part of what the bucket holds now as last seen (its tat
    // then, refilled since; all holders may take their parts at once), and at least one request, to learn whether
    // the fleet's next token is ours.
    const creditLimit = lease.answered
      ? Math.max(1, Math.floor(this.tokensAsLastSeen(lease, nowMs) / context.holders))
      : this.shareTokens();
    if (lease.credit + lease.charging < creditLimit) {
      lease.credit++;
      lease.spentSinceCall++;
      context.counters[FleetField.creditAdmitted]! += 1;
      this.batcher.add(lease);
      return 0;
    }
    this.batcher.add(lease);
    return Math.max(1, waitMs(Math.max(lease.fleetTatMs, nowMs) + this.intervalMs, nowMs, this.toleranceMs));
  }

  /** The bucket as this thread sees it: the fleet's last answer, less the tokens in hand, plus credit not yet charged. */
  peek(key: string, nowMs: number): Readonly<RateLimitState> {
    if (!this.context.link.up && this.context.onRedisDown === "local") return this.local.peek(key, nowMs);
    const lease = this.leases.get(key);
    const tatMs =
      lease === undefined
        ? nowMs
        : Math.max(lease.fleetTatMs, nowMs) - lease.tokens * this.intervalMs + lease.credit * this.intervalMs;
    bucketState(this.state, tatMs, nowMs, this.intervalMs, this.toleranceMs);
    return this.state;
  }

  /**
   * Every fleet.sync_interval_ms: leases quiet for two intervals give their tokens back (and charge their credit),
   * and leave the table once the fleet's bucket, as last seen, is full again. Forgotten earlier, an address over its
   * limit that pauses would get a new address's credit when it comes back. Nothing is given back while Redis is
   * unavailable (there is nowhere to give it). Also publishes this thread's gauges.
   */
  tick(nowMs: number): void {
    // While Redis is away there is nowhere to give tokens back to: leases (and what they hold) wait for it.
    if (!this.context.link.up) {
      this.publishGauges();
      return;
    }
    const quietMs = 2 * this.context.syncIntervalMs;
    let lease = this.tail;
    while (lease !== null && lease.lastTakeMs < nowMs - quietMs) {
      const before = lease.prev;
      if (lease.tokens > 0 || lease.credit > 0) {
        lease.givingBack = true;
        this.batcher.add(lease);
      }
      if (lease.fleetTatMs <= nowMs && !lease.queued && !lease.inFlight) {
        this.unlink(lease);
        this.leases.delete(lease.key);
      } else {
        // Looked at again once its bucket is full as last seen (the walk stops at the first lease not quiet by then).
        lease.lastTakeMs = Math.max(lease.fleetTatMs, nowMs) - quietMs;
        this.unlink(lease);
        this.linkAtHead(lease);
      }
      lease = before;
    }
    this.publishGauges();
  }

  /** Redis answers again: what waited to be charged goes out now. */
  onLinkUp(): void {
    for (const lease of this.leases.values()) if (lease.credit > 0) this.batcher.add(lease);
  }

  /** Gives every lease back (a reload replaced this limiter, or the server stops); resolves when sent or failed. */
  async close(): Promise<void> {
    this.closed = true;
    for (let lease = this.tail; lease !== null; lease = this.tail) this.retire(lease);
    this.publishGauges();
    await this.batcher.settle();
  }

  /** Resolves once no call is queued or out (tests; a clean stop). */
  settle(): Promise<void> {
    return this.batcher.settle();
  }

  /** Tokens the fleet's bucket for `lease` holds at `nowMs`, from its tat at the last answer (refilled since). */
  private tokensAsLastSeen(lease: Lease, nowMs: number): number {
    const debtMs = lease.fleetTatMs > nowMs ? lease.fleetTatMs - nowMs : 0;
    return Math.max(0, Math.floor((this.toleranceMs - debtMs) / this.intervalMs + 1e-9));
  }

  private shareTokens(): number {
    return Math.max(1, Math.floor(this.capacity / this.context.holders));
  }

  private whileDown(key: string, nowMs: number): number {
    const context = this.context;
    context.counters[FleetField.fallbackDecisions]! += 1;
    if (context.onRedisDown === "local") return this.local.take(key, nowMs);
    return context.onRedisDown === "allow" ? 0 : DENY_WAIT_MS;
  }

  /** Out of the table; its tokens (or credit) go back to the fleet with the next call. */
  private retire(lease: Lease): void {
    this.unlink(lease);
    this.leases.delete(lease.key);
    if (lease.tokens === 0 && lease.credit === 0) return;
    lease.retiring = true;
    if (this.context.link.up) this.batcher.add(lease);
  }

  /** One RATE_LEASE call for `batch`; applies the answer. Never rejects. */
  private async call(batch: readonly Lease[]): Promise<void> {
    const keys: string[] = [];
    const args: string[] = [this.intervalArg, this.toleranceArg];
    const nowMs = performance.now();
    const share = this.shareTokens();
    for (const lease of batch) {
      keys.push(this.keyPrefix + lease.key);
      let want = 0;
      let charge = lease.credit;
      if (lease.retiring || lease.givingBack) {
        charge -= lease.tokens;
        this.tokensHeld -= lease.tokens;
        lease.tokens = 0;
        lease.givingBack = false;
      } else {
        want = this.batchSize(lease, nowMs, share);
        lease.spentSinceCall = 0;
        lease.lastCallMs = nowMs;
      }
      lease.charging = lease.credit;
      lease.credit = 0;
      lease.asked = want;
      lease.inFlight = true;
      args.push(String(want), String(charge));
    }
    let reply: unknown;
    try {
      reply = await this.context.link.run(RATE_LEASE, keys, args);
    } catch {
      // Redis is down now (the link logged and counted it); what was charged may or may not have landed.
      for (const lease of batch) {
        lease.inFlight = false;
        lease.asked = 0;
        lease.charging = 0;
      }
      return;
    }
    this.apply(batch, reply, performance.now());
  }

  /**
   * Tokens to ask for: the address's recent demand over two sync intervals and a few round trips (the top-up must
   * come back before the lease runs out), 1 at least, the fair share at most.
   */
  private batchSize(lease: Lease, nowMs: number, share: number): number {
    if (!lease.answered) return share;
    const elapsedMs = Math.max(1, nowMs - lease.lastCallMs);
    const perMs = lease.spentSinceCall / elapsedMs;
    const roundTripMs = this.context.counters[FleetField.roundTripMicros]! / 1000;
    const wanted = Math.ceil(perMs * (2 * this.context.syncIntervalMs + 4 * roundTripMs));
    return Math.min(share, Math.max(1, wanted));
  }

  private apply(batch: readonly Lease[], reply: unknown, replyMs: number): void {
    const values = Array.isArray(reply) ? reply : [];
    const counters = this.context.counters;
    for (let i = 0; i < batch.length; i++) {
      const lease = batch[i]!;
      const granted = Math.max(0, Math.floor(Number(values[3 * i]) || 0));
      const debtMs = Math.max(0, Number(values[3 * i + 1]) || 0);
      if (values[3 * i + 2] === 1) counters[FleetField.repairedKeys]! += 1;
      const asked = lease.asked;
      lease.inFlight = false;
      lease.asked = 0;
      lease.charging = 0;
      if (lease.retiring) {
        // Retired while this call was out: what it was granted goes back too (what it charged stays charged).
        if (granted > 0) {
          lease.tokens += granted;
          this.tokensHeld += granted;
          this.batcher.add(lease);
        }
        continue;
      }
      lease.answered = true;
      lease.fleetTatMs = replyMs + debtMs;
      let tokens = lease.tokens + granted;
      // Credit given while the call was out is paid from the grant first.
      const paid = Math.min(lease.credit, tokens);
      tokens -= paid;
      lease.credit -= paid;
      this.tokensHeld += tokens - lease.tokens;
      lease.tokens = tokens;
      if (asked > 0) lease.batch = asked;
      // Empty: fewer tokens than asked, or none due yet (a bucket in debt, as after credit beyond it).
      lease.fleetEmpty = granted < asked || lease.fleetTatMs + this.intervalMs - this.toleranceMs > replyMs;
      // The next token is due when the bucket's tat is back within the tolerance of one more request; asking sooner
      // than a sync interval after the last call gains nothing (tokens due meanwhile wait in the bucket, and the
      // next call takes them together), so an address over its limit costs a call per interval, not per token.
      lease.emptyUntilMs = lease.fleetEmpty
        ? Math.max(
            lease.fleetTatMs + this.intervalMs - this.toleranceMs,
            lease.lastCallMs + this.context.syncIntervalMs,
          )
        : 0;
      // Credit still unpaid (the fleet had too few tokens) must reach the fleet: it is what keeps the count exact.
      if (lease.credit > 0 && this.leases.get(lease.key) === lease) this.batcher.add(lease);
    }
  }

  private insert(key: string, nowMs: number): Lease {
    const lease = new Lease(key, nowMs);
    this.leases.set(key, lease);
    this.linkAtHead(lease);
    return lease;
  }

  private unlink(lease: Lease): void {
    if (lease.prev === null) this.head = lease.next;
    else lease.prev.next = lease.next;
    if (lease.next === null) this.tail = lease.prev;
    else lease.next.prev = lease.prev;
    lease.prev = null;
    lease.next = null;
  }

  private linkAtHead(lease: Lease): void {
    lease.next = this.head;
    if (this.head !== null) this.head.prev = lease;
    this.head = lease;
    if (this.tail === null) this.tail = lease;
  }

  private publishGauges(): void {
    const counters = this.context.counters;
    counters[FleetField.rateAddresses] = this.leases.size;
    counters[FleetField.leasedTokens] = this.tokensHeld;
  }
}
