// Handing tasks to workers: the least-loaded ready worker takes a task as a submission-ring entry (payload in the
// arena) or as a message (payload in ordinary memory, transferred); tasks no worker has room for wait in the queue.
import type { BufferArena } from "../memory/arena.ts";
import {
  ENTRY_FIELDS,
  FIELD_GENERATION,
  FIELD_HANDLE,
  FIELD_LENGTH,
  FIELD_OPCODE,
  FIELD_SLOT,
  MESSAGES_TAKEN,
  RING_ENTRIES,
  RING_MASK,
  SUB_HEAD,
  SUB_TAIL,
  type TaskMessage,
} from "./channel.ts";
import type { TaskTable } from "./task-table.ts";
import type { Waker } from "./wakeups.ts";
import { WorkerState, type WorkerSlot } from "./worker-slot.ts";

export class TaskDispatcher {
  private readonly tasks: TaskTable;
  private readonly arena: BufferArena;
  private readonly workers: readonly WorkerSlot[];
  private readonly waker: Waker;

  constructor(tasks: TaskTable, arena: BufferArena, workers: readonly WorkerSlot[], waker: Waker) {
    this.tasks = tasks;
    this.arena = arena;
    this.workers = workers;
    this.waker = waker;
  }

  /** The ready worker with the fewest outstanding tasks and room in its ring, or null. */
  leastLoaded(): WorkerSlot | null {
    let best: WorkerSlot | null = null;
    const workers = this.workers;
    for (let i = 0; i < workers.length; i++) {
      const candidate = workers[i]!;
      if (candidate.state !== WorkerState.READY || candidate.outstanding >= RING_ENTRIES) continue;
      if (best === null || candidate.outstanding < best.outstanding) best = candidate;
    }
    return best;
  }

  /** Moves queued tasks to workers with room. */
  dispatchQueued(): void {
    const waiting = this.tasks.waiting;
    while (waiting.length > 0) {
      const target = this.leastLoaded();
      if (target === null) return;
      this.send(waiting.shift(), target);
    }
  }

  /**
   * Tasks handed to live workers that their worker has not started yet (a worker advances SUB_HEAD, or its
   * MESSAGES_TAKEN word, as it starts each task). Reads each worker's words: called only near pool.max_queue.
   */
  unstartedInWorkers(): number {
    let unstarted = 0;
    const workers = this.workers;
    for (let i = 0; i < workers.length; i++) {
      const worker = workers[i]!;
      if (worker.state !== WorkerState.READY) continue;
      unstarted += (worker.subTail - Atomics.load(worker.control, SUB_HEAD)) | 0;
      unstarted += (worker.messagesSent - Atomics.load(worker.control, MESSAGES_TAKEN)) | 0;
    }
    return unstarted;
  }

  /** Hands task `slot` to `target`: a ring entry when its payload is in the arena, else a message. */
  send(slot: number, target: WorkerSlot): void {
    const tasks = this.tasks;
    tasks.markRunning(slot, target.index);
    target.outstanding++;
    const handle = tasks.handle[slot]!;
    if (handle < 0) {
      // Not in shared memory: the bytes travel by message (transferred, not copied). The handle is kept until the
      // task finishes, so its bytes stay counted against the arena's budget for ordinary memory meanwhile.
      const payload = this.arena.view(handle, tasks.length[slot]!);
      const message: TaskMessage = {
        type: "task",
        slot,
        generation: tasks.generation[slot]!,
        opcode: tasks.opcode[slot]!,
        payload,
      };
      target.worker.postMessage(message, [payload.buffer as ArrayBuffer]);
      tasks.ringIndex[slot] = -1;
      tasks.messageIndex[slot] = target.messagesSent;
      target.messagesSent = (target.messagesSent + 1) | 0;
      return;
    }
    const index = target.subTail;
    const at = (index & RING_MASK) * ENTRY_FIELDS;
    const ring = target.submissions;
    ring[at + FIELD_SLOT] = slot;
    ring[at + FIELD_GENERATION] = tasks.generation[slot]!;
    ring[at + FIELD_OPCODE] = tasks.opcode[slot]!;
    ring[at + FIELD_HANDLE] = handle;
    ring[at + FIELD_LENGTH] = tasks.length[slot]!;
    tasks.ringIndex[slot] = index;
    target.subTail = (index + 1) | 0;
    Atomics.store(target.control, SUB_TAIL, target.subTail);
    this.waker.taskAdded(target, tasks.running === 1);
  }

  /** Whether `worker` has started task `slot` (it may have finished it too, not yet drained). */
  isStarted(slot: number, worker: WorkerSlot): boolean {
    const tasks = this.tasks;
    const ringIndex = tasks.ringIndex[slot]!;
    if (ringIndex !== -1) return ((ringIndex - Atomics.load(worker.control, SUB_HEAD)) | 0) < 0;
    return ((tasks.messageIndex[slot]! - Atomics.load(worker.control, MESSAGES_TAKEN)) | 0) < 0;
  }
}
