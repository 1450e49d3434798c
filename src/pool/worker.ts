// Pool worker entry: takes tasks from its submission ring (payloads in the arena) or from messages, runs the op,
// writes the result back into the arena and publishes it on its completion ring.
import { SlabArena } from "../memory/slab-arena.ts";
import {
  CONTROL_INT32S,
  DONE_TAIL,
  ENTRY_FIELDS,
  FIELD_GENERATION,
  FIELD_HANDLE,
  FIELD_LENGTH,
  FIELD_OPCODE,
  COUNTER_SPIN_CATCHES,
  COUNTER_SPINS,
  FIELD_SLOT,
  FIELD_STATUS,
  MAIN_SLEEPING,
  MESSAGES_TAKEN,
  RING_MASK,
  SUB_HEAD,
  SUB_TAIL,
  WORKER_AWAKE_BASE,
  WORKER_SLEEPING,
  type DoneMessage,
  type TaskMessage,
  type ToWorker,
  type WorkerInit,
} from "./channel.ts";
import { FIRST_USER_OPCODE, FrameStatus } from "../protocol/hps1.ts";
import { builtinOps, loadUserHandlers, type OpHandler } from "./ops.ts";

declare const self: Worker;

const handlers: (OpHandler | undefined)[] = new Array(256).fill(undefined);
const encoder = new TextEncoder();
let arena: SlabArena | null = null;
let bytes: Uint8Array = new Uint8Array(0);
let control: Int32Array = new Int32Array(CONTROL_INT32S);
let counters: Float64Array = new Float64Array(0);
let mainControl: Int32Array = new Int32Array(1);
let submissions: Float64Array = new Float64Array(0);
let completions: Float64Array = new Float64Array(0);
let doneTail = 0;
/** Completions were published since the last doorbell check. */
let doorbellOwed = false;
let doorbellScheduled = false;

/**
 * Polling before sleeping. A sleeping worker costs a cross-thread wake-up for its next task; a
 * worker still polling costs none. It polls only when the gap before its previous task (ring empty -> next task
 * seen) was within the spin time, so a steady stream or a ping-pong is polled for and sparse traffic is not. A poll
 * that finds nothing makes the worker skip the next 1, 3, 7 ... 63 chances to poll (reset by a poll that finds a
 * task): when polling does not pay it costs little. A worker polls only while the workers awake, itself included,
 * leave a core to the main thread (spinCores): a poll must never take the core the main thread or a busy worker needs,
 * so with one CPU, or as many workers as cores and all busy, nobody polls. And unless every worker has a spare core
 * of its own, a worker polls only after completions that woke the main thread (which may answer with the next task at
 * once): while the main thread is busy submitting a burst it wakes the workers itself, and a worker chasing that burst
 * task by task would only crowd the cores (POOL_BENCH_THREADS=2 bun run bench pool, 1024 in flight, shows it).
 */
let spinMs = 0;
/** The last completions woke the main thread: it will now run, and may send the next task at once. */
let mainWoken = false;
let spinCores = 0;
/** As many spare cores as workers: polling never competes with the main thread or another worker. */
let everyWorkerHasACore = false;
let workerCount = 0;
/** custom.max_response_bytes: the largest result a user handler may answer with. */
let maxResultBytes = 0;
/** This worker's WORKER_AWAKE word in mainControl. */
let awakeIndex = 0;
/** The drain loop waits for a wake-up (a message task running now sets the awake word only while it runs). */
let drainAsleep = false;
let ringEmptySinceMs = 0;
let lastGapMs = Infinity;
let spinMisses = 0;
let spinsToSkip = 0;
const MAX_SPIN_MISS_STREAK = 6;
/**
 * Longest run of the drain loop before it lets this thread's event loop turn. While tasks keep coming (and polling
 * catches each next one) the loop would otherwise never return, and message tasks, timers and the continuations of
 * async handlers would wait for the stream to stop.
 */
const DRAIN_SLICE_MS = 2;
/** Ring polls between clock reads. */
const POLLS_PER_CLOCK_READ = 32;

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "task") runMessageTask(message);
  else void init(message);
};

async function init(message: WorkerInit): Promise<void> {
  try {
    for (const [opcode, handler] of builtinOps()) handlers[opcode] = handler;
    const opcodes: number[] = [];
    if (message.handlersPath !== "") {
      for (const [opcode, handler] of await loadUserHandlers(message.handlersPath)) {
        handlers[opcode] = handler;
        opcodes.push(opcode);
      }
    }
    if (message.arena) {
      arena = SlabArena.attach(message.arena, message.lockId);
      bytes = arena.bytes;
    }
    control = new Int32Array(message.control);
    counters = new Float64Array(message.counters);
    mainControl = new Int32Array(message.mainControl);
    submissions = new Float64Array(message.submissions);
    completions = new Float64Array(message.completions);
    doneTail = Atomics.load(control, DONE_TAIL);
    spinMs = message.spinMicros / 1000;
    spinCores = message.spinCores;
    workerCount = message.workerCount;
    maxResultBytes = message.maxResultBytes;
    everyWorkerHasACore = workerCount <= spinCores;
    awakeIndex = WORKER_AWAKE_BASE + message.workerIndex;
    postMessage({ type: "ready", opcodes });
  } catch (error) {
    postMessage({ type: "startError", message: error instanceof Error ? error.message : String(error) });
    return;
  }
  drain();
}

/**
 * Runs every task in the submission ring, then sleeps (without blocking the event loop) until more arrive.
 *
 * The sleep waits on WORKER_SLEEPING itself, not on SUB_TAIL: the pool wakes a worker by flipping that word 1 -> 0
 * and then notifying, and its wake for a task can come late, after this loop already took the task and went back to
 * sleep. Had the wait been on SUB_TAIL, such a stale wake landing between the re-check and the wait would clear the
 * flag and notify nobody, and the wait would then start with the flag 0: the pool, seeing 0, never notifies again,
 * and the worker sleeps through every later task (seen under sustained load). Waiting for the word to stay 1 turns
 * that wake into "not-equal": the loop looks at the ring again and goes back to sleep with the flag set.
 */
function drain(): void {
  drainAsleep = false;
  Atomics.store(mainControl, awakeIndex, 1);
  const sliceEndMs = performance.now() + DRAIN_SLICE_MS;
  for (;;) {
    if (performance.now() >= sliceEndMs) {
      // Still awake (the pool sends no wake-up); messages, timers and async handlers' continuations run first.
      setImmediate(drain);
      return;
    }
    let head = control[SUB_HEAD]!;
    const tail = Atomics.load(control, SUB_TAIL);
    if (head === tail) {
      if (spinMs > 0 && pollForTask(head)) continue;
      Atomics.store(control, WORKER_SLEEPING, 1);
      // A task published before the flag was set may have had its wake skipped (the pool saw 0): take it now.
      if (Atomics.load(control, SUB_TAIL) !== head) {
        Atomics.store(control, WORKER_SLEEPING, 0);
        continue;
      }
      Atomics.store(mainControl, awakeIndex, 0);
      const wait = Atomics.waitAsync(control, WORKER_SLEEPING, 1);
      if (wait.async) {
        drainAsleep = true;
        void wait.value.then(drain);
        return;
      }
      Atomics.store(mainControl, awakeIndex, 1);
      Atomics.store(control, WORKER_SLEEPING, 0);
      continue;
    }
    if (ringEmptySinceMs !== 0) {
      lastGapMs = performance.now() - ringEmptySinceMs;
      ringEmptySinceMs = 0;
    }
    while (head !== tail) {
      const at = (head & RING_MASK) * ENTRY_FIELDS;
      head = (head + 1) | 0;
      Atomics.store(control, SUB_HEAD, head); // taken: from here on a crash fails this task instead of re-queueing it
      runRingTask(
        submissions[at + FIELD_SLOT]!,
        submissions[at + FIELD_GENERATION]!,
        submissions[at + FIELD_OPCODE]!,
        submissions[at + FIELD_HANDLE]!,
        submissions[at + FIELD_LENGTH]!,
      );
    }
    ringDoorbell(); // once per batch: the main thread drains all of it in one wake-up
  }
}

/** Polls the empty ring for up to spinMs when polling has been paying; true when a task arrived meanwhile. */
function pollForTask(head: number): boolean {
  const nowMs = performance.now();
  ringEmptySinceMs = nowMs;
  if (!(mainWoken || everyWorkerHasACore) || lastGapMs > spinMs || awakeWorkers() > spinCores) return false;
  if (spinsToSkip > 0) {
    spinsToSkip--;
    return false;
  }
  counters[COUNTER_SPINS]! += 1;
  const deadlineMs = nowMs + spinMs;
  let polls = 0;
  for (;;) {
    if (Atomics.load(control, SUB_TAIL) !== head) {
      spinMisses = 0;
      counters[COUNTER_SPIN_CATCHES]! += 1;
      return true;
    }
    if (++polls % POLLS_PER_CLOCK_READ === 0 && performance.now() >= deadlineMs) break;
    Atomics.pause();
  }
  if (spinMisses < MAX_SPIN_MISS_STREAK) spinMisses++;
  spinsToSkip = (1 << spinMisses) - 1;
  return false;
}

function awakeWorkers(): number {
  let awake = 0;
  for (let i = 0; i < workerCount; i++) awake += Atomics.load(mainControl, WORKER_AWAKE_BASE + i);
  return awake;
}

/** Tells an idle main thread that completions wait; nothing when it is busy (it drains before it sleeps). */
function ringDoorbell(): void {
  doorbellScheduled = false;
  if (!doorbellOwed) {
    mainWoken = false; // nothing was published, so nobody was woken
    return;
  }
  doorbellOwed = false;
  mainWoken = Atomics.compareExchange(mainControl, MAIN_SLEEPING, 1, 0) === 1;
  if (mainWoken) Atomics.notify(mainControl, MAIN_SLEEPING);
}

/** For completions published outside the drain loop (async handlers): one doorbell per microtask checkpoint. */
function ringDoorbellSoon(): void {
  if (doorbellScheduled) return;
  doorbellScheduled = true;
  queueMicrotask(ringDoorbell);
}

function runRingTask(slot: number, generation: number, opcode: number, handle: number, length: number): void {
  const offset = arena!.offsetOf(handle);
  const handler = handlers[opcode];
  if (handler === undefined) {
    completeError(
      slot,
      generation,
      handle,
      FrameStatus.UNKNOWN_OPCODE,
      `opcode 0x${opcode.toString(16)} has no handler in the pool`,
    );
    return;
  }
  let result: Uint8Array | Promise<Uint8Array>;
  try {
    result = handler(bytes.subarray(offset, offset + length));
  } catch (error) {
    completeError(slot, generation, handle, FrameStatus.INTERNAL, errorText(error));
    return;
  }
  if (result instanceof Uint8Array) completeWith(slot, generation, handle, opcode, result);
  else settleLater(slot, generation, handle, opcode, result);
}

/** A handler's (sync or settled) value: the result, or status 6 when it is not bytes or is over the response limit. */
function completeWith(slot: number, generation: number, handle: number, opcode: number, value: unknown): void {
  const problem = resultProblem(opcode, value);
  if (problem === null) complete(slot, generation, handle, FrameStatus.OK, value as Uint8Array);
  else completeError(slot, generation, handle, FrameStatus.INTERNAL, problem);
}

/** Async handlers: one closure per task is the price of a promise. */
function settleLater(slot: number, generation: number, handle: number, opcode: number, result: unknown): void {
  Promise.resolve(result).then(
    (value) => {
      completeWith(slot, generation, handle, opcode, value);
      ringDoorbellSoon();
    },
    (error: unknown) => {
      completeError(slot, generation, handle, FrameStatus.INTERNAL, errorText(error));
      ringDoorbellSoon();
    },
  );
}

/** Puts the result in the payload's slot when it fits, else in a new slot, else sends it by message. */
function complete(slot: number, generation: number, payloadHandle: number, status: number, result: Uint8Array): void {
  const length = result.length;
  let handle = payloadHandle;
  if (length > arena!.capacityOf(payloadHandle)) {
    const fresh = arena!.allocShared(length);
    if (fresh === null) {
      const message: DoneMessage = { type: "done", slot, generation, status, payload: result };
      postMessage(message);
      return;
    }
    handle = fresh;
  }
  bytes.set(result, arena!.offsetOf(handle));
  publish(slot, generation, status, handle, length);
}

function completeError(slot: number, generation: number, payloadHandle: number, status: number, text: string): void {
  const offset = arena!.offsetOf(payloadHandle);
  const { written } = encoder.encodeInto(text, bytes.subarray(offset, offset + arena!.capacityOf(payloadHandle)));
  publish(slot, generation, status, payloadHandle, written);
}

function publish(slot: number, generation: number, status: number, handle: number, length: number): void {
  const at = (doneTail & RING_MASK) * ENTRY_FIELDS;
  completions[at + FIELD_SLOT] = slot;
  completions[at + FIELD_GENERATION] = generation;
  completions[at + FIELD_STATUS] = status;
  completions[at + FIELD_HANDLE] = handle;
  completions[at + FIELD_LENGTH] = length;
  doneTail = (doneTail + 1) | 0;
  Atomics.store(control, DONE_TAIL, doneTail);
  doorbellOwed = true;
}

/** A task whose payload came by message (too large for the arena, or no arena): the result goes back the same way. */
function runMessageTask(task: TaskMessage): void {
  Atomics.add(control, MESSAGES_TAKEN, 1); // started: from here on the pool's task timeout applies
  // This thread uses a core while the handler runs, so other workers count it before polling.
  Atomics.store(mainControl, awakeIndex, 1);
  runMessageHandler(task);
  if (drainAsleep) Atomics.store(mainControl, awakeIndex, 0);
}

function runMessageHandler(task: TaskMessage): void {
  const handler = handlers[task.opcode];
  if (handler === undefined) {
    reply(
      task,
      FrameStatus.UNKNOWN_OPCODE,
      encoder.encode(`opcode 0x${task.opcode.toString(16)} has no handler in the pool`),
    );
    return;
  }
  let result: Uint8Array | Promise<Uint8Array>;
  try {
    result = handler(task.payload);
  } catch (error) {
    reply(task, FrameStatus.INTERNAL, encoder.encode(errorText(error)));
    return;
  }
  if (result instanceof Uint8Array) {
    replyWith(task, result);
    return;
  }
  Promise.resolve(result).then(
    (value: unknown) => replyWith(task, value),
    (error: unknown) => reply(task, FrameStatus.INTERNAL, encoder.encode(errorText(error))),
  );
}

function replyWith(task: TaskMessage, value: unknown): void {
  const problem = resultProblem(task.opcode, value);
  if (problem === null) reply(task, FrameStatus.OK, value as Uint8Array);
  else reply(task, FrameStatus.INTERNAL, encoder.encode(problem));
}

function reply(task: TaskMessage, status: number, payload: Uint8Array): void {
  const message: DoneMessage = { type: "done", slot: task.slot, generation: task.generation, status, payload };
  postMessage(message);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Why a handler's value cannot be its answer (not bytes, or a user handler's result over the limit), or null. */
function resultProblem(opcode: number, value: unknown): string | null {
  const name = `handler 0x${opcode.toString(16)}`;
  if (!(value instanceof Uint8Array)) {
    return `${name} returned ${value === null ? "null" : typeof value}, not a Uint8Array`;
  }
  if (value.length > maxResultBytes && opcode >= FIRST_USER_OPCODE) {
    return `${name} returned ${value.length} bytes, more than custom.max_response_bytes (${maxResultBytes})`;
  }
  return null;
}
