// The worker pool: runs HASH and user opcodes on Bun Workers, payloads passed as arena offsets over shared rings.
//
// This file is the facade: admission of a task (busy answers), its payload copy, its answer, start and stop. The
// parts, one job each: task-table.ts (tasks and the wait queue), dispatch.ts (ring entries and messages to
// workers), wakeups.ts (when a sleeping worker is woken), completions.ts (draining results), workers.ts (start,
// replacement, failure), watchdog.ts (lost wake-ups, task timeout), gauges.ts, run-task.ts (promise API); channel.ts
// is the shared-memory layout both threads agree on and worker.ts the worker's side. Dispatch was chosen by
// measurement (bench/micro/pool.bench.ts).
//
// pool.max_queue bounds the tasks not yet started by a worker, wherever they wait (the pool's queue or a worker's
// ring, whose capacity is an internal detail); past it, when the arena is exhausted, and when a payload over 64 KiB (ordinary memory, sent by message) would
// pass the arena's budget for those (memory.arena_bytes, held until the task finishes), `run` answers busy at once,
// before it returns. pool.task_timeout_ms counts from when a worker starts a task (see watchdog.ts).
import { availableParallelism } from "node:os";
import { resolve as resolvePath } from "node:path";
import type { ServerContext, StopOptions } from "../context.ts";
import { POOL_WORKER_URL } from "../entry-points.ts";
import { createArena, type BufferArena } from "../memory/arena.ts";
import { MAIN_THREAD_LOCK_ID, MAX_CLASS_BYTES } from "../memory/slab-arena.ts";
import { copyRange } from "../memory/copy.ts";
import { FrameStatus } from "../protocol/hps1.ts";
import { LatencyHistogram } from "../stats/histogram.ts";
import { Counter } from "../stats/stats.ts";
import { MAIN_SLEEPING, mainControlInt32s } from "./channel.ts";
import { CompletionDrain } from "./completions.ts";
import { TaskDispatcher } from "./dispatch.ts";
import { registerPoolGauges } from "./gauges.ts";
import type { OpDone, OpRunner } from "./op-runner.ts";
import { runTask, type RunTaskOptions, type TaskResult } from "./run-task.ts";
import { TaskState, TaskTable } from "./task-table.ts";
import { Waker } from "./wakeups.ts";
import { PoolWatchdog } from "./watchdog.ts";
import { WorkerState } from "./worker-slot.ts";
import { WorkerSet } from "./workers.ts";

const encoder = new TextEncoder();
const QUEUE_FULL = encoder.encode("busy: pool queue full");
const ARENA_EXHAUSTED = encoder.encode("busy: payload arena exhausted");
const HEAP_BUDGET_SPENT = encoder.encode("busy: memory for payloads over 64 KiB (budget memory.arena_bytes) is in use");
const STOPPING = encoder.encode("busy: pool is shutting down");
const STOPPED = encoder.encode("internal: pool stopped before the operation finished");

export interface WorkerPoolOptions {
  /** Worker count; overrides `pool.threads` (0 there means one per core). I/O threads each start a share. */
  readonly threads?: number;
}

/**
 * Switches only tests turn (src/pool/test-seams.ts passes them; production code never does): a worker entry that
 * crashes, lost wake-ups, polling settings outside the schema's range.
 */
export interface PoolTestSeams {
  /** Worker entry module (fixtures that crash or hang during start-up). */
  readonly workerUrl?: string | URL;
  /** Wake-ups clear the worker's sleeping word but send no notify (lost wake-ups the watchdog must recover). */
  readonly loseWakeups?: boolean;
  /** Overrides `pool.spin_us`. */
  readonly spinMicros?: number;
  /** Overrides the cores workers may poll on (CPUs this process may use, less one). */
  readonly spinCores?: number;
}

/** What the pool uses of the server's context (a ServerContext fits). */
export type PoolContext = Pick<ServerContext, "config" | "stats" | "logger" | "gauges">;

/** Starts `pool.threads` workers (each loads `custom.handlers`) and resolves once every one is warm. */
export async function startWorkerPool(context: PoolContext, options: WorkerPoolOptions = {}): Promise<WorkerPool> {
  const pool = new WorkerPool(context, options);
  await pool.start();
  return pool;
}

export type { TaskResult };

export class WorkerPool implements OpRunner {
  readonly arena: BufferArena;
  readonly threads: number;
  /** Task latency from `run` to `done`, microseconds. */
  readonly latency = new LatencyHistogram();
  private readonly context: PoolContext;
  private readonly maxQueue: number;
  private readonly tasks = new TaskTable();
  private readonly mainControl: Int32Array;
  private readonly workers: WorkerSet;
  private readonly completions: CompletionDrain;
  private readonly waker: Waker;
  private readonly dispatcher: TaskDispatcher;
  private readonly watchdog: PoolWatchdog;
  private unregisterGauges: () => void = () => {};
  private isStopping = false;
  private isStopped = false;
  private drainWaiter: (() => void) | null = null;
  private readonly finishTask = (slot: number, status: number, result: Uint8Array, resultHandle: number) =>
    this.finish(slot, status, result, resultHandle);
  private readonly dispatchQueued = () => this.dispatcher.dispatchQueued();

  constructor(context: PoolContext, options: WorkerPoolOptions = {}, seams: PoolTestSeams = {}) {
    this.context = context;
    const { pool, custom, memory } = context.config;
    this.threads = options.threads ?? (pool.threads === 0 ? navigator.hardwareConcurrency : pool.threads);
    if (this.threads < 1) throw new Error(`pool.threads must be at least 1 (got ${this.threads})`);
    this.maxQueue = pool.max_queue;
    this.arena = createArena(memory, (message) => context.logger.error(message));
    this.mainControl = new Int32Array(new SharedArrayBuffer(mainControlInt32s(this.threads) * 4));
    Atomics.store(this.mainControl, MAIN_SLEEPING, 1);
    const tasks = this.tasks;
    this.workers = new WorkerSet(
      {
        workerUrl: seams.workerUrl ?? POOL_WORKER_URL,
        threads: this.threads,
        handlersPath: custom.handlers === "" ? "" : resolvePath(process.cwd(), custom.handlers),
        spinMicros: seams.spinMicros ?? pool.spin_us,
        spinCores: seams.spinCores ?? availableParallelism() - 1,
        maxResultBytes: custom.max_response_bytes,
        mainControl: this.mainControl,
        arena: this.arena,
      },
      {
        tasks,
        stats: context.stats,
        logger: context.logger,
        finish: this.finishTask,
        dispatchQueued: this.dispatchQueued,
        drainCompletions: () => void this.completions.drain(),
        onFailed: () => this.onFailed(),
      },
      MAIN_THREAD_LOCK_ID + 1,
    );
    const slots = this.workers.slots;
    this.completions = new CompletionDrain({
      mainControl: this.mainControl,
      workers: slots,
      tasks,
      arena: this.arena,
      finish: this.finishTask,
      dispatchQueued: this.dispatchQueued,
    });
    this.waker = new Waker(this.completions, seams.loseWakeups !== true);
    this.dispatcher = new TaskDispatcher(tasks, this.arena, slots, this.waker);
    this.watchdog = new PoolWatchdog(
      {
        tasks,
        workers: this.workers,
        dispatcher: this.dispatcher,
        logger: context.logger,
        drainCompletions: () => void this.completions.drain(),
      },
      pool.task_timeout_ms,
    );
  }

  /** Starts the workers; resolves when all are ready, rejects with a clear message when they keep dying. */
  start(): Promise<void> {
    const started = this.workers.start();
    this.unregisterGauges = registerPoolGauges(this.context.gauges, {
      tasks: this.tasks,
      notStarted: () => this.notStarted(),
      workers: this.workers,
      mainControl: this.mainControl,
      waker: this.waker,
      completions: this.completions,
      watchdog: this.watchdog,
      latency: this.latency,
      arena: this.arena,
    });
    this.watchdog.start();
    return started;
  }

  handles(opcode: number): boolean {
    return this.workers.handles(opcode);
  }

  pending(): number {
    return this.tasks.waiting.length + this.tasks.running;
  }

  isSaturated(): boolean {
    return this.isStopping || this.isQueueFull();
  }

  /** Opcodes 0x80-0xFF the handlers module implements. */
  userOpcodeList(): number[] {
    return this.workers.userOpcodeList();
  }

  run(opcode: number, payload: Uint8Array, token: number, done: OpDone): void {
    this.submit(opcode, payload, 0, payload.length, token, done);
  }

  /** `run` with the payload given as bytes[start, start + length); copied into the arena before this returns. */
  runRange(opcode: number, bytes: Uint8Array, start: number, length: number, token: number, done: OpDone): void {
    this.submit(opcode, bytes, start, length, token, done);
  }

  /** `run` as a promise (see run-task.ts). */
  runTask(opcode: number, payload: Uint8Array, options: RunTaskOptions = {}): Promise<TaskResult> {
    return runTask(this, opcode, payload, options);
  }

  /** Stops taking tasks; graceful: waits (up to timeoutMs) for queued and running ones; then ends the workers. */
  async stop(options: StopOptions): Promise<void> {
    if (this.isStopped) return;
    this.isStopping = true;
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
    this.isStopped = true;
    this.completions.isStopped = true;
    this.watchdog.stop();
    this.completions.drain();
    this.workers.terminateAll();
    this.failAll(FrameStatus.INTERNAL, STOPPED);
    this.unregisterGauges();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop({ graceful: false, timeoutMs: 0 });
  }

  private submit(opcode: number, source: Uint8Array, start: number, length: number, token: number, done: OpDone): void {
    const stats = this.context.stats;
    if (this.isStopping) {
      stats.inc(Counter.poolRejected);
      done(token, FrameStatus.BUSY, STOPPING);
      return;
    }
    const tasks = this.tasks;
    if (this.isQueueFull()) {
      stats.inc(Counter.poolRejected);
      done(token, FrameStatus.BUSY, QUEUE_FULL);
      return;
    }
    const target = tasks.waiting.length === 0 ? this.dispatcher.leastLoaded() : null;
    const arena = this.arena;
    const handle = arena.alloc(length);
    if (handle === null) {
      stats.inc(Counter.poolRejected);
      done(token, FrameStatus.BUSY, length > MAX_CLASS_BYTES || !arena.shared ? HEAP_BUDGET_SPENT : ARENA_EXHAUSTED);
      return;
    }
    if (handle >= 0) copyRange(source, start, length, arena.bytes, arena.offsetOf(handle));
    else {
      arena
        .view(handle, length)
        .set(start === 0 && length === source.length ? source : source.subarray(start, start + length));
      if (arena.shared) stats.inc(Counter.arenaFallbacks);
    }
    stats.inc(Counter.poolSubmitted);
    const slot = tasks.open(token, done, opcode, handle, length, performance.now());
    if (target !== null) this.dispatcher.send(slot, target);
    else tasks.enqueue(slot, false);
  }

  /**
   * pool.max_queue tasks are waiting to be started, in the queue or in workers' rings. Tasks out (queued or handed to
   * a worker) bound that from above, so the workers' shared words are read only when that bound reaches the limit.
   */
  private isQueueFull(): boolean {
    const tasks = this.tasks;
    if (tasks.waiting.length + tasks.running < this.maxQueue) return false;
    return this.notStarted() >= this.maxQueue;
  }

  /** Tasks no worker has started yet: the queue, plus those in rings (or sent by message) not taken yet. */
  notStarted(): number {
    return this.tasks.waiting.length + this.dispatcher.unstartedInWorkers();
  }

  /** Calls `done` for a finished task and frees what it held. `resultHandle` is a second arena slot to free, or -1. */
  private finish(slot: number, status: number, result: Uint8Array, resultHandle: number): void {
    const tasks = this.tasks;
    const done = tasks.done[slot]!;
    const token = tasks.token[slot]!;
    if (tasks.state[slot] === TaskState.RUNNING) {
      const worker = this.workers.slots[tasks.worker[slot]!];
      if (worker !== undefined && worker.state !== WorkerState.DEAD) worker.outstanding--;
    }
    const payloadHandle = tasks.handle[slot]!;
    const startMs = tasks.startMs[slot]!;
    tasks.release(slot);
    const stats = this.context.stats;
    if (status === FrameStatus.OK) stats.inc(Counter.poolCompleted);
    else if (status === FrameStatus.TIMEOUT) stats.inc(Counter.poolTimedOut);
    else stats.inc(Counter.poolFailed);
    this.latency.record((performance.now() - startMs) * 1000);
    try {
      done(token, status, result);
    } catch (error) {
      this.context.logger.error(
        `pool: a completion callback threw: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (payloadHandle !== -1) this.arena.free(payloadHandle);
    if (resultHandle !== -1 && resultHandle !== payloadHandle) this.arena.free(resultHandle);
    if (this.drainWaiter !== null && this.pending() === 0) this.drainWaiter();
  }

  /** Answers every task still held (queued or running) with `status`. */
  private failAll(status: number, message: Uint8Array): void {
    const tasks = this.tasks;
    while (tasks.waiting.length > 0) this.finish(tasks.waiting.shift(), status, message, -1);
    for (let slot = 0; slot < tasks.size(); slot++) {
      if (tasks.state[slot] === TaskState.RUNNING) this.finish(slot, status, message, -1);
    }
  }

  /** The workers cannot run (start-up failed): stop as a stop would, without waiting. */
  private onFailed(): void {
    this.isStopping = true;
    this.isStopped = true;
    this.completions.isStopped = true;
    this.watchdog.stop();
    this.unregisterGauges();
  }
}
