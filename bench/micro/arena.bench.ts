// Arena alloc+free (with the payload copy the pool does) against new Uint8Array(n) and Buffer.allocUnsafe(n), 64 B - 64 KiB.
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { SlabArena } from "../../src/memory/slab-arena.ts";

const SIZES = [64, 1024, 16 * 1024, 64 * 1024];
const arena = SlabArena.create({
  arenaBytes: 16 * 1024 * 1024,
  debug: false,
  reclaimOnExhaustion: true,
  heapBudgetBytes: 16 * 1024 * 1024,
});
const debugArena = SlabArena.create({
  arenaBytes: 16 * 1024 * 1024,
  debug: true,
  reclaimOnExhaustion: true,
  heapBudgetBytes: 16 * 1024 * 1024,
});

for (const size of SIZES) {
  const payload = new Uint8Array(size).fill(7);
  group(`${size} B: get a buffer, copy a payload in, release it`, () => {
    summary(() => {
      bench("arena alloc + set + free", () => {
        const handle = arena.alloc(size)!;
        arena.bytes.set(payload, arena.offsetOf(handle));
        arena.free(handle);
      });
      bench("arena (debug) alloc + set + free", () => {
        const handle = debugArena.alloc(size)!;
        debugArena.bytes.set(payload, debugArena.offsetOf(handle));
        debugArena.free(handle);
      });
      bench("new Uint8Array(n) + set", () => {
        const buffer = new Uint8Array(size);
        buffer.set(payload);
        do_not_optimize(buffer);
      });
      bench("Buffer.allocUnsafe(n) + set", () => {
        const buffer = Buffer.allocUnsafe(size);
        buffer.set(payload);
        do_not_optimize(buffer);
      });
    });
  });
}

await run();
