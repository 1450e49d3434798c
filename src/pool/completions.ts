// Draining the workers' completion rings on the main thread: waits without blocking for a worker's doorbell, then
// takes every finished task of every worker in one go (many completions per wake-up under load).
import type { BufferArena } from "../memory/arena.ts";
import {
  DONE_HEAD,
  DONE_TAIL,
  ENTRY_FIELDS,
  FIELD_GENERATION,
  FIELD_HANDLE,
  FIELD_LENGTH,
  FIELD_SLOT,
  FIELD_STATUS,
  MAIN_SLEEPING,
  RING_MASK,
} from "./channel.ts";
import { TaskState, type TaskTable } from "./task-table.ts";
import { WorkerState, type WorkerSlot } from "./worker-slot.ts";

/**
 * Results up to this size are copied out of the arena into a scratch buffer whose views (one per length) are made
 * once, so a small completion allocates nothing; larger ones are handed over as a view of the arena. Making a view
 * is the cost avoided (see bench/micro/pool.bench.ts).
 */
const SCRATCH_RESULT_BYTES = 256;
/** Most drain rounds per wake-up before yielding to I/O with setImmediate. */
const MAX_PUMP_ROUNDS = 16;

/** Answers a task: `resultHandle` is a second arena slot holding the result (freed after `done`), or -1. */
export type FinishTask = (slot: number, status: number, result: Uint8Array, resultHandle: number) => void;

export interface CompletionDrainParts {
  /** The shared word the main thread sleeps on (MAIN_SLEEPING) and the workers' awake words. */
  readonly mainControl: Int32Array;
  /** The pool's workers, by index (the array is shared: replacements appear in it). */
  readonly workers: readonly WorkerSlot[];
  readonly tasks: TaskTable;
  readonly arena: BufferArena;
  readonly finish: FinishTask;
  /** Hands queued tasks to workers with room (after a drain made some). */
  readonly dispatchQueued: () => void;
}

export class CompletionDrain {
  /** Notifications of completions received (gauge: with wake-ups, the batch size). */
  doorbells = 0;
  /** Set when the pool stops: nothing is waited for any more. */
  isStopped = false;
  private readonly mainControl: Int32Array;
  private readonly workers: readonly WorkerSlot[];
  private readonly tasks: TaskTable;
  private readonly arena: BufferArena;
  private readonly finish: FinishTask;
  private readonly dispatchQueued: () => void;
  private readonly resultScratch = new Uint8Array(SCRATCH_RESULT_BYTES);
  private readonly resultViews: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(
    SCRATCH_RESULT_BYTES + 1,
  ).fill(undefined);
  /** An Atomics.waitAsync on MAIN_SLEEPING is pending (it stays valid until a worker notifies, even across idle spells). */
  private isWaitArmed = false;
  private readonly onNotified = () => {
    this.isWaitArmed = false;
    this.doorbells++;
    this.pump();
  };
  private isPumpScheduled = false;
  private readonly onPumpLater = () => {
    this.isPumpScheduled = false;
    this.pump();
  };

  constructor(parts: CompletionDrainParts) {
    this.mainControl = parts.mainControl;
    this.workers = parts.workers;
    this.tasks = parts.tasks;
    this.arena = parts.arena;
    this.finish = parts.finish;
    this.dispatchQueued = parts.dispatchQueued;
  }

  /** Drains every live worker's completion ring; returns how many tasks finished. */
  drain(): number {
    let finished = 0;
    const workers = this.workers;
    const arena = this.arena;
    const tasks = this.tasks;
    for (let w = 0; w < workers.length; w++) {
      const worker = workers[w]!;
      if (worker.state === WorkerState.DEAD) continue;
      const tail = Atomics.load(worker.control, DONE_TAIL);
      let head = worker.doneHead;
      if (head === tail) continue;
      const ring = worker.completions;
      while (head !== tail) {
        const at = (head & RING_MASK) * ENTRY_FIELDS;
        head = (head + 1) | 0;
        const slot = ring[at + FIELD_SLOT]!;
        const handle = ring[at + FIELD_HANDLE]!;
        if (tasks.generation[slot] !== ring[at + FIELD_GENERATION] || tasks.state[slot] !== TaskState.RUNNING) {
          if (handle !== tasks.handle[slot]) arena.free(handle); // a late result of a task already failed
          continue;
        }
        this.finish(slot, ring[at + FIELD_STATUS]!, this.resultView(handle, ring[at + FIELD_LENGTH]!), handle);
        finished++;
      }
      worker.doneHead = head;
      Atomics.store(worker.control, DONE_HEAD, head);
    }
    return finished;
  }

  /**
   * While tasks are out, waits (without blocking) for a worker to say completions are ready. Returns false when a
   * worker said so already (the caller drains now), true when waiting or when there is nothing to wait for.
   */
  waitForCompletions(): boolean {
    if (this.isWaitArmed || this.tasks.running === 0 || this.isStopped) return true;
    const wait = Atomics.waitAsync(this.mainControl, MAIN_SLEEPING, 1);
    if (!wait.async) return false;
    this.isWaitArmed = true;
    void wait.value.then(this.onNotified);
    return true;
  }

  /** Drains on a later turn of the event loop (never inside `run`). */
  pumpSoon(): void {
    if (this.isPumpScheduled) return;
    this.isPumpScheduled = true;
    setImmediate(this.onPumpLater);
  }

  /** Runs when a worker notified: drain, refill from the queue, then re-arm the doorbell (re-checking to lose no wake-up). */
  pump(): void {
    const mainControl = this.mainControl;
    for (let round = 0; round < MAX_PUMP_ROUNDS; round++) {
      Atomics.store(mainControl, MAIN_SLEEPING, 0);
      this.drain();
      this.dispatchQueued();
      Atomics.store(mainControl, MAIN_SLEEPING, 1);
      if (!this.anyCompletionWaiting() && this.waitForCompletions()) return;
    }
    Atomics.store(mainControl, MAIN_SLEEPING, 0);
    this.pumpSoon();
  }

  private anyCompletionWaiting(): boolean {
    const workers = this.workers;
    for (let w = 0; w < workers.length; w++) {
      const worker = workers[w]!;
      if (worker.state !== WorkerState.DEAD && Atomics.load(worker.control, DONE_TAIL) !== worker.doneHead) return true;
    }
    return false;
  }

  /** The result bytes as a view valid during `done` (see SCRATCH_RESULT_BYTES). */
  private resultView(handle: number, length: number): Uint8Array {
    const arena = this.arena;
    const offset = arena.offsetOf(handle);
    if (length > SCRATCH_RESULT_BYTES) return arena.bytes.subarray(offset, offset + length);
    const bytes = arena.bytes;
    const scratch = this.resultScratch;
    for (let i = 0; i < length; i++) scratch[i] = bytes[offset + i]!;
    return this.resultViews[length] ?? (this.resultViews[length] = scratch.subarray(0, length));
  }
}
