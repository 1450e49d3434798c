// The per-address table I/O threads share: connection counts, GCRA rate limits, deletion, eviction, several threads.
import { describe, expect, test } from "bun:test";
import { ConnectionGate, GateResult } from "../../src/net/connection-gate.ts";
import { RateLimiter, SharedRateLimiter } from "../../src/net/rate-limiter.ts";
import { EnterResult, SharedAddressTable } from "../../src/net/shared-address-table.ts";

const WORKER = new URL("../fixtures/shared-table-worker.ts", import.meta.url).href;

/** A deterministic pseudo-random sequence (tests must not depend on luck). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function runWorker(job: object): Promise<{ admitted: number; refused: number }> {
  const worker = new Worker(WORKER);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("worker took over 20 s")), 20_000);
    worker.onmessage = (event) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(event.data);
    };
    worker.onerror = (event) => {
      clearTimeout(timer);
      worker.terminate();
      reject(new Error(event.message));
    };
    worker.postMessage(job);
  });
}

describe("SharedAddressTable", () => {
  test("counts connections per address against a limit; an address with nothing open and no rate debt is dropped", () => {
    const table = SharedAddressTable.create(100);
    const now = 1_000_000;
    expect(table.enter("10.0.0.1", 2, now)).toBe(EnterResult.COUNTED);
    expect(table.enter("10.0.0.1", 2, now)).toBe(EnterResult.COUNTED);
    expect(table.enter("10.0.0.1", 2, now)).toBe(EnterResult.REFUSED);
    expect(table.enter("::ffff:10.0.0.2", 2, now)).toBe(EnterResult.COUNTED); // IPv4-mapped is the same key as plain IPv4
    expect(table.openFrom("10.0.0.2")).toBe(1);
    expect(table.openFrom("10.0.0.1")).toBe(2);
    expect(table.size).toBe(2);
    table.leave("10.0.0.1", now);
    expect(table.enter("10.0.0.1", 2, now)).toBe(EnterResult.COUNTED);
    table.leave("10.0.0.1", now);
    table.leave("10.0.0.1", now);
    table.leave("10.0.0.1", now); // unmatched: ignored
    expect(table.openFrom("10.0.0.1")).toBe(0);
    table.leave("10.0.0.2", now);
    expect(table.size).toBe(0);
    table.leave("10.9.9.9", now); // never seen: ignored
    expect(table.size).toBe(0);
  });

  test("take gives the same verdicts as the per-thread RateLimiter for the same requests", () => {
    const next = random(7);
    const table = SharedAddressTable.create(1000);
    const shared = new SharedRateLimiter(table, 5, 1, 8); // 5 per second, bursts of 8
    const local = new RateLimiter(5, 1, 8, 1000);
    const addresses = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"];
    let nowMs = 10_000;
    let refused = 0;
    for (let i = 0; i < 5000; i++) {
      nowMs += next() * 40;
      const ip = addresses[Math.floor(next() * addresses.length)]!;
      const expected = local.take(ip, nowMs);
      expect(shared.take(ip, nowMs)).toBe(expected);
      if (expected !== 0) refused++;
      if (i % 97 === 0) expect({ ...shared.peek(ip, nowMs) }).toEqual({ ...local.peek(ip, nowMs) });
    }
    expect(refused).toBeGreaterThan(100); // the sequence did hit the limit
    table.clearRates();
    expect(shared.take("192.0.2.1", nowMs)).toBe(0);
  });

  test("deletion keeps every other address findable (randomized against a Map)", () => {
    const next = random(11);
    const table = SharedAddressTable.create(1024);
    const model = new Map<string, number>();
    const pool = Array.from({ length: 600 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.${(i * 7) & 255}`);
    for (let step = 0; step < 40_000; step++) {
      const ip = pool[Math.floor(next() * pool.length)]!;
      const open = model.get(ip) ?? 0;
      if (next() < 0.55) {
        const admitted = table.enter(ip, 3, 1) === EnterResult.COUNTED;
        expect(admitted).toBe(open < 3);
        if (admitted) model.set(ip, open + 1);
      } else {
        table.leave(ip, 1);
        if (open > 0) model.set(ip, open - 1);
      }
      if (step % 1000 === 0) {
        for (const address of pool) expect(table.openFrom(address)).toBe(model.get(address) ?? 0);
      }
    }
    const live = [...model.values()].filter((open) => open > 0).length;
    expect(table.size).toBe(live);
  });

  test("full: the least recently used address without connections is forgotten first; open connections are never dropped", () => {
    const table = SharedAddressTable.create(1024);
    const capacity = table.maxEntries;
    const ms = (i: number) => 1_000_000 + i;
    // Every address owes tokens (a far-future tat), so none is free to drop by time.
    for (let i = 0; i < capacity; i++)
      expect(table.take(`10.1.${i >> 8}.${i & 255}`, ms(i), 1_000_000, 1_000_000)).toBe(0);
    expect(table.size).toBe(capacity);
    expect(table.enter("10.2.0.1", 1, ms(capacity))).toBe(EnterResult.COUNTED); // forgets one address to make room
    expect(table.size).toBe(capacity);
    // Remembered: its token still owed (a tat in the future); forgotten: a full bucket, as for an address never seen.
    const remembered = (i: number) => table.tatOf(`10.1.${i >> 8}.${i & 255}`, ms(capacity + 1)) > ms(capacity + 1);
    let forgotten = 0;
    for (let i = 0; i < capacity; i++) if (!remembered(i)) forgotten++;
    expect(forgotten).toBe(1);
    expect(remembered(capacity - 1)).toBe(true); // the most recent is kept (the victim is the oldest of those examined)
    // Fill with open connections: then nothing can be dropped; a newcomer is admitted without a per-address count
    // (the table was sized for the configured limits; it never refuses for its own sake), and no count is lost.
    const full = SharedAddressTable.create(1024);
    for (let i = 0; i < full.maxEntries; i++)
      expect(full.enter(`10.3.${i >> 8}.${i & 255}`, 1, 1)).toBe(EnterResult.COUNTED);
    expect(full.enter("10.4.0.1", 1, 1)).toBe(EnterResult.UNCOUNTED);
    expect(full.openFrom("10.4.0.1")).toBe(0);
    expect(full.size).toBe(full.maxEntries);
    for (let i = 0; i < full.maxEntries; i += 97) expect(full.openFrom(`10.3.${i >> 8}.${i & 255}`)).toBe(1);
  });

  test("a connection a full table admitted without a count leaves without taking another connection's count", () => {
    const table = SharedAddressTable.create(1024);
    const other = (i: number) => `10.5.${i >> 8}.${i & 255}`;
    for (let i = 0; i < table.maxEntries; i++) expect(table.enter(other(i), 1, 1)).toBe(EnterResult.COUNTED); // other threads' connections
    const gate = new ConnectionGate(1_000_000, 5, null, table);
    expect(gate.enter("10.9.9.9")).toBe(GateResult.ADMITTED); // admitted, not counted in the full table
    table.leave(other(0), 1); // room again...
    expect(table.enter("10.9.9.9", 5, 1)).toBe(EnterResult.COUNTED); // ...taken by another thread's connection from that address
    gate.leave("10.9.9.9");
    expect(table.openFrom("10.9.9.9")).toBe(1); // that connection is still counted
    expect(gate.openTotal).toBe(0);
  });

  test("each table hashes with its own random seed", () => {
    const seeds = new Set([0, 1, 2, 3].map(() => new Int32Array(SharedAddressTable.create(10).share().meta)[2]));
    expect(seeds.size).toBeGreaterThan(1);
  });

  test("a lock left held by a thread that died (terminated mid-operation) is taken over instead of hanging every thread", () => {
    const table = SharedAddressTable.create(10);
    Atomics.store(new Int32Array(table.share().meta), 0, 1); // held, by nobody alive
    const startedMs = performance.now();
    expect(table.enter("10.0.0.1", 1, 1)).toBe(EnterResult.COUNTED);
    const waitedMs = performance.now() - startedMs;
    expect(waitedMs).toBeGreaterThanOrEqual(900);
    expect(waitedMs).toBeLessThan(5000);
    expect(table.openFrom("10.0.0.1")).toBe(1); // and the table works normally afterwards
  });

  test("several threads: limits hold across them and every count returns to zero", async () => {
    const table = SharedAddressTable.create(1000);
    const addresses = Array.from({ length: 16 }, (_, i) => `172.16.0.${i}`);
    // Two threads hammer the same addresses with enter/leave pairs while this one holds one connection each.
    for (const ip of addresses) expect(table.enter(ip, 2, 1)).toBe(EnterResult.COUNTED);
    const [a, b] = await Promise.all([
      runWorker({ share: table.share(), kind: "pairs", addresses, rounds: 3000, maxPerIp: 2 }),
      runWorker({ share: table.share(), kind: "pairs", addresses, rounds: 3000, maxPerIp: 2 }),
    ]);
    expect(a.admitted + a.refused).toBe(48_000);
    expect(b.admitted + b.refused).toBe(48_000);
    for (const ip of addresses) expect(table.openFrom(ip)).toBe(1); // every pair left what it entered
    // Now the other threads only enter: between them they get exactly one more per address (the limit is 2).
    const [c, d] = await Promise.all([
      runWorker({ share: table.share(), kind: "enter", addresses, rounds: 50, maxPerIp: 2 }),
      runWorker({ share: table.share(), kind: "enter", addresses, rounds: 50, maxPerIp: 2 }),
    ]);
    expect(c.admitted + d.admitted).toBe(addresses.length);
    for (const ip of addresses) expect(table.openFrom(ip)).toBe(2);
  });
});
