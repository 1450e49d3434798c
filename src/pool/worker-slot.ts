// One pool worker as the main thread sees it: the Worker, its shared rings and control words, and its load.
import { COUNTER_FIELDS, CONTROL_INT32S, ENTRY_FIELDS, RING_ENTRIES } from "./channel.ts";

export const WorkerState = {
  STARTING: 0,
  READY: 1,
  DEAD: 2,
} as const;

/** One worker and its rings. Replaced as a whole when the worker dies. */
export class WorkerSlot {
  state: number = WorkerState.STARTING;
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
  /** SUB_HEAD at the watchdog's last look (see PoolWatchdog.rewakeStalled). */
  headAtLastCheck = -1;
  /**
   * When the pool terminated this worker for running too long (performance.now()), 0 otherwise. terminate() stops
   * JavaScript at once but not a native call in progress (a large fill, hash or compression): the thread runs on
   * until that call returns, and its close event says when.
   */
  terminatedAtMs = 0;
  constructor(
    readonly index: number,
    readonly worker: Worker,
    readonly lockId: number,
  ) {}
}
