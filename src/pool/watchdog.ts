// The pool's watchdog: a timer that, while tasks are out, drains completions whose doorbell was missed, wakes
// workers that sleep on a ring with tasks (a lost wake-up), and fails tasks that run past pool.task_timeout_ms.
import type { Logger } from "../log.ts";
import { FrameStatus } from "../protocol/hps1.ts";
import { SUB_HEAD, WORKER_SLEEPING } from "./channel.ts";
import type { TaskDispatcher } from "./dispatch.ts";
import { TaskState, type TaskTable } from "./task-table.ts";
import { WorkerState, type WorkerSlot } from "./worker-slot.ts";
import type { WorkerSet } from "./workers.ts";

/** How often the watchdog looks for stalled rings when pool.task_timeout_ms is 0 (otherwise the timeout check's period). */
const WATCHDOG_INTERVAL_MS = 500;

const TIMED_OUT = new TextEncoder().encode("timeout: the operation ran longer than pool.task_timeout_ms");

export interface WatchdogParts {
  readonly tasks: TaskTable;
  readonly workers: WorkerSet;
  readonly dispatcher: TaskDispatcher;
  readonly logger: Logger;
  drainCompletions(): void;
}

export class PoolWatchdog {
  /** Lost wake-ups recovered (gauge). */
  lostWakeups = 0;
  private readonly parts: WatchdogParts;
  private readonly taskTimeoutMs: number;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(parts: WatchdogParts, taskTimeoutMs: number) {
    this.parts = parts;
    this.taskTimeoutMs = taskTimeoutMs;
  }

  /** Runs every task_timeout_ms / 4 (within 5 ms to 1 s), or every WATCHDOG_INTERVAL_MS without a timeout. */
  start(): void {
    const timeoutMs = this.taskTimeoutMs;
    const periodMs = timeoutMs > 0 ? Math.min(1000, Math.max(5, timeoutMs / 4)) : WATCHDOG_INTERVAL_MS;
    this.timer = setInterval(() => this.check(), periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private check(): void {
    const parts = this.parts;
    if (parts.tasks.running === 0) return;
    parts.drainCompletions();
    parts.dispatcher.dispatchQueued();
    this.rewakeStalled();
    if (this.taskTimeoutMs > 0) this.checkTimeouts();
  }

  /**
   * A worker whose ring holds tasks and whose SUB_HEAD has not moved since the last look is either busy with one long
   * task or asleep after a lost wake-up. It is notified either way: a notify with nobody waiting does nothing, and one
   * that wakes a waiter is a lost wake-up recovered (counted, logged).
   */
  private rewakeStalled(): void {
    const workers = this.parts.workers.slots;
    for (let w = 0; w < workers.length; w++) {
      const worker = workers[w]!;
      if (worker.state !== WorkerState.READY) continue;
      const head = Atomics.load(worker.control, SUB_HEAD);
      const stalled = head !== worker.subTail && head === worker.headAtLastCheck && !worker.wakePending;
      worker.headAtLastCheck = head;
      if (!stalled) continue;
      Atomics.store(worker.control, WORKER_SLEEPING, 0);
      if (Atomics.notify(worker.control, WORKER_SLEEPING) > 0) {
        this.lostWakeups++;
        this.parts.logger.warn(
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
    // check() has just drained finished tasks (they may wait in a completion ring until their worker ends its
    // batch), so only tasks still running are timed.
    const { tasks, dispatcher, workers } = this.parts;
    const now = performance.now();
    const limitMs = this.taskTimeoutMs;
    let hung: WorkerSlot[] | null = null;
    for (let task = 0; task < tasks.size(); task++) {
      if (tasks.state[task] !== TaskState.RUNNING) continue;
      const worker = workers.slots[tasks.worker[task]!]!;
      if (worker.state !== WorkerState.READY) continue;
      const takenMs = tasks.takenMs[task]!;
      if (takenMs < 0) {
        if (dispatcher.isStarted(task, worker)) tasks.takenMs[task] = now;
      } else if (now - takenMs > limitMs && (hung === null || !hung.includes(worker))) {
        (hung ??= []).push(worker);
      }
    }
    if (hung === null) return;
    for (const worker of hung) {
      this.parts.logger.warn(
        `pool: worker ${worker.index} ran a task longer than pool.task_timeout_ms (${limitMs} ms); replacing it`,
      );
      workers.replace(worker, FrameStatus.TIMEOUT, TIMED_OUT);
    }
  }
}
