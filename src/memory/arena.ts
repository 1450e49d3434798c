// Payload buffers: the interface the pool and the protocol allocate through, and the arena `memory.arena` asks for:
// size-class slabs over a SharedArrayBuffer that every thread can allocate from and free into (slab-arena.ts), or
// ordinary allocations under the same budget (heap-arena.ts).
import { HeapArena } from "./heap-arena.ts";
import { SlabArena } from "./slab-arena.ts";

export interface ArenaStats {
  bytesInUse: number;
  peakBytes: number;
  allocations: number;
  frees: number;
  failures: number;
  fallbacks: number;
  violations: number;
  capacityBytes: number;
  /** Bytes held in ordinary memory (fallbacks; every allocation of a HeapArena), counted until freed. */
  heapBytesInUse: number;
  /** The most `heapBytesInUse` may reach. */
  heapBudgetBytes: number;
  /** Allocations refused because they would pass heapBudgetBytes (also counted in `failures`). */
  heapFailures: number;
  /** Slots in use per class, smallest class first. */
  classInUse: number[];
  /** Slabs held per class (empty ones included until defragmented). */
  classSlabs: number[];
}

/** The interface the pool and the protocol use; `SlabArena` and `HeapArena` implement it. */
export interface BufferArena {
  /** Whether handles >= 0 live in shared memory another thread can read by offset. */
  readonly shared: boolean;
  /** The whole shared data buffer as bytes (empty for HeapArena): write at `offsetOf(handle)` without a new view. */
  readonly bytes: Uint8Array;
  /** Room for `bytes`; `null` when the arena is exhausted (callers answer busy). Never throws. */
  alloc(bytes: number): number | null;
  free(handle: number): void;
  /** Byte offset of a shared handle in `bytes`. */
  offsetOf(handle: number): number;
  /** Usable bytes of the slot behind a handle. */
  capacityOf(handle: number): number;
  /** A view of the first `length` bytes behind a handle (allocates a view object). */
  view(handle: number, length: number): Uint8Array;
  /** Empty slabs given back for any class to use; returns how many. */
  defragment(): number;
  stats(): ArenaStats;
}

/** The arena `memory.arena` asks for: a shared slab arena, or ordinary allocations behind the same interface. */
/** Ordinary memory for payloads is bounded by memory.arena_bytes too: fallbacks beside the arena, or everything without one. */
export function createArena(
  memory: { readonly arena: boolean; readonly arena_bytes: number; readonly debug: boolean },
  onViolation?: (message: string) => void,
): BufferArena {
  return memory.arena
    ? SlabArena.create({
        arenaBytes: memory.arena_bytes,
        debug: memory.debug,
        reclaimOnExhaustion: true,
        heapBudgetBytes: memory.arena_bytes,
        onViolation,
      })
    : new HeapArena(memory.arena_bytes);
}
