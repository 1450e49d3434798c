// The pool workers' life cycle: start (resolved when every worker is warm), replacement of a worker that died or
// hung (its started tasks fail, the rest go back to the queue), start-up failure, and the end of all of them.
import type { Logger } from "../log.ts";
import type { BufferArena } from "../memory/arena.ts";
import { SlabArena } from "../memory/slab-arena.ts";
import { FrameStatus, Opcode } from "../protocol/hps1.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import {
  COUNTER_SPIN_CATCHES,
  COUNTER_SPINS,
  SUB_HEAD,
  WORKER_AWAKE_BASE,
  type FromWorker,
  type WorkerInit,
} from "./channel.ts";
import type { FinishTask } from "./completions.ts";
import { TaskState, type TaskTable } from "./task-table.ts";
import { WorkerState, WorkerSlot } from "./worker-slot.ts";

/** Worker deaths before it reports ready, in a row, after which the pool gives up (start-up fails, or the slot stays empty). */
const MAX_START_FAILURES = 3;
/** A terminated worker whose thread outlives terminate() by this much is reported (it was inside a native call). */
const TERMINATION_REPORT_MS = 100;

const encoder = new TextEncoder();
const NO_WORKERS = encoder.encode("internal: no pool worker is running");

/** What every worker is started with (WorkerInit less what differs per worker). */
export interface WorkerSettings {
  readonly workerUrl: string | URL;
  readonly threads: number;
  readonly handlersPath: string;
  readonly spinMicros: number;
  readonly spinCores: number;
  readonly maxResultBytes: number;
  readonly mainControl: Int32Array;
  readonly arena: BufferArena;
}

/** What the worker set calls back into (the pool facade). */
export interface WorkerSetHost {
  readonly tasks: TaskTable;
  readonly stats: Stats;
  readonly logger: Logger;
  readonly finish: FinishTask;
  dispatchQueued(): void;
  /** Drains completion rings (so tasks a dying worker finished are answered with their results). */
  drainCompletions(): void;
  /** The pool cannot run: it stops taking tasks. */
  onFailed(): void;
}

export class WorkerSet {
  /** Indexed by worker index; a replaced worker's slot is overwritten. */
  readonly slots: WorkerSlot[] = [];
  /** Ring polls (and polls that found a task) of workers that are gone; live workers count in their control block. */
  retiredSpins = 0;
  retiredSpinCatches = 0;
  /** Workers terminated for running too long whose thread has not exited yet (still in a native call). */
  terminating = 0;
  private readonly settings: WorkerSettings;
  private readonly host: WorkerSetHost;
  private readonly userOpcodes = new Uint8Array(256);
  private nextLockId: number;
  private startFailures = 0;
  /** Set on stop or failure: a worker ending then is expected. */
  private isEnded = false;
  private startWaiter: { resolve: () => void; reject: (error: Error) => void } | null = null;

  constructor(settings: WorkerSettings, host: WorkerSetHost, firstLockId: number) {
    this.settings = settings;
    this.host = host;
    this.nextLockId = firstLockId;
  }

  /** Starts every worker; resolves when all are ready, rejects with a clear message when they keep dying. */
  start(): Promise<void> {
    const started = new Promise<void>((resolve, reject) => {
      this.startWaiter = { resolve, reject };
    });
    for (let i = 0; i < this.settings.threads; i++) this.spawn(i);
    return started;
  }

  handles(opcode: number): boolean {
    return opcode === Opcode.HASH || this.userOpcodes[opcode] === 1;
  }

  /** Opcodes 0x80-0xFF the handlers module implements. */
  userOpcodeList(): number[] {
    const list: number[] = [];
    for (let op = 0; op < 256; op++) if (this.userOpcodes[op] === 1) list.push(op);
    return list;
  }

  /** Terminates `worker` (hung: it ran a task too long), fails its started tasks with `status`, starts a replacement. */
  replace(worker: WorkerSlot, status: number, message: Uint8Array): void {
    worker.terminatedAtMs = performance.now();
    this.terminating++;
    worker.worker.terminate();
    this.retire(worker, status, message);
    this.spawn(worker.index);
  }

  /** Ends every worker (stop): no replacement, no task handling. */
  terminateAll(): void {
    this.isEnded = true;
    for (const slot of this.slots) {
      slot.state = WorkerState.DEAD;
      slot.worker.terminate();
    }
  }

  private spawn(index: number): void {
    const settings = this.settings;
    const worker = new Worker(settings.workerUrl);
    const slot = new WorkerSlot(index, worker, this.nextLockId++);
    this.slots[index] = slot;
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.onMessage(slot, event.data);
    worker.addEventListener("error", (event: ErrorEvent) => {
      const error: unknown = event.error;
      slot.lastError =
        error instanceof Error
          ? error.message
          : (event.message.split("\n").find((line) => line.startsWith("error:")) ?? event.message);
    });
    worker.addEventListener("close", (event: Event) => {
      if (slot.terminatedAtMs > 0) {
        this.onTerminatedExit(slot);
        return;
      }
      const code = (event as CloseEvent).code;
      this.onWorkerGone(
        slot,
        `pool worker ${index} exited (code ${code})${slot.lastError === "" ? "" : `: ${slot.lastError}`}`,
      );
    });
    const arena = settings.arena;
    const init: WorkerInit = {
      type: "init",
      workerIndex: index,
      lockId: slot.lockId,
      arena: arena instanceof SlabArena ? arena.shareable() : null,
      control: slot.control.buffer as SharedArrayBuffer,
      counters: slot.counters.buffer as SharedArrayBuffer,
      mainControl: settings.mainControl.buffer as SharedArrayBuffer,
      submissions: slot.submissions.buffer as SharedArrayBuffer,
      completions: slot.completions.buffer as SharedArrayBuffer,
      handlersPath: settings.handlersPath,
      spinMicros: settings.spinMicros,
      spinCores: settings.spinCores,
      workerCount: settings.threads,
      maxResultBytes: settings.maxResultBytes,
    };
    worker.postMessage(init);
    worker.unref();
  }

  /** A worker the pool terminated has really stopped: says how long its thread ran on (a native call cannot be cut). */
  private onTerminatedExit(slot: WorkerSlot): void {
    this.terminating--;
    const ranOnMs = performance.now() - slot.terminatedAtMs;
    slot.terminatedAtMs = 0;
    if (ranOnMs >= TERMINATION_REPORT_MS) {
      this.host.logger.warn(
        `pool: worker ${slot.index}, terminated for running too long, kept its thread busy ${Math.round(ranOnMs)} ms more (a native call cannot be interrupted; its replacement was serving meanwhile)`,
      );
    }
  }

  private onMessage(slot: WorkerSlot, message: FromWorker): void {
    if (this.slots[slot.index] !== slot || slot.state === WorkerState.DEAD) return;
    switch (message.type) {
      case "done": {
        const tasks = this.host.tasks;
        const task = message.slot;
        if (tasks.generation[task] === message.generation && tasks.state[task] === TaskState.RUNNING) {
          this.host.finish(task, message.status, message.payload, -1);
          this.host.dispatchQueued();
        }
        return;
      }
      case "ready": {
        slot.state = WorkerState.READY;
        this.startFailures = 0;
        for (const opcode of message.opcodes) this.userOpcodes[opcode] = 1;
        if (
          this.startWaiter !== null &&
          this.slots.length === this.settings.threads &&
          this.slots.every((w) => w.state === WorkerState.READY)
        ) {
          this.startWaiter.resolve();
          this.startWaiter = null;
        }
        this.host.dispatchQueued();
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

  /** The pool cannot run: every worker ends; start() rejects, or (after start) every task is failed. */
  private failStart(error: Error): void {
    this.terminateAll();
    this.host.onFailed();
    if (this.startWaiter !== null) {
      this.startWaiter.reject(error);
      this.startWaiter = null;
      return;
    }
    this.host.logger.error(error.message);
    const tasks = this.host.tasks;
    while (tasks.waiting.length > 0) this.host.finish(tasks.waiting.shift(), FrameStatus.INTERNAL, NO_WORKERS, -1);
    for (let task = 0; task < tasks.size(); task++) {
      if (tasks.state[task] === TaskState.RUNNING) this.host.finish(task, FrameStatus.INTERNAL, NO_WORKERS, -1);
    }
  }

  /** A worker ended without being asked to: fail what it had started, re-queue what it had not, replace it. */
  private onWorkerGone(slot: WorkerSlot, reason: string): void {
    if (this.isEnded || this.slots[slot.index] !== slot || slot.state === WorkerState.DEAD) return;
    const wasReady = slot.state === WorkerState.READY;
    this.host.stats.inc(Counter.poolCrashed);
    this.host.logger.error(reason);
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
    const host = this.host;
    host.drainCompletions();
    slot.state = WorkerState.DEAD;
    this.retiredSpins += slot.counters[COUNTER_SPINS]!;
    this.retiredSpinCatches += slot.counters[COUNTER_SPIN_CATCHES]!;
    Atomics.store(this.settings.mainControl, WORKER_AWAKE_BASE + slot.index, 0); // a dead worker uses no core
    const arena = this.settings.arena;
    if (arena instanceof SlabArena) arena.releaseLockHeldBy(slot.lockId);
    const tasks = host.tasks;
    const takenUpTo = Atomics.load(slot.control, SUB_HEAD);
    const requeue: number[] = [];
    for (let task = 0; task < tasks.size(); task++) {
      if (tasks.state[task] !== TaskState.RUNNING || tasks.worker[task] !== slot.index) continue;
      const ringIndex = tasks.ringIndex[task]!;
      if (ringIndex !== -1 && ((ringIndex - takenUpTo) | 0) >= 0) requeue.push(task);
      else host.finish(task, status, message, -1);
    }
    // Untaken tasks go back to the front of the queue in their original order.
    requeue.sort((a, b) => (tasks.ringIndex[b]! - tasks.ringIndex[a]!) | 0);
    for (const task of requeue) tasks.enqueue(task, true);
    host.dispatchQueued();
  }
}
