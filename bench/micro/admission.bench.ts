// Per-request admission cost: limits + rate limiter (ours) against simpler table designs, in ns per request.
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { configSchema } from "../../src/config/schema.ts";
import { Admission } from "../../src/net/admission.ts";
import { RateLimiter, SharedRateLimiter } from "../../src/net/rate-limiter.ts";
import { SharedAddressTable } from "../../src/net/shared-address-table.ts";
import { CidrList } from "../../src/net/cidr.ts";
import { Stats } from "../../src/stats/stats.ts";

const ADDRESSES = Array.from({ length: 1024 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);
const ONE = "::ffff:127.0.0.1";
const HIGH_LIMIT = { enabled: true, requests: 1_000_000_000, window_s: 1, max_tracked_ips: 100_000 };

function admission(rateLimited: boolean): Admission {
  const config = configSchema.parse({ rate_limit: rateLimited ? HIGH_LIMIT : { enabled: false } });
  return new Admission(config, Stats.create());
}

/** Alternative table: Map<key, {tat}> with delete+set to move a key to the end (insertion order = recency). */
class MapReinsertLimiter {
  private readonly entries = new Map<string, { tat: number }>();
  constructor(
    private readonly intervalMs: number,
    private readonly toleranceMs: number,
    private readonly max: number,
  ) {}
  take(key: string, nowMs: number): number {
    let entry = this.entries.get(key);
    if (entry === undefined) {
      if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
      entry = { tat: nowMs };
    } else {
      this.entries.delete(key);
    }
    this.entries.set(key, entry);
    const newTat = Math.max(entry.tat, nowMs) + this.intervalMs;
    if (newTat - nowMs > this.toleranceMs) return Math.ceil(newTat - nowMs - this.toleranceMs);
    entry.tat = newTat;
    return 0;
  }
}

/** Alternative: Map<key, {tat}> with no recency (FIFO eviction): cheapest, but a busy client can be evicted. */
class MapFifoLimiter {
  private readonly entries = new Map<string, { tat: number }>();
  constructor(
    private readonly intervalMs: number,
    private readonly toleranceMs: number,
    private readonly max: number,
  ) {}
  take(key: string, nowMs: number): number {
    let entry = this.entries.get(key);
    if (entry === undefined) {
      if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
      entry = { tat: nowMs };
      this.entries.set(key, entry);
    }
    const newTat = Math.max(entry.tat, nowMs) + this.intervalMs;
    if (newTat - nowMs > this.toleranceMs) return Math.ceil(newTat - nowMs - this.toleranceMs);
    entry.tat = newTat;
    return 0;
  }
}

const off = admission(false);
const on = admission(true);
let nowMs = Date.now();
let next = 0;

summary(() => {
  group("per request, one client (admit + takeToken + release)", () => {
    bench("rate limit off", () => {
      off.admitConnection(ONE);
      do_not_optimize(off.takeToken(ONE, nowMs));
      off.releaseConnection(ONE);
    });
    bench("rate limit on", () => {
      on.admitConnection(ONE);
      do_not_optimize(on.takeToken(ONE, (nowMs += 0.001)));
      on.releaseConnection(ONE);
    });
    bench("rate limit on + Date.now() per call", () => {
      on.admitConnection(ONE);
      do_not_optimize(on.takeToken(ONE, Date.now()));
      on.releaseConnection(ONE);
    });
  });
});

summary(() => {
  group("per request, 1024 clients round robin", () => {
    bench("rate limit off", () => {
      const ip = ADDRESSES[next++ & 1023]!;
      off.admitConnection(ip);
      do_not_optimize(off.takeToken(ip, nowMs));
      off.releaseConnection(ip);
    });
    bench("rate limit on", () => {
      const ip = ADDRESSES[next++ & 1023]!;
      on.admitConnection(ip);
      do_not_optimize(on.takeToken(ip, (nowMs += 0.001)));
      on.releaseConnection(ip);
    });
  });
});

const interval = 1 / 1_000_000;
const ours = new RateLimiter(1_000_000_000, 1, 0, 100_000);
const reinsert = new MapReinsertLimiter(interval, 1e9 * interval, 100_000);
const fifo = new MapFifoLimiter(interval, 1e9 * interval, 100_000);

summary(() => {
  group("rate limiter table alone, 1024 clients", () => {
    bench("typed-array LRU list + Map<string, slot> (ours)", () =>
      do_not_optimize(ours.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
    );
    bench("Map delete+set reinsertion LRU", () =>
      do_not_optimize(reinsert.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
    );
    bench("Map, no recency (FIFO eviction)", () =>
      do_not_optimize(fifo.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
    );
  });
});

// With server.io_threads > 1 the limiter and the per-address connection counts live in one table every thread shares.
const sharedTable = SharedAddressTable.create(100_000);
const shared = new SharedRateLimiter(sharedTable, 1_000_000_000, 1, 0);
const sharedAdmission = new Admission(
  configSchema.parse({ rate_limit: HIGH_LIMIT }),
  Stats.create(),
  undefined,
  new Int32Array(new SharedArrayBuffer(4)),
  SharedAddressTable.create(100_000),
);
summary(() => {
  group("shared by I/O threads (one thread measuring: the uncontended cost), 1024 clients", () => {
    bench("rate limiter table alone: per thread (ours)", () =>
      do_not_optimize(ours.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
    );
    bench("rate limiter table alone: shared (lock + parse + probe)", () =>
      do_not_optimize(shared.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
    );
    bench("per request (admit + takeToken + release): shared", () => {
      const ip = ADDRESSES[next++ & 1023]!;
      sharedAdmission.admitConnection(ip);
      do_not_optimize(sharedAdmission.takeToken(ip, (nowMs += 0.001)));
      sharedAdmission.releaseConnection(ip);
    });
  });
});

const small = new RateLimiter(1_000_000_000, 1, 0, 1000);
group("rate limiter, table full and churning (flood of distinct addresses)", () => {
  bench("take with eviction (1024 keys, 1000 slots)", () =>
    do_not_optimize(small.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
  );
});

const denyList = new CidrList(["192.0.2.0/24", "2001:db8::/32", "198.51.100.0/24", "203.0.113.0/24"]);
const withLists = new Admission(
  configSchema.parse({ net: { deny: ["192.0.2.0/24", "2001:db8::/32", "198.51.100.0/24", "203.0.113.0/24"] } }),
  Stats.create(),
);
summary(() => {
  group("allow/deny: 4 CIDRs", () => {
    bench("CidrList.contains (parse + match), IPv4-mapped peer", () => do_not_optimize(denyList.contains(ONE)));
    bench("CidrList.contains (parse + match), IPv6 peer", () => do_not_optimize(denyList.contains("2001:db9::1")));
    bench("Admission.isAllowed (decision cache), 1024 clients", () =>
      do_not_optimize(withLists.isAllowed(ADDRESSES[next++ & 1023]!)),
    );
  });
});

group("client address", () => {
  bench("no trusted proxies, IPv4-mapped peer", () => do_not_optimize(on.clientAddress(ONE, null)));
  bench("no trusted proxies, IPv4 peer", () => do_not_optimize(on.clientAddress("127.0.0.1", null)));
});

await run();
