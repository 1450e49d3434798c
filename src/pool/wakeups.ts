// Waking sleeping pool workers: once per I/O round for the tasks the round gave them (one thread wake-up carries a
// whole batch), at once for a lone task or for a worker a round has already given EARLY_WAKE_TASKS tasks.
import { WORKER_SLEEPING } from "./channel.ts";
import type { CompletionDrain } from "./completions.ts";
import { WorkerState, type WorkerSlot } from "./worker-slot.ts";

/**
 * A worker that got this many tasks in one I/O round is woken at once rather than at the round's end, so it works
 * through a large batch while the rest is still being submitted (1024 in flight in bench/micro/pool.bench.ts).
 */
export const EARLY_WAKE_TASKS = 64;

export class Waker {
  /** Atomics.notify calls that woke a sleeping worker (gauge). */
  wakeups = 0;
  private readonly completions: CompletionDrain;
  /** false only under a test seam: wake-ups clear the sleeping word but notify nobody (a lost wake-up). */
  private readonly notifies: boolean;
  /** Workers given tasks since the last wake-up round; woken once per round, not once per task. */
  private readonly wakeList: WorkerSlot[] = [];
  private isRoundScheduled = false;
  private readonly onRound = () => this.wakeRound();

  constructor(completions: CompletionDrain, notifies: boolean) {
    this.completions = completions;
    this.notifies = notifies;
  }

  /**
   * A task was written to `worker`'s ring. `isLone`: it is the only task out, so it waits for nothing else: its
   * worker is woken and the completion wait armed now, with no event-loop turn in between (the single-task round
   * trip of bench/micro/pool.bench.ts). A completion already signalled is drained on the next turn, never inside run().
   */
  taskAdded(worker: WorkerSlot, isLone: boolean): void {
    if (isLone && !this.isRoundScheduled) {
      this.wakeNow(worker);
      if (!this.completions.waitForCompletions()) this.completions.pumpSoon();
      return;
    }
    if (++worker.unwoken >= EARLY_WAKE_TASKS) this.wakeNow(worker);
    if (worker.wakePending) return;
    worker.wakePending = true;
    this.wakeList.push(worker);
    if (!this.isRoundScheduled) {
      this.isRoundScheduled = true;
      setImmediate(this.onRound);
    }
  }

  /** Wakes `worker` if it sleeps. The worker sleeps waiting for this word to leave 1 (see worker.ts drain): clear it, then notify that word. */
  wakeNow(worker: WorkerSlot): void {
    worker.unwoken = 0;
    if (Atomics.compareExchange(worker.control, WORKER_SLEEPING, 1, 0) === 1) {
      if (this.notifies) Atomics.notify(worker.control, WORKER_SLEEPING);
      this.wakeups++;
    }
  }

  /**
   * Wakes the sleeping workers that got tasks, once per I/O round: every data event of the round has submitted
   * its tasks by then, so one notify (one thread wake-up) carries the whole batch instead of one per task.
   */
  private wakeRound(): void {
    this.isRoundScheduled = false;
    const list = this.wakeList;
    for (let i = 0; i < list.length; i++) {
      const worker = list[i]!;
      worker.wakePending = false;
      if (worker.state !== WorkerState.DEAD) this.wakeNow(worker);
    }
    list.length = 0;
    // After the notify: on a shared core the woken worker often runs first, and then its completions are already
    // here, so they are drained now without a wait (no promise, no second wake-up).
    if (!this.completions.waitForCompletions()) this.completions.pump();
  }
}
