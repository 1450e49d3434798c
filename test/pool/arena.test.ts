// Arena: slot invariants under random alloc/free, cross-thread free, exhaustion, defragment, debug checks, heap mode.
import { describe, expect, test } from "bun:test";
import { createArena } from "../../src/memory/arena.ts";
import { HeapArena } from "../../src/memory/heap-arena.ts";
import {
  CLASS_COUNT,
  MAX_CLASS_BYTES,
  MIN_CLASS_BYTES,
  SLAB_BYTES,
  SlabArena,
  classOf,
} from "../../src/memory/slab-arena.ts";

const KiB = 1024;

function newArena(
  slabs: number,
  options: { debug?: boolean; reclaim?: boolean; violations?: string[]; heapBudgetBytes?: number } = {},
): SlabArena {
  return SlabArena.create({
    arenaBytes: slabs * SLAB_BYTES,
    debug: options.debug ?? false,
    reclaimOnExhaustion: options.reclaim ?? false,
    heapBudgetBytes: options.heapBudgetBytes ?? slabs * SLAB_BYTES,
    onViolation: (message) => options.violations?.push(message),
  });
}

/** Small deterministic PRNG so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("size classes", () => {
  test("powers of two from 256 B to 64 KiB", () => {
    expect(classOf(1)).toBe(0);
    expect(classOf(256)).toBe(0);
    expect(classOf(257)).toBe(1);
    expect(classOf(64 * KiB)).toBe(CLASS_COUNT - 1);
    expect(MIN_CLASS_BYTES << classOf(3000)).toBe(4096);
  });
});

describe("SlabArena", () => {
  test("random alloc/free: slots never overlap, contents survive, every byte is accounted", () => {
    for (const debug of [false, true]) {
      const arena = newArena(32, { debug, reclaim: true });
      const next = random(debug ? 7 : 42);
      const live = new Map<number, { offset: number; capacity: number; fill: number; bytes: number }>();
      let expectedBytes = 0;
      for (let step = 0; step < 20_000; step++) {
        if (live.size > 0 && (next() < 0.45 || live.size > 600)) {
          const handles = [...live.keys()];
          const handle = handles[Math.floor(next() * handles.length)]!;
          const slot = live.get(handle)!;
          // contents still what we wrote: no one else's slot overlapped it
          const bytes = arena.bytes.subarray(slot.offset, slot.offset + slot.bytes);
          expect(bytes.every((b) => b === slot.fill)).toBe(true);
          arena.free(handle);
          live.delete(handle);
          expectedBytes -= slot.capacity;
        } else {
          const size = 1 + Math.floor(next() ** 3 * MAX_CLASS_BYTES);
          const handle = arena.alloc(size);
          if (handle === null) continue;
          const offset = arena.offsetOf(handle);
          const capacity = arena.capacityOf(handle);
          expect(capacity).toBeGreaterThanOrEqual(size);
          expect(offset % capacity).toBe(0);
          expect(offset + capacity).toBeLessThanOrEqual(arena.capacityBytes);
          const fill = step & 0xff;
          arena.bytes.fill(fill, offset, offset + size);
          live.set(handle, { offset, capacity, fill, bytes: size });
          expectedBytes += capacity;
        }
        if (step % 1000 === 0) {
          const ranges = [...live.values()].sort((a, b) => a.offset - b.offset);
          for (let i = 1; i < ranges.length; i++)
            expect(ranges[i]!.offset).toBeGreaterThanOrEqual(ranges[i - 1]!.offset + ranges[i - 1]!.capacity);
          const stats = arena.stats();
          expect(stats.bytesInUse).toBe(expectedBytes);
          expect(stats.allocations - stats.frees).toBe(live.size);
          expect(stats.classInUse.reduce((a, b) => a + b, 0)).toBe(live.size);
        }
      }
      for (const handle of live.keys()) arena.free(handle);
      const stats = arena.stats();
      expect(stats.bytesInUse).toBe(0);
      expect(stats.violations).toBe(0);
      expect(stats.peakBytes).toBeGreaterThan(0);
      expect(arena.defragment()).toBe(stats.classSlabs.reduce((a, b) => a + b, 0));
      // all slabs free again: the whole arena can be taken by the top class
      const whole: number[] = [];
      for (let i = 0; i < 32; i++) whole.push(arena.alloc(MAX_CLASS_BYTES)!);
      expect(whole.every((h) => h !== null)).toBe(true);
      expect(arena.alloc(MAX_CLASS_BYTES)).toBeNull();
    }
  }, 30_000); // CPU-bound: several seconds on a loaded machine

  test("exhaustion returns null (counted as a failure), never throws", () => {
    const arena = newArena(2);
    const handles: number[] = [];
    for (let i = 0; i < 2 * (SLAB_BYTES / 4096); i++) handles.push(arena.alloc(4000)!);
    expect(handles.every((h) => typeof h === "number")).toBe(true);
    expect(arena.alloc(4000)).toBeNull();
    expect(arena.alloc(100)).toBeNull();
    expect(arena.stats().failures).toBe(2);
    arena.free(handles[0]!);
    expect(arena.alloc(4000)).not.toBeNull();
  });

  test("requests above 64 KiB fall back to ordinary memory, counted", () => {
    const arena = newArena(1, { heapBudgetBytes: 1 << 20 });
    const handle = arena.alloc(100_000)!;
    expect(handle).toBeLessThan(0);
    expect(arena.capacityOf(handle)).toBe(100_000);
    const view = arena.view(handle, 100_000);
    view[99_999] = 7;
    expect(arena.view(handle, 100_000)[99_999]).toBe(7);
    expect(arena.stats().fallbacks).toBe(1);
    expect(arena.stats().bytesInUse).toBe(0);
    expect(arena.stats().heapBytesInUse).toBe(100_000);
    arena.free(handle);
    expect(arena.stats().heapBytesInUse).toBe(0);
  });

  test("fallbacks share a byte budget: past it alloc answers null (counted), and freed bytes come back", () => {
    const arena = newArena(1, { heapBudgetBytes: 250_000 });
    const first = arena.alloc(100_000)!;
    const second = arena.alloc(100_000)!;
    expect(first).toBeLessThan(0);
    expect(second).toBeLessThan(0);
    expect(arena.alloc(100_000)).toBeNull();
    expect(arena.alloc(50_000)).not.toBeNull(); // a slot in the slabs: not part of the budget
    let stats = arena.stats();
    expect(stats.heapBytesInUse).toBe(200_000);
    expect(stats.heapBudgetBytes).toBe(250_000);
    expect(stats.heapFailures).toBe(1);
    expect(stats.failures).toBe(1);
    expect(stats.fallbacks).toBe(2);
    arena.free(first);
    expect(arena.alloc(150_000)).not.toBeNull();
    expect(arena.alloc(300_000)).toBeNull(); // larger than the whole budget: never fits
    stats = arena.stats();
    expect(stats.heapBytesInUse).toBe(250_000);
    expect(stats.heapFailures).toBe(2);
  });

  test("a fallback's bytes stay counted until it is freed, even after its buffer was transferred away", () => {
    const arena = newArena(1, { heapBudgetBytes: 150_000 });
    const handle = arena.alloc(100_000)!;
    const view = arena.view(handle, 100_000);
    structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] }); // detaches it, as postMessage with transfer does
    expect(view.length).toBe(0);
    expect(arena.alloc(100_000)).toBeNull();
    arena.free(handle);
    expect(arena.stats().heapBytesInUse).toBe(0);
    expect(arena.alloc(100_000)).not.toBeNull();
  });

  test("defragment: a class starved after a phase shift recovers once empty slabs are given back", () => {
    const arena = newArena(4);
    // phase 1: small buffers take every slab
    const small: number[] = [];
    for (;;) {
      const handle = arena.alloc(200);
      if (handle === null) break;
      small.push(handle);
    }
    expect(small.length).toBe(4 * (SLAB_BYTES / MIN_CLASS_BYTES));
    for (const handle of small) arena.free(handle);
    // phase 2: large buffers; the small class still holds the (empty) slabs
    expect(arena.alloc(40 * KiB)).toBeNull();
    expect(arena.stats().classSlabs[0]).toBe(4);
    expect(arena.defragment()).toBe(4);
    const large = [arena.alloc(40 * KiB), arena.alloc(40 * KiB), arena.alloc(40 * KiB), arena.alloc(40 * KiB)];
    expect(large.every((h) => h !== null)).toBe(true);
    expect(arena.stats().classSlabs[classOf(40 * KiB)]).toBe(4);
  });

  test("reclaimOnExhaustion takes empty slabs of other classes by itself", () => {
    const arena = newArena(2, { reclaim: true });
    const handles = [arena.alloc(300)!, arena.alloc(5000)!];
    for (const handle of handles) arena.free(handle);
    expect(arena.alloc(MAX_CLASS_BYTES)).not.toBeNull();
    expect(arena.alloc(MAX_CLASS_BYTES)).not.toBeNull();
    expect(arena.alloc(MAX_CLASS_BYTES)).toBeNull();
  });

  test("debug mode reports double free and use after free, and keeps the free lists intact", () => {
    const violations: string[] = [];
    const arena = newArena(1, { debug: true, violations });
    const first = arena.alloc(100)!;
    arena.free(first);
    arena.free(first);
    expect(violations.length).toBe(1);
    expect(violations[0]).toContain("double free");
    const second = arena.alloc(100)!; // reuses the slot under a new generation
    expect(arena.offsetOf(second)).toBe(arena.offsetOf(first));
    expect(arena.isLive(first)).toBe(false);
    expect(arena.isLive(second)).toBe(true);
    arena.view(first, 10);
    expect(violations[1]).toContain("use after free");
    arena.free(first); // stale handle must not free the new owner's slot
    expect(violations[2]).toContain("stale handle");
    expect(arena.isLive(second)).toBe(true);
    const third = arena.alloc(100)!;
    expect(arena.offsetOf(third)).not.toBe(arena.offsetOf(second));
    expect(arena.stats().violations).toBe(3);
  });

  test("a slot allocated on one thread can be freed on another, and vice versa", async () => {
    const arena = newArena(16);
    const worker = new Worker(new URL("../fixtures/arena-worker.ts", import.meta.url).href);
    try {
      const replies: Record<string, unknown>[] = [];
      worker.onmessage = (event) => replies.push(event.data);
      const reply = async (count: number) => {
        const deadline = Date.now() + 5000;
        while (replies.length < count && Date.now() < deadline) await Bun.sleep(2);
        expect(replies.length).toBe(count);
        return replies[count - 1]!;
      };
      worker.postMessage({ share: arena.shareable() });
      await reply(1);
      // main allocates, worker frees
      const mine: number[] = [];
      for (let i = 0; i < 200; i++) mine.push(arena.alloc(1000)!);
      worker.postMessage({ free: mine });
      expect((await reply(2)).freed).toBe(200);
      expect(arena.stats().bytesInUse).toBe(0);
      // worker allocates and writes while main allocates too; then main frees the worker's slots
      worker.postMessage({ alloc: { count: 300, bytes: 700, fill: 0xab } });
      const concurrent: number[] = [];
      for (let i = 0; i < 300; i++) {
        const handle = arena.alloc(700)!;
        arena.bytes.fill(0xcd, arena.offsetOf(handle), arena.offsetOf(handle) + 700);
        concurrent.push(handle);
      }
      const theirs = (await reply(3)).allocated as number[];
      expect(theirs.length).toBe(300);
      for (const handle of theirs) expect(arena.view(handle, 700).every((b) => b === 0xab)).toBe(true);
      for (const handle of concurrent) expect(arena.view(handle, 700).every((b) => b === 0xcd)).toBe(true);
      const offsets = new Set([...theirs, ...concurrent].map((h) => arena.offsetOf(h)));
      expect(offsets.size).toBe(600);
      for (const handle of [...theirs, ...concurrent]) arena.free(handle);
      const stats = arena.stats();
      expect(stats.bytesInUse).toBe(0);
      expect(stats.allocations).toBe(800);
      expect(stats.frees).toBe(800);
    } finally {
      worker.terminate();
    }
  });

  test("a lock left by a dead thread can be released by its id", () => {
    const arena = newArena(1);
    const foreign = SlabArena.attach(arena.shareable(), 9);
    // simulate a thread killed inside the critical section
    const header = new Int32Array(arena.shareable().meta, 0, 1);
    Atomics.store(header, 0, 9);
    expect(arena.releaseLockHeldBy(3)).toBe(false);
    expect(arena.releaseLockHeldBy(9)).toBe(true);
    expect(foreign.alloc(10)).not.toBeNull();
  });
});

describe("memory.arena = false", () => {
  test("ordinary allocations through the same interface", () => {
    const arena = createArena({ arena: false, arena_bytes: 1 << 20, debug: false });
    expect(arena).toBeInstanceOf(HeapArena);
    expect(arena.shared).toBe(false);
    const handle = arena.alloc(1000)!;
    arena.view(handle, 1000).fill(3);
    expect(arena.view(handle, 10)).toEqual(new Uint8Array(10).fill(3));
    expect(arena.stats().bytesInUse).toBe(1000);
    arena.free(handle);
    expect(arena.stats().bytesInUse).toBe(0);
    expect(createArena({ arena: true, arena_bytes: 1 << 20, debug: false }).shared).toBe(true);
  });

  test("payload memory is bounded by memory.arena_bytes here too: past it alloc answers null, counted", () => {
    const arena = createArena({ arena: false, arena_bytes: 256 * KiB, debug: false });
    const handles = [arena.alloc(100 * KiB)!, arena.alloc(100 * KiB)!];
    const view = arena.view(handles[0]!, 100 * KiB);
    structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] }); // sent to a worker: still counted until freed
    expect(arena.alloc(100 * KiB)).toBeNull();
    expect(arena.alloc(56 * KiB)).not.toBeNull();
    const stats = arena.stats();
    expect(stats.failures).toBe(1);
    expect(stats.heapFailures).toBe(1);
    expect(stats.bytesInUse).toBe(256 * KiB);
    expect(stats.heapBudgetBytes).toBe(256 * KiB);
    arena.free(handles[0]!);
    expect(arena.stats().bytesInUse).toBe(156 * KiB);
    expect(arena.alloc(100 * KiB)).not.toBeNull();
  });
});
