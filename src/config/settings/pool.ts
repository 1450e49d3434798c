// Settings of HPS/1 handlers, the worker pool and its arena: [custom], [pool], [memory].
import { bool, byteSize, int, str, wholeMicroseconds, wholeMilliseconds } from "../kinds.ts";
import type { ReloadRule } from "../reload-rule.ts";
import { type SettingSpec, MiB, GiB } from "./spec.ts";

/** The worker pool, its arena and its handlers module (custom) are built once at start. */
const POOL_AT_START: ReloadRule = { custom: "restart", otherwise: "not-read" };

/** HPS/1 (server.protocol = "custom"): requests in flight and user handlers. */
export const CUSTOM_SETTINGS = {
  max_in_flight: {
    schema: int(1, 65_536, 64),
    doc: "HPS/1 requests one connection may have outstanding; past it the server stops reading that socket.",
    reload: { custom: "live", otherwise: "not-read" },
  },
  handlers: {
    schema: str(""),
    doc: "Module (path) loaded into every pool worker that implements opcodes 0x80-0xFF; empty = none.",
    reload: POOL_AT_START,
  },
  max_response_bytes: {
    schema: byteSize(1, GiB, 16 * MiB),
    doc: "Largest result a handler (opcodes 0x80-0xFF) may return; a larger one is answered with status 6 and a message instead.",
    unit: "bytes",
    // The pool's workers read it when they start.
    reload: POOL_AT_START,
  },
} as const satisfies Record<string, SettingSpec>;

/** The worker threads that run HPS/1 operations. */
export const POOL_SETTINGS = {
  threads: {
    schema: int(0, 256, 0),
    doc: "Worker threads for pool operations; 0 = one per CPU core.",
    reload: POOL_AT_START,
  },
  max_queue: {
    schema: int(1, 10_000_000, 4096),
    doc: "Tasks accepted but not yet started by a worker (waiting in the pool's queue or in a worker's ring); past it a new task is answered busy (status 4) at once.",
    reload: POOL_AT_START,
  },
  task_timeout_ms: {
    schema: wholeMilliseconds(0, 3_600_000, 5000),
    doc: "A task running longer (timed from when a worker starts it) fails with timeout and its worker is replaced; 0 = no limit.",
    unit: "milliseconds",
    reload: POOL_AT_START,
  },
  spin_us: {
    schema: wholeMicroseconds(0, 1000, 100),
    doc: "How long a worker whose tasks have been arriving less than this apart keeps polling its empty ring for the next one before it sleeps; a task that arrives meanwhile needs no cross-thread wake-up, which makes single-task round trips faster (measured by `POOL_BENCH_SPIN_US=0 bun run bench pool` against the default). A poll that finds nothing makes the worker skip its next chances to poll (1, 3, 7 ... 63), so sparse traffic costs almost nothing and an idle server nothing. A worker polls only while the workers awake leave a CPU to the main thread (never when the process may use one CPU only) and, with fewer spare CPUs than workers, only after completions that woke the main thread. 0 = never poll.",
    unit: "microseconds",
    reload: POOL_AT_START,
  },
} as const satisfies Record<string, SettingSpec>;

/** The shared-memory arena of payloads. */
export const MEMORY_SETTINGS = {
  arena: {
    schema: bool(true),
    doc: "Keep payload buffers in the shared-memory arena; false uses ordinary allocations.",
    reload: POOL_AT_START,
  },
  arena_bytes: {
    schema: byteSize(64 * 1024, 16 * GiB, 16 * MiB),
    doc: "Size of the shared-memory arena; also the budget for payloads over 64 KiB (or for all payloads with memory.arena = false).",
    unit: "bytes",
    reload: POOL_AT_START,
  },
  debug: {
    schema: bool(false),
    doc: "Detect double free and use after free in the arena (slower).",
    reload: POOL_AT_START,
  },
} as const satisfies Record<string, SettingSpec>;
