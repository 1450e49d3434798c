// The worker pool: runs HASH and user opcodes on Bun Workers, payloads passed as arena offsets over shared rings.
//
// Dispatch (chosen by measurement, see bench/micro/pool.bench.ts): one submission and one completion ring per
// worker in SharedArrayBuffers. `run` copies the payload once into an arena slot and writes (slot, opcode, handle,
// length) to the least-loaded worker's ring; the worker waits with Atomics.waitAsync (its event loop stays free for
// async handlers and messages) and is notified once per I/O round (setImmediate) — or at once for a lone task or
// when a round has given it EARLY_WAKE_TASKS tasks already — and only when it said it sleeps.
// Results come back in the payload's slot (or a new slot when larger); after each batch a worker notifies the main
// thread (waiting with Atomics.waitAsync while tasks are out) only when it is idle, so under load many completions
// are drained per wake-up, a lone task takes two thread wake-ups, and nothing spins while idle. Tasks a worker cannot take (its ring
// holds RING_ENTRIES) wait in a bounded queue of `pool.max_queue`; past that, when the arena is exhausted, and when
// a payload over 64 KiB (ordinary memory, sent by message) would pass the arena's budget for those (memory.arena_bytes,
// held until the task finishes), `run` answers busy at once. pool.task_timeout_ms counts from when a worker starts
// a task (see checkTimeouts).
import { availableParallelism } from "node:os";
import { resolve as resolvePath } from "node:path";
import type { ServerContext, StopOptions } from "../context.ts";
import { POOL_WORKER_URL } from "../entry-points.ts";
import { MAIN_THREAD_LOCK_ID, MAX_CLASS_BYTES, createArena, type BufferArena, SlabArena } from "../memory/arena.ts";
import { Counter } from "../stats/stats.ts";
import { LatencyHistogram } from "../stats/histogram.ts";
import {
  CONTROL_INT32S,
  DONE_HEAD,
  DONE_TAIL,
  ENTRY_FIELDS,
  FIELD_GENERATION,
  FIELD_HANDLE,
  FIELD_LENGTH,
  FIELD_OPCODE,
  FIELD_SLOT,
  FIELD_STATUS,
  MAIN_SLEEPING,
  MESSAGES_TAKEN,
  RING_ENTRIES,
  RING_MASK,
  SUB_HEAD,
  COUNTER_FIELDS,
  COUNTER_SPIN_CATCHES,
  COUNTER_SPINS,
  SUB_TAIL,
  WORKER_AWAKE_BASE,
  WORKER_SLEEPING,
  mainControlInt32s,
  type FromWorker,
  type TaskMessage,
  type WorkerInit,
} from "./channel.ts";
import { FrameStatus, type OpDone, type OpRunner } from "./op-runner.ts";
import { OP_HASH } from "./ops.ts";

/** Worker deaths before it reports ready, in a row, after which the pool gives up (start-up fails, or the slot stays empty). */
const MAX_START_FAILURES = 3;
/** Payloads and results up to this size are copied byte by byte: no view to make (a first view of a socket chunk costs ~1 µs). */
const BYTEWISE_COPY_BYTES = 256;
/**
 * A worker that got this many tasks in one I/O round is woken at once rather than at the round's end, so it works
 * through a large batch while the rest is still being submitted (measured: 1024 in flight, see pool.bench.ts).
 */
export const EARLY_WAKE_TASKS = 64;
/** How often the watchdog looks for stalled rings when pool.task_timeout_ms is 0 (otherwise the timeout check's period). */
const WATCHDOG_INTERVAL_MS = 500;
/** Most drain rounds per wake-up before yielding to I/O with setImmediate. */
const MAX_PUMP_ROUNDS = 16;

const encoder = new TextEncoder();
const QUEUE_FULL = encoder.encode("busy: pool queue full");
const ARENA_EXHAUSTED = encoder.encode("busy: payload arena exhausted");
const HEAP_BUDGET_SPENT = encoder.encode("busy: memory for payloads over 64 KiB (budget memory.arena_bytes) is in use");
const STOPPING = encoder.encode("busy: pool is shutting down");
const NO_WORKERS = encoder.encode("internal: no pool worker is running");
const TIMED_OUT = encoder.encode("timeout: the operation ran longer than pool.task_timeout_ms");
const STOPPED = encoder.encode("internal: pool stopped before the operation finished");

export interface WorkerPoolOptions {
  /** Overrides `pool.spin_us` (tests). */
  readonly spinMicros?: number;
  /** Overrides the cores workers may poll on (CPUs this process may use, less one). */
  readonly spinCores?: number;
  /** Worker count; overrides `pool.threads` (0 there means one per core). */
  readonly threads?: number;
  /** Handlers module path; overrides `custom.handlers`. Relative paths resolve against the working directory. */
  readonly handlersPath?: string;
  /** An arena to use instead of creating one from `memory.*` (benchmarks and tests). */
  readonly arena?: BufferArena;
  /** Worker entry module (tests use fixtures that crash or hang during start-up). */
  readonly workerUrl?: string | URL;
  /** Tests only: wake-ups clear the worker's sleeping word but send no notify (lost wake-ups the watchdog must recover). */
  readonly loseWakeups?: boolean;
}

const TASK_FREE = 0;
const TASK_QUEUED = 1;
const TASK_RUNNING = 2;

const WORKER_STARTING = 0;
const WORKER_READY = 1;
const WORKER_DEAD = 2;

/** One worker and its rings. Replaced as a whole when the worker dies. */
class WorkerSlot {
  state = WORKER_STARTING;
  /** Tasks sent and not yet finished (ring or message). */
  outstanding = 0;
  /** Message tasks sent to this worker (wrapping Int32, compared with its MESSAGES_TAKEN word). */
  messagesSent = 0;
  subTail = 0;
  doneHead = 0;
  readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_INT32S * 4));
  readonly counters = new Float64Array(new SharedArrayBuffer(COUNTER_FIELDS * 8));
  readonly submissions = new Float64Array(new SharedArrayBuffer(RING_ENTRIES * ENTRY_FIELDS * 8));
  readonly completions = new Float64Array(new SharedArrayBuffer(RING_ENTRIES * ENTRY_FIELDS * 8));
  lastError = "";
  /** In the pool's wake list: tasks were added to the ring since the last wake-up round. */
  wakePending = false;
  /** Tasks added to the ring since this worker was last woken (or found awake). */
  unwoken = 0;
  /** SUB_HEAD at the watchdog's last look (see rewakeStalled). */
  headAtLastCheck = -1;
  constructor(
    readonly index: number,
    readonly worker: Worker,
    readonly lockId: number,
  ) {}
}

/** FIFO of task slots with push-front for tasks taken back from a dead worker. */
class SlotQueue {
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

/** What the pool uses of the server's context (a ServerContext fits). */
export type PoolContext = Pick<ServerContext, "config" | "stats" | "logger" | "gauges">;

/** Starts `pool.threads` workers (each loads `custom.handlers`) and resolves once every one is warm. */
export async function startWorkerPool(context: PoolContext, options: WorkerPoolOptions = {}): Promise<WorkerPool> {
  const pool = new WorkerPool(context, options);
  await pool.start();
  return pool;
}

/** What `runTask` resolves with: an HPS/1 status and the result (or the error message as UTF-8). */
export interface TaskResult {
  status: number;
  payload: Uint8Array;
}

const messageBytes = (text: string) => new TextEncoder().encode(text);

export class WorkerPool implements OpRunner {
  readonly arena: BufferArena;
  readonly threads: number;
  /** Task latency from `run` to `done`, microseconds. */
  readonly latency = new LatencyHistogram();
  private readonly context: PoolContext;
  private readonly maxQueue: number;
  private readonly taskTimeoutMs: number;
  private readonly handlersPath: string;
  /** pool.spin_us (see worker.ts pollForTask). */
  private readonly spinMicros: number;
  /** CPUs this process may use, less the main thread's: a worker polls only while no more workers are awake. */
  private readonly spinCores: number;
  private readonly workerUrl: string | URL;
  private readonly mainControl: Int32Array;
  private readonly workers: WorkerSlot[] = [];
  private readonly userOpcodes = new Uint8Array(256);
  private nextLockId = MAIN_THREAD_LOCK_ID + 1;
  private startFailures = 0;
  private stopping = false;
  private stopped = false;
  private watchdogTimer: ReturnType<typeof setInterval> | null = null;
  private readonly loseWakeups: boolean;
  private pumpScheduled = false;
  private readonly onPumpLater = () => {
    this.pumpScheduled = false;
    this.pump();
  };
  /** Workers given tasks since the last wake-up round; woken once per round, not once per task. */
  private readonly wakeList: WorkerSlot[] = [];
  private wakeScheduled = false;
  private readonly onWake = () => this.wakeWorkers();
  /** An Atomics.waitAsync on MAIN_SLEEPING is pending (it stays valid until a worker notifies, even across idle spells). */
  private completionWaitArmed = false;
  private readonly onCompletionsNotified = () => {
    this.completionWaitArmed = false;
    this.doorbells++;
    this.pump();
  };
  private startWaiter: { resolve: () => void; reject: (error: Error) => void } | null = null;
  private drainWaiter: (() => void) | null = null;

  // Task table, indexed by slot; a slot's generation changes each time it is reused.
  private readonly queue = new SlotQueue();
  private readonly freeSlots: number[] = [];
  private readonly taskState: number[] = [];
  private readonly taskGeneration: number[] = [];
  private readonly taskToken: number[] = [];
  private readonly taskDone: (OpDone | null)[] = [];
  private readonly taskOpcode: number[] = [];
  private readonly taskHandle: number[] = [];
  private readonly taskLength: number[] = [];
  private readonly taskWorker: number[] = [];
  /** Submission ring index, or -1 for a task sent by message. */
  private readonly taskRingIndex: number[] = [];
  /** For a task sent by message: its number among the messages sent to its worker (compared with MESSAGES_TAKEN). */
  private readonly taskMessageIndex: number[] = [];
  /** When `run` was called (latency). */
  private readonly taskStartMs: number[] = [];
  /** The first timeout check that saw the task started by its worker (-1: not seen yet); see checkTimeouts. */
  private readonly taskTakenMs: number[] = [];
  private running = 0;
  /** Small results are copied here for `done` (see resultView); views by length, made on first use. */
  private readonly resultScratch = new Uint8Array(BYTEWISE_COPY_BYTES);
  private readonly resultViews: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(
    BYTEWISE_COPY_BYTES + 1,
  ).fill(undefined);
  /** Atomics.notify calls that woke a sleeping worker, and notifications of completions received (gauges: wake-ups per batch). */
  private wakeups = 0;
  private doorbells = 0;
  /** Lost wake-ups the watchdog recovered (see rewakeStalled). */
  private lostWakeups = 0;
  /** Ring polls (and polls that found a task) of workers that are gone; live workers count in their control block. */
  private retiredSpins = 0;
  private retiredSpinCatches = 0;

  constructor(context: PoolContext, options: WorkerPoolOptions = {}) {
    this.context = context;
    const { pool, custom, memory } = context.config;
    this.threads = options.threads ?? (pool.threads === 0 ? navigator.hardwareConcurrency : pool.threads);
    this.maxQueue = pool.max_queue;
    this.taskTimeoutMs = pool.task_timeout_ms;
    const handlers = options.handlersPath ?? custom.handlers;
    this.handlersPath = handlers === "" ? "" : resolvePath(process.cwd(), handlers);
    this.spinMicros = options.spinMicros ?? pool.spin_us;
    this.spinCores = options.spinCores ?? availableParallelism() - 1;
    this.workerUrl = options.workerUrl ?? POOL_WORKER_URL;
    this.loseWakeups = options.loseWakeups ?? false;
    this.arena = options.arena ?? createArena(memory, (message) => context.logger.error(message));
    if (this.threads < 1) throw new Error(`pool.threads must be at least 1 (got ${this.threads})`);
    this.mainControl = new Int32Array(new SharedArrayBuffer(mainControlInt32s(this.threads) * 4));
    Atomics.store(this.mainControl, MAIN_SLEEPING, 1);
  }

  /** Starts the workers; resolves when all are ready, rejects with a clear message when they keep dying. */
  start(): Promise<void> {
    const started = new Promise<void>((resolve, reject) => {
      this.startWaiter = { resolve, reject };
    });
    for (let i = 0; i < this.threads; i++) this.spawn(i);
    this.registerGauges();
    const periodMs =
      this.taskTimeoutMs > 0 ? Math.min(1000, Math.max(5, this.taskTimeoutMs / 4)) : WATCHDOG_INTERVAL_MS;
    this.watchdogTimer = setInterval(() => this.watchdog(), periodMs);
    this.watchdogTimer.unref();
    return started;
  }

  handles(opcode: number): boolean {
    return opcode === OP_HASH || this.userOpcodes[opcode] === 1;
  }

  pending(): number {
    return this.queue.length + this.running;
  }

  /** Opcodes 0x80-0xFF the handlers module implements. */
  userOpcodeList(): number[] {
    const list: number[] = [];
    for (let op = 0; op < 256; op++) if (this.userOpcodes[op] === 1) list.push(op);
    return list;
  }

  run(opcode: number, payload: Uint8Array, token: number, done: OpDone): void {
    this.submit(opcode, payload, 0, payload.length, token, done);
  }

  /**
   * `run` as a promise, for callers off the hot path (tools, embedding). The result's payload is a copy.
   * `signal`: an abort before the task is answered settles it at once with status 6 "aborted" (the worker may still
   * finish it; its result is dropped). `timeoutMs`: settles with status 7 when no answer came in time (the pool's own
   * pool.task_timeout_ms still bounds the worker).
   */
  runTask(
    opcode: number,
    payload: Uint8Array,
    options: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<TaskResult> {
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.resolve({ status: FrameStatus.INTERNAL, payload: messageBytes("aborted") });
    return new Promise<TaskResult>((resolve) => {
      let isSettled = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (status: number, result: Uint8Array) => {
        if (isSettled) return;
        isSettled = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve({ status, payload: result });
      };
      const onAbort = () => settle(FrameStatus.INTERNAL, messageBytes("aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined && timeoutMs > 0)
        timer = setTimeout(
          () => settle(FrameStatus.TIMEOUT, messageBytes("timed out waiting for the pool")),
          timeoutMs,
        );
      this.run(opcode, payload, 0, (_token, status, result) => settle(status, result.slice()));
    });
  }

  /** `run` with the payload given as bytes[start, start + length); copied into the arena before this returns. */
  runRange(opcode: number, bytes: Uint8Array, start: number, length: number, token: number, done: OpDone): void {
    this.submit(opcode, bytes, start, length, token, done);
  }

  private submit(opcode: number, source: Uint8Array, start: number, length: number, token: number, done: OpDone): void {
    const stats = this.context.stats;
    if (this.stopping) {
      stats.inc(Counter.poolRejected);
      done(token, FrameStatus.BUSY, STOPPING);
      return;
    }
    const target = this.queue.length === 0 ? this.leastLoaded() : null;
    if (target === null && this.queue.length >= this.maxQueue) {
      stats.inc(Counter.poolRejected);
      done(token, FrameStatus.BUSY, QUEUE_FULL);
      return;
    }
    const arena = this.arena;
    const handle = arena.alloc(length);
    if (handle === null) {
      stats.inc(Counter.poolRejected);
      done(token, FrameStatus.BUSY, length > MAX_CLASS_BYTES || !arena.shared ? HEAP_BUDGET_SPENT : ARENA_EXHAUSTED);
      return;
    }
    const whole = start === 0 && length === source.length;
    if (handle >= 0) {
      const bytes = arena.bytes;
      const offset = arena.offsetOf(handle);
      if (length <= BYTEWISE_COPY_BYTES) {
        for (let i = 0; i < length; i++) bytes[offset + i] = source[start + i]!;
      } else bytes.set(whole ? source : source.subarray(start, start + length), offset);
    } else {
      arena.view(handle, length).set(whole ? source : source.subarray(start, start + length));
      if (arena.shared) stats.inc(Counter.arenaFallbacks);
    }
    stats.inc(Counter.poolSubmitted);
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.newSlot();
    this.taskGeneration[slot]! += 1;
    this.taskToken[slot] = token;
    this.taskDone[slot] = done;
    this.taskOpcode[slot] = opcode;
    this.taskHandle[slot] = handle;
    this.taskLength[slot] = length;
    this.taskStartMs[slot] = performance.now();
    if (target !== null) this.send(slot, target);
    else {
      this.taskState[slot] = TASK_QUEUED;
      this.queue.push(slot);
    }
  }

  /** Stops taking tasks; graceful: waits (up to timeoutMs) for queued and running ones; then ends the workers. */
  async stop(options: StopOptions): Promise<void> {
    if (this.stopped) return;
    this.stopping = true;
    if (options.graceful && this.pending() > 0) {
      const drained = new Promise<void>((resolve) => {
        this.drainWaiter = resolve;
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, options.timeoutMs);
      });
      await Promise.race([drained, deadline]);
      clearTimeout(timer);
      this.drainWaiter = null;
    }
    this.stopped = true;
    if (this.watchdogTimer !== null) clearInterval(this.watchdogTimer);
    this.pumpCompletions();
    for (const slot of this.workers) {
      slot.state = WORKER_DEAD;
      slot.worker.terminate();
    }
    while (this.queue.length > 0) this.finish(this.queue.shift(), FrameStatus.INTERNAL, STOPPED, -1);
    for (let slot = 0; slot < this.taskState.length; slot++) {
      if (this.taskState[slot] === TASK_RUNNING) this.finish(slot, FrameStatus.INTERNAL, STOPPED, -1);
    }
    this.unregisterGauges();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop({ graceful: false, timeoutMs: 0 });
  }

  private newSlot(): number {
    const slot = this.taskState.length;
    this.taskState.push(TASK_FREE);
    this.taskGeneration.push(0);
    this.taskToken.push(0);
    this.taskDone.push(null);
    this.taskOpcode.push(0);
    this.taskHandle.push(-1);
    this.taskLength.push(0);
    this.taskWorker.push(-1);
    this.taskRingIndex.push(-1);
    this.taskMessageIndex.push(-1);
    this.taskStartMs.push(0);
    this.taskTakenMs.push(-1);
    return slot;
  }

  /** The ready worker with the fewest outstanding tasks and room in its ring, or null. */
  private leastLoaded(): WorkerSlot | null {
    let best: WorkerSlot | null = null;
    const workers = this.workers;
    for (let i = 0; i < workers.length; i++) {
      const candidate = workers[i]!;
      if (candidate.state !== WORKER_READY || candidate.outstanding >= RING_ENTRIES) continue;
      if (best === null || candidate.outstanding < best.outstanding) best = candidate;
    }
    return best;
  }

  private send(slot: number, target: WorkerSlot): void {
    this.taskState[slot] = TASK_RUNNING;
    this.taskWorker[slot] = target.index;
    this.running++;
    target.outstanding++;
    const handle = this.taskHandle[slot]!;
    this.taskTakenMs[slot] = -1;
    if (handle < 0) {
      // Not in shared memory: the bytes travel by message (transferred, not copied). The handle is kept until the
      // task finishes, so its bytes stay counted against the arena's budget for ordinary memory meanwhile.
      const payload = this.arena.view(handle, this.taskLength[slot]!);
      const message: TaskMessage = {
        type: "task",
        slot,
        generation: this.taskGeneration[slot]!,
        opcode: this.taskOpcode[slot]!,
        payload,
      };
      target.worker.postMessage(message, [payload.buffer as ArrayBuffer]);
      this.taskRingIndex[slot] = -1;
      this.taskMessageIndex[slot] = target.messagesSent;
      target.messagesSent = (target.messagesSent + 1) | 0;
      return;
    }
    const index = target.subTail;
    const at = (index & RING_MASK) * ENTRY_FIELDS;
    const ring = target.submissions;
    ring[at + FIELD_SLOT] = slot;
    ring[at + FIELD_GENERATION] = this.taskGeneration[slot]!;
    ring[at + FIELD_OPCODE] = this.taskOpcode[slot]!;
    ring[at + FIELD_HANDLE] = handle;
    ring[at + FIELD_LENGTH] = this.taskLength[slot]!;
    this.taskRingIndex[slot] = index;
    target.subTail = (index + 1) | 0;
    Atomics.store(target.control, SUB_TAIL, target.subTail);
    if (this.running === 1 && !this.wakeScheduled) {
      // A lone task (nothing else out) waits for nothing else: its worker is woken and the completion wait armed now,
      // with no event-loop turn in between (pinned to one core: 14.5 -> 11.5 µs a round trip; on 2 cores 0.93x ->
      // 0.97x of raw postMessage). A completion already signalled is drained on the next turn, never inside run().
      this.wakeNow(target);
      if (!this.waitForCompletions()) this.pumpSoon();
      return;
    }
    if (++target.unwoken >= EARLY_WAKE_TASKS) this.wakeNow(target);
    if (!target.wakePending) {
      target.wakePending = true;
      this.wakeList.push(target);
      if (!this.wakeScheduled) {
        this.wakeScheduled = true;
        setImmediate(this.onWake);
      }
    }
  }

  /**
   * Wakes the sleeping workers that got tasks, once per I/O round: every data event of the round has submitted
   * its tasks by then, so one notify (one thread wake-up) carries the whole batch instead of one per task.
   */
  private wakeWorkers(): void {
    this.wakeScheduled = false;
    const list = this.wakeList;
    for (let i = 0; i < list.length; i++) {
      const worker = list[i]!;
      worker.wakePending = false;
      if (worker.state !== WORKER_DEAD) this.wakeNow(worker);
    }
    list.length = 0;
    // After the notify: on a shared core the woken worker often runs first, and then its completions are already
    // here, so they are drained now without a wait (no promise, no second wake-up).
    if (!this.waitForCompletions()) this.pump();
  }

  /** Wakes `worker` if it sleeps. The worker sleeps waiting for this word to leave 1 (see worker.ts drain): clear it, then notify that word. */
  private wakeNow(worker: WorkerSlot): void {
    worker.unwoken = 0;
    if (Atomics.compareExchange(worker.control, WORKER_SLEEPING, 1, 0) === 1) {
      if (!this.loseWakeups) Atomics.notify(worker.control, WORKER_SLEEPING);
      this.wakeups++;
    }
  }

  /** Moves queued tasks to workers with room. */
  private dispatchQueued(): void {
    const queue = this.queue;
    while (queue.length > 0) {
      const target = this.leastLoaded();
      if (target === null) return;
      this.send(queue.shift(), target);
    }
  }

  /** Calls `done` for a finished task and frees what it held. `resultHandle` is a second arena slot to free, or -1. */
  private finish(slot: number, status: number, result: Uint8Array, resultHandle: number): void {
    const done = this.taskDone[slot]!;
    const token = this.taskToken[slot]!;
    const wasRunning = this.taskState[slot] === TASK_RUNNING;
    if (wasRunning) {
      this.running--;
      const worker = this.workers[this.taskWorker[slot]!];
      if (worker !== undefined && worker.state !== WORKER_DEAD) worker.outstanding--;
    }
    this.taskState[slot] = TASK_FREE;
    this.taskDone[slot] = null;
    const stats = this.context.stats;
    if (status === FrameStatus.OK) stats.inc(Counter.poolCompleted);
    else if (status === FrameStatus.TIMEOUT) stats.inc(Counter.poolTimedOut);
    else stats.inc(Counter.poolFailed);
    this.latency.record((performance.now() - this.taskStartMs[slot]!) * 1000);
    try {
      done(token, status, result);
    } catch (error) {
      this.context.logger.error(
        `pool: a completion callback threw: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const payloadHandle = this.taskHandle[slot]!;
    if (payloadHandle !== -1) this.arena.free(payloadHandle);
    if (resultHandle !== -1 && resultHandle !== payloadHandle) this.arena.free(resultHandle);
    this.taskHandle[slot] = -1;
    this.freeSlots.push(slot);
    if (this.drainWaiter !== null && this.pending() === 0) this.drainWaiter();
  }

  /** Drains every worker's completion ring; returns how many tasks finished. */
  private pumpCompletions(): number {
    let finished = 0;
    const workers = this.workers;
    const arena = this.arena;
    for (let w = 0; w < workers.length; w++) {
      const worker = workers[w]!;
      if (worker.state === WORKER_DEAD) continue;
      const tail = Atomics.load(worker.control, DONE_TAIL);
      let head = worker.doneHead;
      if (head === tail) continue;
      const ring = worker.completions;
      while (head !== tail) {
        const at = (head & RING_MASK) * ENTRY_FIELDS;
        head = (head + 1) | 0;
        const slot = ring[at + FIELD_SLOT]!;
        const handle = ring[at + FIELD_HANDLE]!;
        if (this.taskGeneration[slot] !== ring[at + FIELD_GENERATION] || this.taskState[slot] !== TASK_RUNNING) {
          if (handle !== this.taskHandle[slot]) arena.free(handle); // a late result of a task already failed
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
   * The result bytes as a view valid during `done`: small results are copied into a scratch buffer whose views per
   * length are made once (no allocation per completion); larger ones are a view of the arena.
   */
  private resultView(handle: number, length: number): Uint8Array {
    const arena = this.arena;
    const offset = arena.offsetOf(handle);
    if (length > BYTEWISE_COPY_BYTES) return arena.bytes.subarray(offset, offset + length);
    const bytes = arena.bytes;
    const scratch = this.resultScratch;
    for (let i = 0; i < length; i++) scratch[i] = bytes[offset + i]!;
    return this.resultViews[length] ?? (this.resultViews[length] = scratch.subarray(0, length));
  }

  /**
   * While tasks are out, waits (without blocking) for a worker to say completions are ready. Returns false when a
   * worker said so already (the caller drains now), true when waiting or when there is nothing to wait for.
   */
  private waitForCompletions(): boolean {
    if (this.completionWaitArmed || this.running === 0 || this.stopped) return true;
    const wait = Atomics.waitAsync(this.mainControl, MAIN_SLEEPING, 1);
    if (!wait.async) return false;
    this.completionWaitArmed = true;
    void wait.value.then(this.onCompletionsNotified);
    return true;
  }

  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(this.onPumpLater);
  }

  private anyCompletionWaiting(): boolean {
    const workers = this.workers;
    for (let w = 0; w < workers.length; w++) {
      const worker = workers[w]!;
      if (worker.state !== WORKER_DEAD && Atomics.load(worker.control, DONE_TAIL) !== worker.doneHead) return true;
    }
    return false;
  }

  /** Runs when a worker notified: drain, refill from the queue, then re-arm the doorbell (re-checking to lose no wake-up). */
  private pump(): void {
    const mainControl = this.mainControl;
    for (let round = 0; round < MAX_PUMP_ROUNDS; round++) {
      Atomics.store(mainControl, MAIN_SLEEPING, 0);
      this.pumpCompletions();
      this.dispatchQueued();
      Atomics.store(mainControl, MAIN_SLEEPING, 1);
      if (!this.anyCompletionWaiting() && this.waitForCompletions()) return;
    }
    Atomics.store(mainControl, MAIN_SLEEPING, 0);
    this.pumpSoon();
  }

  private spawn(index: number): void {
    const worker = new Worker(this.workerUrl);
    const slot = new WorkerSlot(index, worker, this.nextLockId++);
    this.workers[index] = slot;
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.onMessage(slot, event.data);
    worker.addEventListener("error", (event: ErrorEvent) => {
      const error: unknown = event.error;
      slot.lastError =
        error instanceof Error
          ? error.message
          : (event.message.split("\n").find((line) => line.startsWith("error:")) ?? event.message);
    });
    worker.addEventListener("close", (event: Event) => {
      const code = (event as CloseEvent).code;
      this.onWorkerGone(
        slot,
        `pool worker ${index} exited (code ${code})${slot.lastError === "" ? "" : `: ${slot.lastError}`}`,
      );
    });
    const init: WorkerInit = {
      type: "init",
      workerIndex: index,
      lockId: slot.lockId,
      arena: this.arena instanceof SlabArena ? this.arena.shareable() : null,
      control: slot.control.buffer as SharedArrayBuffer,
      counters: slot.counters.buffer as SharedArrayBuffer,
      mainControl: this.mainControl.buffer as SharedArrayBuffer,
      submissions: slot.submissions.buffer as SharedArrayBuffer,
      completions: slot.completions.buffer as SharedArrayBuffer,
      handlersPath: this.handlersPath,
      spinMicros: this.spinMicros,
      spinCores: this.spinCores,
      workerCount: this.threads,
    };
    worker.postMessage(init);
    worker.unref();
  }

  private onMessage(slot: WorkerSlot, message: FromWorker): void {
    if (this.workers[slot.index] !== slot || slot.state === WORKER_DEAD) return;
    switch (message.type) {
      case "done": {
        const task = message.slot;
        if (this.taskGeneration[task] === message.generation && this.taskState[task] === TASK_RUNNING) {
          this.finish(task, message.status, message.payload, -1);
          this.dispatchQueued();
        }
        return;
      }
      case "ready": {
        slot.state = WORKER_READY;
        this.startFailures = 0;
        for (const opcode of message.opcodes) this.userOpcodes[opcode] = 1;
        if (
          this.startWaiter !== null &&
          this.workers.length === this.threads &&
          this.workers.every((w) => w.state === WORKER_READY)
        ) {
          this.startWaiter.resolve();
          this.startWaiter = null;
        }
        this.dispatchQueued();
        return;
      }
      case "startError": {
        // Deterministic (the handlers module is wrong): no point in retrying.
        slot.lastError = message.message;
        this.failStart(new Error(`pool: cannot start workers: ${message.message}`));
        return;
      }
    }
  }

  private failStart(error: Error): void {
    this.stopping = true;
    this.stopped = true;
    if (this.watchdogTimer !== null) clearInterval(this.watchdogTimer);
    for (const worker of this.workers) {
      worker.state = WORKER_DEAD;
      worker.worker.terminate();
    }
    this.unregisterGauges();
    if (this.startWaiter !== null) {
      this.startWaiter.reject(error);
      this.startWaiter = null;
    } else {
      this.context.logger.error(error.message);
      while (this.queue.length > 0) this.finish(this.queue.shift(), FrameStatus.INTERNAL, NO_WORKERS, -1);
      for (let task = 0; task < this.taskState.length; task++) {
        if (this.taskState[task] === TASK_RUNNING) this.finish(task, FrameStatus.INTERNAL, NO_WORKERS, -1);
      }
    }
  }

  /** A worker ended without being asked to: fail what it had started, re-queue what it had not, replace it. */
  private onWorkerGone(slot: WorkerSlot, reason: string): void {
    if (this.stopped || this.workers[slot.index] !== slot || slot.state === WORKER_DEAD) return;
    const wasReady = slot.state === WORKER_READY;
    this.context.stats.inc(Counter.poolCrashed);
    this.context.logger.error(reason);
    this.retire(slot, FrameStatus.INTERNAL, encoder.encode(`internal: ${reason}`));
    if (!wasReady) {
      this.startFailures++;
      if (this.startFailures >= MAX_START_FAILURES) {
        this.failStart(
          new Error(
            `pool: workers died during start-up ${this.startFailures} times in a row; last: ${reason}. Check custom.handlers and the worker's memory.`,
          ),
        );
        return;
      }
    }
    this.spawn(slot.index);
  }

  /** Takes a worker out: finishes its completed tasks, re-queues untaken ones, fails taken ones with `status`. */
  private retire(slot: WorkerSlot, status: number, message: Uint8Array): void {
    this.pumpCompletions();
    slot.state = WORKER_DEAD;
    this.retiredSpins += slot.counters[COUNTER_SPINS]!;
    this.retiredSpinCatches += slot.counters[COUNTER_SPIN_CATCHES]!;
    Atomics.store(this.mainControl, WORKER_AWAKE_BASE + slot.index, 0); // a dead worker uses no core
    if (this.arena instanceof SlabArena) this.arena.releaseLockHeldBy(slot.lockId);
    const takenUpTo = Atomics.load(slot.control, SUB_HEAD);
    const requeue: number[] = [];
    for (let task = 0; task < this.taskState.length; task++) {
      if (this.taskState[task] !== TASK_RUNNING || this.taskWorker[task] !== slot.index) continue;
      const ringIndex = this.taskRingIndex[task]!;
      if (ringIndex !== -1 && ((ringIndex - takenUpTo) | 0) >= 0) requeue.push(task);
      else this.finish(task, status, message, -1);
    }
    // Untaken tasks go back to the front of the queue in their original order.
    requeue.sort((a, b) => (this.taskRingIndex[b]! - this.taskRingIndex[a]!) | 0);
    for (const task of requeue) {
      this.taskState[task] = TASK_QUEUED;
      this.running--;
      this.queue.pushFront(task);
    }
    this.dispatchQueued();
  }

  /**
   * Runs every task_timeout_ms / 4 (or WATCHDOG_INTERVAL_MS) while the pool lives: drains completions whose doorbell
   * was missed, wakes workers that sleep on a ring with tasks (a lost wake-up would otherwise hang those tasks for
   * good), and applies the task timeout.
   */
  private watchdog(): void {
    if (this.running === 0 || this.stopped) return;
    this.pumpCompletions();
    this.dispatchQueued();
    this.rewakeStalled();
    if (this.taskTimeoutMs > 0) this.checkTimeouts();
  }

  /**
   * A worker whose ring holds tasks and whose SUB_HEAD has not moved since the last look is either busy with one long
   * task or asleep after a lost wake-up. It is notified either way: a notify with nobody waiting does nothing, and one
   * that wakes a waiter is a lost wake-up recovered (counted, logged).
   */
  private rewakeStalled(): void {
    const workers = this.workers;
    for (let w = 0; w < workers.length; w++) {
      const worker = workers[w]!;
      if (worker.state !== WORKER_READY) continue;
      const head = Atomics.load(worker.control, SUB_HEAD);
      const stalled = head !== worker.subTail && head === worker.headAtLastCheck && !worker.wakePending;
      worker.headAtLastCheck = head;
      if (!stalled) continue;
      Atomics.store(worker.control, WORKER_SLEEPING, 0);
      if (Atomics.notify(worker.control, WORKER_SLEEPING) > 0) {
        this.lostWakeups++;
        this.context.logger.warn(
          `pool: worker ${worker.index} slept with ${(worker.subTail - head) | 0} tasks in its ring (a lost wake-up); woken by the watchdog`,
        );
      }
    }
  }

  /**
   * A worker running a task longer than pool.task_timeout_ms is terminated and replaced. A task is timed from when
   * its worker starts it, not from `run`: time in the queue or in the worker's ring does not count. No clock is read
   * per task: the worker only advances a counter as it starts each task (SUB_HEAD for ring tasks, MESSAGES_TAKEN for
   * message tasks), and this check, every task_timeout_ms / 4, stamps the tasks it first sees started with its own
   * clock. The stamp is never earlier than the real start, so a task is never failed early; one is failed between
   * task_timeout_ms and about 1.5 x task_timeout_ms after it started.
   */
  private checkTimeouts(): void {
    // The watchdog has just drained finished tasks (they may wait in a completion ring until their worker ends its
    // batch), so only tasks still running are timed.
    const now = performance.now();
    const limitMs = this.taskTimeoutMs;
    const workers = this.workers;
    let hung: WorkerSlot[] | null = null;
    for (let task = 0; task < this.taskState.length; task++) {
      if (this.taskState[task] !== TASK_RUNNING) continue;
      const worker = workers[this.taskWorker[task]!]!;
      if (worker.state !== WORKER_READY) continue;
      const takenMs = this.taskTakenMs[task]!;
      if (takenMs < 0) {
        if (this.isStarted(task, worker)) this.taskTakenMs[task] = now;
      } else if (now - takenMs > limitMs && (hung === null || !hung.includes(worker))) {
        (hung ??= []).push(worker);
      }
    }
    if (hung === null) return;
    for (const worker of hung) {
      this.context.logger.warn(
        `pool: worker ${worker.index} ran a task longer than pool.task_timeout_ms (${limitMs} ms); replacing it`,
      );
      worker.worker.terminate();
      this.retire(worker, FrameStatus.TIMEOUT, TIMED_OUT);
      this.spawn(worker.index);
    }
  }

  /** Whether the worker has started the task (it may have finished it too, not yet drained). */
  private isStarted(task: number, worker: WorkerSlot): boolean {
    const ringIndex = this.taskRingIndex[task]!;
    if (ringIndex !== -1) return ((ringIndex - Atomics.load(worker.control, SUB_HEAD)) | 0) < 0;
    return ((this.taskMessageIndex[task]! - Atomics.load(worker.control, MESSAGES_TAKEN)) | 0) < 0;
  }

  private registerGauges(): void {
    this.context.gauges.set("pool", this.poolGauges);
    this.context.gauges.set("arena", this.arenaGauges);
  }

  /** On stop: the groups go (readers show their stable names at 0), unless another pool registered its own since. */
  private unregisterGauges(): void {
    const gauges = this.context.gauges;
    if (gauges.get("pool") === this.poolGauges) gauges.delete("pool");
    if (gauges.get("arena") === this.arenaGauges) gauges.delete("arena");
  }

  private readonly poolGauges = (): Record<string, number> => {
    let busyWorkers = 0;
    let workers = 0;
    let sleepingWorkers = 0;
    let awakeWorkers = 0;
    let spins = this.retiredSpins;
    let spinCatches = this.retiredSpinCatches;
    for (const slot of this.workers) {
      if (slot.state !== WORKER_READY) continue;
      awakeWorkers += Atomics.load(this.mainControl, WORKER_AWAKE_BASE + slot.index);
      spins += slot.counters[COUNTER_SPINS]!;
      spinCatches += slot.counters[COUNTER_SPIN_CATCHES]!;
      workers++;
      if (slot.outstanding > 0) busyWorkers++;
      if (Atomics.load(slot.control, WORKER_SLEEPING) === 1) sleepingWorkers++;
    }
    return {
      queued: this.queue.length,
      running: this.running,
      busyWorkers,
      workers,
      wakeups: this.wakeups,
      doorbells: this.doorbells,
      lostWakeups: this.lostWakeups,
      sleepingWorkers,
      awakeWorkers,
      spins,
      spinCatches,
      latencyP50Micros: this.latency.percentile(50),
      latencyP99Micros: this.latency.percentile(99),
    };
  };

  private readonly arenaGauges = (): Record<string, number> => {
    const stats = this.arena.stats();
    const gauges: Record<string, number> = {
      bytesInUse: stats.bytesInUse,
      peakBytes: stats.peakBytes,
      allocations: stats.allocations,
      frees: stats.frees,
      failures: stats.failures,
      fallbacks: stats.fallbacks,
      violations: stats.violations,
      capacityBytes: stats.capacityBytes,
      heapBytesInUse: stats.heapBytesInUse,
      heapBudgetBytes: stats.heapBudgetBytes,
      heapFailures: stats.heapFailures,
    };
    stats.classInUse.forEach((inUse, c) => {
      gauges[`inUse${256 << c}`] = inUse;
    });
    return gauges;
  };
}
