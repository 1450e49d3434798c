// The pool's task table: one slot per task the pool holds (waiting or handed to a worker), in parallel arrays so that
// a task costs no object, and the FIFO of slots waiting for room in a worker's ring.
import type { OpDone } from "./op-runner.ts";

export const TaskState = {
  FREE: 0,
  /** In the pool's wait queue: not handed to a worker yet. */
  QUEUED: 1,
  /** Handed to a worker (its ring or a message); started or not, see WorkerPool's isStarted. */
  RUNNING: 2,
} as const;

/** Tasks indexed by slot; a slot's generation changes each time it is reused, so a late result of an old task is told apart. */
export class TaskTable {
  readonly state: number[] = [];
  readonly generation: number[] = [];
  readonly token: number[] = [];
  readonly done: (OpDone | null)[] = [];
  readonly opcode: number[] = [];
  /** Arena handle of the payload (negative: ordinary memory sent by message), -1 once freed. */
  readonly handle: number[] = [];
  readonly length: number[] = [];
  /** Index of the worker the task was handed to. */
  readonly worker: number[] = [];
  /** Submission ring index, or -1 for a task sent by message. */
  readonly ringIndex: number[] = [];
  /** For a task sent by message: its number among the messages sent to its worker (compared with MESSAGES_TAKEN). */
  readonly messageIndex: number[] = [];
  /** When `run` was called (latency). */
  readonly startMs: number[] = [];
  /** The first timeout check that saw the task started by its worker (-1: not seen yet); see PoolWatchdog. */
  readonly takenMs: number[] = [];
  /** Slots waiting for a worker, in order. */
  readonly waiting = new SlotQueue();
  /** Tasks in state RUNNING. */
  running = 0;
  private readonly freeSlots: number[] = [];

  /** Slots ever made (the bound for scans over the table). */
  size(): number {
    return this.state.length;
  }

  /** Takes a free slot for a new task and fills it; the caller sets its state (queue it or hand it to a worker). */
  open(token: number, done: OpDone, opcode: number, handle: number, length: number, nowMs: number): number {
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.grow();
    this.generation[slot]! += 1;
    this.token[slot] = token;
    this.done[slot] = done;
    this.opcode[slot] = opcode;
    this.handle[slot] = handle;
    this.length[slot] = length;
    this.startMs[slot] = nowMs;
    return slot;
  }

  /** Puts a task in the wait queue (at the back, or at the front for one taken back from a dead worker). */
  enqueue(slot: number, atFront: boolean): void {
    if (this.state[slot] === TaskState.RUNNING) this.running--;
    this.state[slot] = TaskState.QUEUED;
    if (atFront) this.waiting.pushFront(slot);
    else this.waiting.push(slot);
  }

  /** Marks a task handed to worker `workerIndex`. */
  markRunning(slot: number, workerIndex: number): void {
    this.state[slot] = TaskState.RUNNING;
    this.worker[slot] = workerIndex;
    this.takenMs[slot] = -1;
    this.running++;
  }

  /** The task is answered: its slot becomes free (the caller has freed its arena handles). */
  release(slot: number): void {
    if (this.state[slot] === TaskState.RUNNING) this.running--;
    this.state[slot] = TaskState.FREE;
    this.done[slot] = null;
    this.handle[slot] = -1;
    this.freeSlots.push(slot);
  }

  private grow(): number {
    const slot = this.state.length;
    this.state.push(TaskState.FREE);
    this.generation.push(0);
    this.token.push(0);
    this.done.push(null);
    this.opcode.push(0);
    this.handle.push(-1);
    this.length.push(0);
    this.worker.push(-1);
    this.ringIndex.push(-1);
    this.messageIndex.push(-1);
    this.startMs.push(0);
    this.takenMs.push(-1);
    return slot;
  }
}

/** FIFO of task slots with push-front for tasks taken back from a dead worker. */
export class SlotQueue {
  private items = new Int32Array(1024);
  private head = 0;
  length = 0;

  push(slot: number): void {
    if (this.length === this.items.length) this.grow();
    this.items[(this.head + this.length) & (this.items.length - 1)] = slot;
    this.length++;
  }

  pushFront(slot: number): void {
    if (this.length === this.items.length) this.grow();
    this.head = (this.head - 1) & (this.items.length - 1);
    this.items[this.head] = slot;
    this.length++;
  }

  shift(): number {
    const slot = this.items[this.head]!;
    this.head = (this.head + 1) & (this.items.length - 1);
    this.length--;
    return slot;
  }

  private grow(): void {
    const bigger = new Int32Array(this.items.length * 2);
    for (let i = 0; i < this.length; i++) bigger[i] = this.items[(this.head + i) & (this.items.length - 1)]!;
    this.items = bigger;
    this.head = 0;
  }
}
