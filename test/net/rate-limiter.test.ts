// Rate limiter: GCRA arithmetic, least-recently-seen eviction and the table's bound.
import { describe, expect, test } from "bun:test";
import { RateLimiter } from "../../src/net/rate-limiter.ts";

describe("GCRA", () => {
  test("a full bucket, then one token per interval; waiting refills up to capacity only", () => {
    const limiter = new RateLimiter(5, 1, 0, 100); // 200 ms per token, bucket 5
    for (let i = 0; i < 5; i++) expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBe(200);
    expect(limiter.take("a", 199)).toBe(1);
    expect(limiter.take("a", 200)).toBe(0);
    // A long quiet period refills to 5, not more.
    for (let i = 0; i < 5; i++) expect(limiter.take("a", 100_000)).toBe(0);
    expect(limiter.take("a", 100_000)).toBeGreaterThan(0);
  });

  test("refused requests do not consume tokens", () => {
    const limiter = new RateLimiter(1, 1, 0, 10);
    expect(limiter.take("a", 0)).toBe(0);
    for (let i = 0; i < 100; i++) expect(limiter.take("a", 500)).toBe(500);
    expect(limiter.take("a", 1000)).toBe(0);
  });

  test("fractional intervals (3 per second) do not drift", () => {
    const limiter = new RateLimiter(3, 1, 1, 10);
    let admitted = 0;
    for (let t = 0; t < 10_000; t++) if (limiter.take("a", t) === 0) admitted++;
    expect(admitted).toBe(30); // exactly the rate over 10 s (first at t=0, then every 333.33 ms)
  });

  test("peek reports remaining and reset without taking", () => {
    const limiter = new RateLimiter(10, 10, 0, 10); // 1 per second, bucket 10
    expect(limiter.peek("a", 0).remaining).toBe(10);
    limiter.take("a", 0);
    limiter.take("a", 0);
    expect(limiter.peek("a", 0).remaining).toBe(8);
    expect(limiter.peek("a", 0).resetSeconds).toBe(2);
    expect(limiter.peek("a", 0).remaining).toBe(8);
    expect(limiter.peek("a", 1500).remaining).toBe(9);
    expect(limiter.size).toBe(1);
  });
});

describe("bounded table", () => {
  test("grows past the initial slot count and never beyond max_tracked_ips", () => {
    const limiter = new RateLimiter(1, 60, 0, 3000);
    for (let i = 0; i < 10_000; i++) limiter.take(`k${i}`, 0);
    expect(limiter.size).toBe(3000);
    // The 3000 most recent keys are remembered (their bucket is empty), older ones are forgotten (full).
    expect(limiter.take("k9999", 0)).toBeGreaterThan(0);
    expect(limiter.take("k7000", 0)).toBeGreaterThan(0);
    expect(limiter.size).toBe(3000);
    expect(limiter.take("k0", 0)).toBe(0);
  });

  test("evicts the least recently seen address, not the oldest inserted", () => {
    const limiter = new RateLimiter(1, 60, 0, 3);
    limiter.take("a", 0);
    limiter.take("b", 0);
    limiter.take("c", 0);
    expect(limiter.take("a", 1)).toBeGreaterThan(0); // a seen again: now b is least recent
    limiter.take("d", 2); // evicts b
    expect(limiter.size).toBe(3);
    expect(limiter.take("a", 3)).toBeGreaterThan(0);
    expect(limiter.take("c", 3)).toBeGreaterThan(0);
    expect(limiter.take("d", 3)).toBeGreaterThan(0);
    expect(limiter.take("b", 3)).toBe(0); // forgotten, so a fresh bucket (this evicts a)
    expect(limiter.take("a", 4)).toBe(0);
  });

  test("a table of one", () => {
    const limiter = new RateLimiter(1, 60, 0, 1);
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBeGreaterThan(0);
    expect(limiter.take("b", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.size).toBe(1);
  });

  test("clear forgets everything", () => {
    const limiter = new RateLimiter(1, 60, 0, 10);
    limiter.take("a", 0);
    limiter.clear();
    expect(limiter.size).toBe(0);
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("b", 0)).toBe(0);
    expect(limiter.size).toBe(2);
  });
});
