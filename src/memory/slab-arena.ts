// Size-class slabs over a SharedArrayBuffer that every thread can allocate from and free into.
//
// Layout: the data buffer is cut into 64 KiB slabs; a slab belongs to one size class (256 B ... 64 KiB, powers of
// two) while it holds slots, and goes back to the shared free-slab stack when `defragment()` (or, with
// `reclaimOnExhaustion`, an allocation that finds no free slab) gives its empty slabs back. All bookkeeping lives in
// a second SharedArrayBuffer (Int32 lists, Float64 stats) guarded by one spin lock taken with Atomics, so a slot
// allocated on one thread may be freed on any other. The lock word holds the owner's id, so the pool can release
// a lock left behind by a worker that was terminated inside the (few-instruction) critical section.
//
// A handle is a plain number (no object per allocation): the slot's byte offset, plus, in debug mode, a generation
// tag times 2^34 that detects double free and use after free. Requests above the top class fall back to ordinary
// `Uint8Array`s, addressed by negative handles and counted as fallbacks; their bytes share a budget (the pool's:
// memory.arena_bytes) and count against it until the handle is freed, even when the buffer was transferred to
// another thread meanwhile, so large payloads cannot grow memory without bound (HeapTable, heap-arena.ts).
import type { ArenaStats, BufferArena } from "./arena.ts";
import { HeapTable } from "./heap-arena.ts";

/** Smallest slot: 256 B. */
export const MIN_CLASS_BYTES = 256;
const MIN_CLASS_SHIFT = 8;
/** Largest slot, and the slab size: 64 KiB. */
export const MAX_CLASS_BYTES = 64 * 1024;
const SLAB_SHIFT = 16;
export const SLAB_BYTES = MAX_CLASS_BYTES;
/** Size classes: 256, 512, ..., 65536 bytes. */
export const CLASS_COUNT = SLAB_SHIFT - MIN_CLASS_SHIFT + 1;
/** Offsets stay below 2^34 (16 GiB, the schema's maximum); the debug generation tag sits above. */
const GENERATION_FACTOR = 2 ** 34;
const GENERATION_MASK = 0x3ffff;
const NONE = -1;

// Int32 header words.
const LOCK = 0;
const FREE_SLAB_HEAD = 1;
const PARTIAL_HEAD = 2; // CLASS_COUNT words
const CLASS_SLABS = PARTIAL_HEAD + CLASS_COUNT; // slabs owned per class
const HEADER_INT32S = 32;
// Float64 stats words (after the header).
const STAT_BYTES_IN_USE = 0;
const STAT_PEAK_BYTES = 1;
const STAT_ALLOCATIONS = 2;
const STAT_FREES = 3;
const STAT_FAILURES = 4;
const STAT_FALLBACKS = 5;
const STAT_VIOLATIONS = 6;
const STAT_CLASS_IN_USE = 7; // CLASS_COUNT words: slots in use per class
const STAT_FLOATS = STAT_CLASS_IN_USE + CLASS_COUNT;

/** Main thread's lock owner id; pool workers use 2 and up. */
export const MAIN_THREAD_LOCK_ID = 1;

export interface ArenaOptions {
  /** Bytes of the shared data buffer (rounded down to whole 64 KiB slabs). */
  readonly arenaBytes: number;
  /** Tag handles with generations and report double free / use after free (slower). */
  readonly debug: boolean;
  /** When no free slab is left, give other classes' empty slabs back before failing. */
  readonly reclaimOnExhaustion: boolean;
  /** Most bytes of fallback allocations (requests above 64 KiB) held at once; past it `alloc` answers null. */
  readonly heapBudgetBytes: number;
  /** Receives debug-mode violations (double free, use after free). */
  readonly onViolation?: (message: string) => void;
}

/** What a pool worker needs to attach to an arena made on another thread (structured-cloneable). */
export interface ArenaShare {
  readonly data: SharedArrayBuffer;
  readonly meta: SharedArrayBuffer;
  readonly debug: boolean;
  readonly reclaimOnExhaustion: boolean;
}

/** Class index for a request of `bytes` (1 ... MAX_CLASS_BYTES). */
export function classOf(bytes: number): number {
  return bytes <= MIN_CLASS_BYTES ? 0 : 32 - Math.clz32(bytes - 1) - MIN_CLASS_SHIFT;
}

export class SlabArena implements BufferArena {
  readonly shared = true;
  readonly bytes: Uint8Array;
  readonly capacityBytes: number;
  private readonly share: ArenaShare;
  private readonly header: Int32Array;
  private readonly stat: Float64Array;
  private readonly slabClass: Int32Array;
  private readonly slabUsed: Int32Array;
  private readonly slabFreeHead: Int32Array;
  private readonly slabBump: Int32Array;
  private readonly slabNext: Int32Array;
  private readonly slabPrev: Int32Array;
  /** Per 256-byte unit: next free slot (as a unit index) in its slab's free list. */
  private readonly slotNext: Int32Array;
  /** Per 256-byte unit, debug mode: generation, odd while allocated. */
  private readonly slotGeneration: Int32Array;
  private readonly slabCount: number;
  private readonly debug: boolean;
  private readonly reclaimOnExhaustion: boolean;
  private readonly lockId: number;
  /** Fallbacks: per thread (a fallback never leaves the thread that allocated it, except by transfer). */
  private readonly heap: HeapTable;
  private readonly onViolation: (message: string) => void;

  private constructor(
    share: ArenaShare,
    lockId: number,
    heapBudgetBytes: number,
    onViolation: ((message: string) => void) | undefined,
  ) {
    this.share = share;
    this.heap = new HeapTable(heapBudgetBytes);
    this.lockId = lockId;
    this.debug = share.debug;
    this.reclaimOnExhaustion = share.reclaimOnExhaustion;
    this.onViolation = onViolation ?? (() => {});
    this.bytes = new Uint8Array(share.data);
    this.slabCount = share.data.byteLength >>> SLAB_SHIFT;
    this.capacityBytes = this.slabCount * SLAB_BYTES;
    const units = this.capacityBytes >>> MIN_CLASS_SHIFT;
    let byteOffset = 0;
    const int32s = (count: number) => {
      const array = new Int32Array(share.meta, byteOffset, count);
      byteOffset += count * 4;
      return array;
    };
    this.header = int32s(HEADER_INT32S);
    this.stat = new Float64Array(share.meta, byteOffset, STAT_FLOATS);
    byteOffset += STAT_FLOATS * 8;
    this.slabClass = int32s(this.slabCount);
    this.slabUsed = int32s(this.slabCount);
    this.slabFreeHead = int32s(this.slabCount);
    this.slabBump = int32s(this.slabCount);
    this.slabNext = int32s(this.slabCount);
    this.slabPrev = int32s(this.slabCount);
    this.slotNext = int32s(units);
    this.slotGeneration = share.debug ? int32s(units) : new Int32Array(0);
  }

  static metaBytes(arenaBytes: number, debug: boolean): number {
    const slabs = Math.floor(arenaBytes / SLAB_BYTES);
    const units = (slabs * SLAB_BYTES) / MIN_CLASS_BYTES;
    return HEADER_INT32S * 4 + STAT_FLOATS * 8 + slabs * 6 * 4 + units * 4 * (debug ? 2 : 1);
  }

  /** A new arena, owned by the calling (main) thread. */
  static create(options: ArenaOptions): SlabArena {
    const slabs = Math.floor(options.arenaBytes / SLAB_BYTES);
    if (slabs < 1) throw new Error(`memory.arena_bytes must be at least ${SLAB_BYTES} (got ${options.arenaBytes})`);
    const share: ArenaShare = {
      data: new SharedArrayBuffer(slabs * SLAB_BYTES),
      meta: new SharedArrayBuffer(SlabArena.metaBytes(options.arenaBytes, options.debug)),
      debug: options.debug,
      reclaimOnExhaustion: options.reclaimOnExhaustion,
    };
    const arena = new SlabArena(share, MAIN_THREAD_LOCK_ID, options.heapBudgetBytes, options.onViolation);
    arena.header[FREE_SLAB_HEAD] = 0;
    for (let slab = 0; slab < slabs; slab++) {
      arena.slabClass[slab] = NONE;
      arena.slabNext[slab] = slab + 1 < slabs ? slab + 1 : NONE;
      arena.slabPrev[slab] = NONE;
    }
    for (let c = 0; c < CLASS_COUNT; c++) arena.header[PARTIAL_HEAD + c] = NONE;
    return arena;
  }

  /**
   * The same arena seen from another thread; `lockId` must be unique among live threads (>= 2). Such a view has no
   * fallback budget: it allocates in shared memory only (`allocShared`), never ordinary memory.
   */
  static attach(share: ArenaShare, lockId: number, onViolation?: (message: string) => void): SlabArena {
    return new SlabArena(share, lockId, 0, onViolation);
  }

  /** What to send to another thread so it can `attach`. */
  shareable(): ArenaShare {
    return this.share;
  }

  alloc(bytes: number): number | null {
    if (bytes > MAX_CLASS_BYTES) return this.fallback(bytes);
    const cls = classOf(bytes);
    this.lock();
    let handle = this.allocLocked(cls);
    if (handle === NONE && this.reclaimOnExhaustion && this.defragmentLocked() > 0) handle = this.allocLocked(cls);
    if (handle === NONE) this.stat[STAT_FAILURES]! += 1;
    this.unlock();
    return handle === NONE ? null : handle;
  }

  /** A slot in shared memory only (never the heap fallback); `null` when too large or exhausted. */
  allocShared(bytes: number): number | null {
    return bytes > MAX_CLASS_BYTES ? null : this.alloc(bytes);
  }

  free(handle: number): void {
    if (handle < 0) {
      if (this.heap.remove(handle) < 0) this.violation(`arena: free of unknown fallback handle ${handle}`);
      return;
    }
    const offset = this.debug ? handle % GENERATION_FACTOR : handle;
    const unit = offset >>> MIN_CLASS_SHIFT;
    const slab = offset >>> SLAB_SHIFT;
    this.lock();
    const cls = slab < this.slabCount ? this.slabClass[slab]! : NONE;
    if (cls === NONE || (offset & ((MIN_CLASS_BYTES << cls) - 1)) !== 0) {
      this.stat[STAT_VIOLATIONS]! += 1;
      this.unlock();
      this.violation(`arena: free of handle ${handle} that no slot starts at`);
      return;
    }
    if (this.debug) {
      const generation = this.slotGeneration[unit]!;
      if ((generation & 1) === 0 || generation !== Math.floor(handle / GENERATION_FACTOR)) {
        this.stat[STAT_VIOLATIONS]! += 1;
        this.unlock();
        this.violation(
          `arena: ${(generation & 1) === 0 ? "double free" : "free of a stale handle (use after free)"} at offset ${offset} (handle ${handle})`,
        );
        return;
      }
      this.slotGeneration[unit] = (generation + 1) & GENERATION_MASK;
    }
    this.slotNext[unit] = this.slabFreeHead[slab]!;
    this.slabFreeHead[slab] = unit;
    const slots = SLAB_BYTES >>> (MIN_CLASS_SHIFT + cls);
    const used = this.slabUsed[slab]!;
    this.slabUsed[slab] = used - 1;
    if (used === slots) this.pushPartial(cls, slab); // was full, has room again
    const stat = this.stat;
    stat[STAT_BYTES_IN_USE]! -= MIN_CLASS_BYTES << cls;
    stat[STAT_FREES]! += 1;
    stat[STAT_CLASS_IN_USE + cls]! -= 1;
    this.unlock();
  }

  offsetOf(handle: number): number {
    return this.debug ? handle % GENERATION_FACTOR : handle;
  }

  capacityOf(handle: number): number {
    if (handle < 0) return this.heap.get(handle)?.length ?? 0;
    const cls = this.slabClass[(handle % GENERATION_FACTOR) >>> SLAB_SHIFT]!;
    return cls === NONE ? 0 : MIN_CLASS_BYTES << cls;
  }

  view(handle: number, length: number): Uint8Array {
    if (handle < 0) {
      const buffer = this.heap.get(handle);
      if (buffer === undefined) {
        this.violation(`arena: view of freed fallback handle ${handle}`);
        return new Uint8Array(0);
      }
      return length === buffer.length ? buffer : buffer.subarray(0, length);
    }
    const offset = handle % GENERATION_FACTOR;
    if (this.debug && !this.isLive(handle)) {
      this.lock();
      this.stat[STAT_VIOLATIONS]! += 1;
      this.unlock();
      this.violation(`arena: use after free at offset ${offset} (handle ${handle})`);
    }
    return new Uint8Array(this.share.data, offset, length);
  }

  /** Debug mode: whether the handle's slot is still allocated under this generation. Always true otherwise. */
  isLive(handle: number): boolean {
    if (handle < 0) return this.heap.get(handle) !== undefined;
    if (!this.debug) return true;
    const generation = Atomics.load(this.slotGeneration, (handle % GENERATION_FACTOR) >>> MIN_CLASS_SHIFT);
    return (generation & 1) === 1 && generation === Math.floor(handle / GENERATION_FACTOR);
  }

  defragment(): number {
    this.lock();
    const released = this.defragmentLocked();
    this.unlock();
    return released;
  }

  stats(): ArenaStats {
    const stat = this.stat;
    const classInUse: number[] = [];
    const classSlabs: number[] = [];
    for (let c = 0; c < CLASS_COUNT; c++) {
      classInUse.push(stat[STAT_CLASS_IN_USE + c]!);
      classSlabs.push(Atomics.load(this.header, CLASS_SLABS + c));
    }
    return {
      bytesInUse: stat[STAT_BYTES_IN_USE]!,
      peakBytes: stat[STAT_PEAK_BYTES]!,
      allocations: stat[STAT_ALLOCATIONS]!,
      frees: stat[STAT_FREES]!,
      failures: stat[STAT_FAILURES]!,
      fallbacks: stat[STAT_FALLBACKS]!,
      violations: stat[STAT_VIOLATIONS]!,
      capacityBytes: this.capacityBytes,
      heapBytesInUse: this.heap.bytesInUse,
      heapBudgetBytes: this.heap.budgetBytes,
      heapFailures: this.heap.failures,
      classInUse,
      classSlabs,
    };
  }

  /** Frees a lock left held by a thread that died (called by the pool when it replaces a worker). */
  releaseLockHeldBy(lockId: number): boolean {
    return Atomics.compareExchange(this.header, LOCK, lockId, 0) === lockId;
  }

  private fallback(bytes: number): number | null {
    const handle = this.heap.add(bytes);
    this.lock();
    this.stat[handle === null ? STAT_FAILURES : STAT_FALLBACKS]! += 1;
    this.unlock();
    return handle;
  }

  private allocLocked(cls: number): number {
    const header = this.header;
    let slab = header[PARTIAL_HEAD + cls]!;
    if (slab === NONE) {
      slab = header[FREE_SLAB_HEAD]!;
      if (slab === NONE) return NONE;
      header[FREE_SLAB_HEAD] = this.slabNext[slab]!;
      this.slabClass[slab] = cls;
      this.slabUsed[slab] = 0;
      this.slabFreeHead[slab] = NONE;
      this.slabBump[slab] = 0;
      header[CLASS_SLABS + cls]! += 1;
      this.pushPartial(cls, slab);
    }
    let unit = this.slabFreeHead[slab]!;
    if (unit !== NONE) {
      this.slabFreeHead[slab] = this.slotNext[unit]!;
    } else {
      const index = this.slabBump[slab]!;
      this.slabBump[slab] = index + 1;
      unit = (slab << (SLAB_SHIFT - MIN_CLASS_SHIFT)) + (index << cls);
    }
    const used = this.slabUsed[slab]! + 1;
    this.slabUsed[slab] = used;
    if (used === SLAB_BYTES >>> (MIN_CLASS_SHIFT + cls)) this.removePartial(cls, slab);
    const stat = this.stat;
    const inUse = (stat[STAT_BYTES_IN_USE]! += MIN_CLASS_BYTES << cls);
    if (inUse > stat[STAT_PEAK_BYTES]!) stat[STAT_PEAK_BYTES] = inUse;
    stat[STAT_ALLOCATIONS]! += 1;
    stat[STAT_CLASS_IN_USE + cls]! += 1;
    const offset = unit << MIN_CLASS_SHIFT;
    if (!this.debug) return offset;
    const generation = (this.slotGeneration[unit]! + 1) & GENERATION_MASK;
    this.slotGeneration[unit] = generation;
    return generation * GENERATION_FACTOR + offset;
  }

  private defragmentLocked(): number {
    let released = 0;
    for (let slab = 0; slab < this.slabCount; slab++) {
      const cls = this.slabClass[slab]!;
      if (cls === NONE || this.slabUsed[slab] !== 0) continue;
      this.removePartial(cls, slab);
      this.slabClass[slab] = NONE;
      this.header[CLASS_SLABS + cls]! -= 1;
      this.slabNext[slab] = this.header[FREE_SLAB_HEAD]!;
      this.header[FREE_SLAB_HEAD] = slab;
      released++;
    }
    return released;
  }

  private pushPartial(cls: number, slab: number): void {
    const head = this.header[PARTIAL_HEAD + cls]!;
    this.slabNext[slab] = head;
    this.slabPrev[slab] = NONE;
    if (head !== NONE) this.slabPrev[head] = slab;
    this.header[PARTIAL_HEAD + cls] = slab;
  }

  private removePartial(cls: number, slab: number): void {
    const next = this.slabNext[slab]!;
    const prev = this.slabPrev[slab]!;
    if (prev !== NONE) this.slabNext[prev] = next;
    else this.header[PARTIAL_HEAD + cls] = next;
    if (next !== NONE) this.slabPrev[next] = prev;
    this.slabNext[slab] = NONE;
    this.slabPrev[slab] = NONE;
  }

  private lock(): void {
    const header = this.header;
    const id = this.lockId;
    // Critical sections are a few dozen instructions; contention is rare (workers allocate only oversized results).
    for (let spins = 0; Atomics.compareExchange(header, LOCK, 0, id) !== 0; spins++) {
      if (spins > 1000) Atomics.wait(header, LOCK, Atomics.load(header, LOCK), 0.05);
    }
  }

  private unlock(): void {
    Atomics.store(this.header, LOCK, 0);
  }

  private violation(message: string): void {
    this.onViolation(message);
  }
}
