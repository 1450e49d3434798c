// Ordinary allocations under a byte budget: the slab arena's fallback for requests above its top class, and the
// whole arena with `memory.arena = false`.
import type { ArenaStats, BufferArena } from "./arena.ts";

/**
 * Ordinary allocations addressed by handles from -2 down (-1 is never a handle: callers use it for "none"): the fallback for large requests, and `memory.arena = false`.
 * Counts the bytes it holds against a budget; a buffer's bytes stay counted until `remove`, also when it was
 * transferred to another thread (detached) meanwhile, since the memory lives on there.
 */
export class HeapTable {
  private readonly buffers: (Uint8Array | undefined)[] = [];
  /** Bytes of each entry as allocated (a detached buffer reads as 0). */
  private readonly sizes: number[] = [];
  private readonly freeIndexes: number[] = [];
  bytesInUse = 0;
  failures = 0;

  constructor(readonly budgetBytes: number) {}

  /** A new buffer of `bytes`, or null when it would pass the budget (counted). */
  add(bytes: number): number | null {
    if (this.bytesInUse + bytes > this.budgetBytes) {
      this.failures++;
      return null;
    }
    const index = this.freeIndexes.length > 0 ? this.freeIndexes.pop()! : this.buffers.length;
    this.buffers[index] = new Uint8Array(bytes);
    this.sizes[index] = bytes;
    this.bytesInUse += bytes;
    return -index - 2;
  }

  get(handle: number): Uint8Array | undefined {
    return this.buffers[-handle - 2];
  }

  /** Bytes the entry was allocated with, or -1 when the handle is unknown (freed already). */
  remove(handle: number): number {
    const index = -handle - 2;
    if (this.buffers[index] === undefined) return -1;
    this.buffers[index] = undefined;
    this.freeIndexes.push(index);
    const bytes = this.sizes[index]!;
    this.bytesInUse -= bytes;
    return bytes;
  }
}

/** `memory.arena = false`: ordinary allocations, same interface; nothing is shared, so the pool sends bytes by message. */
export class HeapArena implements BufferArena {
  readonly shared = false;
  readonly bytes = new Uint8Array(0);
  private readonly heap: HeapTable;
  private allocations = 0;
  private frees = 0;
  private peakBytes = 0;

  /** `budgetBytes`: the most bytes held at once (memory.arena_bytes); past it `alloc` answers null. */
  constructor(budgetBytes: number) {
    this.heap = new HeapTable(budgetBytes);
  }

  alloc(bytes: number): number | null {
    const handle = this.heap.add(bytes);
    if (handle === null) return null;
    this.allocations++;
    if (this.heap.bytesInUse > this.peakBytes) this.peakBytes = this.heap.bytesInUse;
    return handle;
  }

  free(handle: number): void {
    if (this.heap.remove(handle) >= 0) this.frees++;
  }

  offsetOf(_handle: number): number {
    return -1;
  }

  capacityOf(handle: number): number {
    return this.heap.get(handle)?.length ?? 0;
  }

  view(handle: number, length: number): Uint8Array {
    const buffer = this.heap.get(handle) ?? new Uint8Array(0);
    return length === buffer.length ? buffer : buffer.subarray(0, length);
  }

  defragment(): number {
    return 0;
  }

  stats(): ArenaStats {
    return {
      bytesInUse: this.heap.bytesInUse,
      peakBytes: this.peakBytes,
      allocations: this.allocations,
      frees: this.frees,
      failures: this.heap.failures,
      fallbacks: 0,
      violations: 0,
      capacityBytes: 0,
      heapBytesInUse: this.heap.bytesInUse,
      heapBudgetBytes: this.heap.budgetBytes,
      heapFailures: this.heap.failures,
      classInUse: [],
      classSlabs: [],
    };
  }
}
