// Layout of the shared rings between the pool (main thread) and one worker, and the messages they exchange.
//
// Per worker: a submission ring (main writes, worker reads) and a completion ring (worker writes, main reads),
// single producer and single consumer each, with head/tail counters in a small Int32 control block. The worker
// sleeps in Atomics.waitAsync on its WORKER_SLEEPING word (never on the tail: a late wake could then be lost); the
// main thread wakes it by flipping that word and one Atomics.notify per I/O round (not per task), and only when it
// said it sleeps. A worker whose tasks have been arriving close together polls its empty ring for up to
// `pool.spin_us` before it says so, and a task that arrives meanwhile needs no wake-up at all. The main thread never
// blocks: while tasks are out it waits with Atomics.waitAsync on MAIN_SLEEPING; a worker that finishes a batch while
// the main thread is idle flips that word and notifies once (cheaper than a doorbell postMessage:
// bench/micro/pool.bench.ts), and the main thread then drains every completion ring in one go.
import type { ArenaShare } from "../memory/slab-arena.ts";

/** Entries per ring; also the most tasks one worker holds at once (the rest wait in the pool's queue). */
export const RING_ENTRIES = 1024;
export const RING_MASK = RING_ENTRIES - 1;
/** Float64 fields per ring entry. */
export const ENTRY_FIELDS = 5;

// Submission entry fields: task slot, task generation, opcode, arena handle of the payload, payload length.
// Completion entry fields: task slot, task generation, status, arena handle of the result, result length.
export const FIELD_SLOT = 0;
export const FIELD_GENERATION = 1;
export const FIELD_OPCODE = 2; // submission
export const FIELD_STATUS = 2; // completion
export const FIELD_HANDLE = 3;
export const FIELD_LENGTH = 4;

// Control block (Int32) of one worker.
export const SUB_TAIL = 0;
export const SUB_HEAD = 1;
export const DONE_TAIL = 2;
export const DONE_HEAD = 3;
/**
 * 1 while the worker waits for work; the main thread clears it with compareExchange and notifies this word. The
 * worker's wait is on this word (expecting 1), so a wake that clears it before the wait begins is never lost.
 */
export const WORKER_SLEEPING = 4;
/**
 * Message tasks (payload not in the arena) the worker has started, counted up when it starts each one. A ring task
 * counts as started once SUB_HEAD passes it (the worker advances SUB_HEAD right before running it). The pool's
 * timeout check times a task from the first check that sees it started, so queue and ring waiting never count.
 */
export const MESSAGES_TAKEN = 5;
export const CONTROL_INT32S = 16;

/**
 * Counters one worker writes and the main thread reads (Float64, one writer, so exact up to 2^53 and never wrapping
 * as Int32 words would): times the worker polled its empty ring before sleeping, and polls that found a task.
 */
export const COUNTER_SPINS = 0;
export const COUNTER_SPIN_CATCHES = 1;
export const COUNTER_FIELDS = 2;

/** Shared by all workers (Int32): [0] = 1 while the main thread has nothing to drain and wants to be notified. */
export const MAIN_SLEEPING = 0;
/** From here on, one word per worker index: 1 while that worker is awake (running tasks or polling), 0 asleep. */
export const WORKER_AWAKE_BASE = 4;
export const mainControlInt32s = (workers: number) => WORKER_AWAKE_BASE + workers;

export interface WorkerInit {
  readonly type: "init";
  readonly workerIndex: number;
  /** Unique among live threads: the arena's lock owner id for this worker. */
  readonly lockId: number;
  readonly arena: ArenaShare | null;
  readonly control: SharedArrayBuffer;
  /** Float64 counters (COUNTER_*) this worker writes. */
  readonly counters: SharedArrayBuffer;
  readonly mainControl: SharedArrayBuffer;
  readonly submissions: SharedArrayBuffer;
  readonly completions: SharedArrayBuffer;
  /** Absolute path of the user handlers module, or "" for none. */
  readonly handlersPath: string;
  /** How long the worker polls its empty ring for the next task before sleeping (see worker.ts); 0 = never. */
  readonly spinMicros: number;
  /** Cores the workers may use besides the main thread's: a worker polls only while no more workers than this are awake. */
  readonly spinCores: number;
  /** Worker indexes in use (0 .. workerCount - 1): the WORKER_AWAKE words to count. */
  readonly workerCount: number;
  /** custom.max_response_bytes: a user handler's larger result is answered with status 6 instead. */
  readonly maxResultBytes: number;
}

/** A task whose payload is not in the arena (too large for a slot, or `memory.arena = false`). */
export interface TaskMessage {
  readonly type: "task";
  readonly slot: number;
  readonly generation: number;
  readonly opcode: number;
  readonly payload: Uint8Array;
}

export type ToWorker = WorkerInit | TaskMessage;

export interface ReadyMessage {
  readonly type: "ready";
  /** User opcodes the handlers module implements. */
  readonly opcodes: number[];
}

export interface StartErrorMessage {
  readonly type: "startError";
  readonly message: string;
}

/** A result that did not fit the arena, or of a message task. */
export interface DoneMessage {
  readonly type: "done";
  readonly slot: number;
  readonly generation: number;
  readonly status: number;
  readonly payload: Uint8Array;
}

export type FromWorker = ReadyMessage | StartErrorMessage | DoneMessage;
