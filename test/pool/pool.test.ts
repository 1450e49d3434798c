// Worker pool: results, busy answers (queue and arena), crashes, timeouts, user handlers, start-up failures, drain.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { Logger } from "../../src/log.ts";
import { FrameStatus } from "../../src/protocol/hps1.ts";
import { startWorkerPoolWithSeams, type PoolTestSeams } from "../../src/pool/test-seams.ts";
import { EARLY_WAKE_TASKS } from "../../src/pool/wakeups.ts";
import { startWorkerPool, type PoolContext, type WorkerPool } from "../../src/pool/worker-pool.ts";
import { renderMetrics } from "../../src/stats/prometheus.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { FrameStatus as TcpFrameStatus } from "../../src/tcp/frame.ts";
import { testConfig, testContext, waitFor } from "../helpers/common.ts";

const HANDLERS = new URL("../fixtures/pool-handlers.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

function makeContext(overrides: ConfigOverrides = {}): PoolContext {
  return { config: testConfig(overrides), stats: Stats.create(), logger: Logger.silent(), gauges: new Map() };
}

interface Reply {
  status: number;
  payload: Uint8Array;
}

/** Collects results by token; one done function for every task, as the protocol uses it. */
class Collector {
  readonly replies = new Map<number, Reply>();
  private nextToken = 1;
  readonly done = (token: number, status: number, result: Uint8Array) => {
    expect(this.replies.has(token)).toBe(false); // exactly once
    this.replies.set(token, { status, payload: result.slice() });
  };

  submit(pool: WorkerPool, opcode: number, payload: Uint8Array): number {
    const token = this.nextToken++;
    pool.run(opcode, payload, token, this.done);
    return token;
  }

  async result(token: number, timeoutMs = 5000): Promise<Reply> {
    await waitFor(() => this.replies.has(token), timeoutMs, `task ${token}`);
    return this.replies.get(token)!;
  }
}

function sha256(bytes: Uint8Array): Uint8Array {
  return new Bun.CryptoHasher("sha256").update(bytes).digest();
}

/** A payload for the fixture's 0x87 (busy for payload[0] ms, then echo) of `length` bytes. */
function busyFor(ms: number, length = 1): Uint8Array {
  const bytes = new Uint8Array(length);
  bytes[0] = ms;
  return bytes;
}

function filled(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

async function start(overrides: ConfigOverrides = {}, seams: PoolTestSeams = {}) {
  const context = makeContext(overrides);
  const pool = await startWorkerPoolWithSeams(context, seams);
  return { context, pool, collector: new Collector() };
}

describe("pool with the handlers fixture", () => {
  let context: PoolContext;
  let pool: WorkerPool;
  let collector: Collector;

  beforeAll(async () => {
    ({ context, pool, collector } = await start({
      pool: { threads: 2, task_timeout_ms: 0 },
      custom: { handlers: HANDLERS },
    }));
  });
  afterAll(async () => {
    await pool.stop({ graceful: false, timeoutMs: 0 });
  });

  test("HASH gives SHA-256 for payloads in every size class and above (fallback)", async () => {
    const sizes = [0, 1, 64, 256, 257, 4000, 65_536, 70_000, 300_000];
    const tokens = sizes.map((size, i) => collector.submit(pool, 0x02, filled(size, i)));
    for (let i = 0; i < sizes.length; i++) {
      const reply = await collector.result(tokens[i]!);
      expect(reply.status).toBe(0);
      expect(reply.payload).toEqual(sha256(filled(sizes[i]!, i)));
    }
    expect(context.stats.total(Counter.arenaFallbacks)).toBe(2);
    await waitFor(() => pool.pending() === 0, 2000, "pool idle");
    expect(context.gauges.get("arena")!().bytesInUse).toBe(0);
  });

  test("thousands of tasks in flight all finish with their own results", async () => {
    const submittedBefore = context.stats.total(Counter.poolSubmitted);
    const completedBefore = context.stats.total(Counter.poolCompleted);
    const count = 3000;
    const tokens: number[] = [];
    for (let i = 0; i < count; i++)
      tokens.push(collector.submit(pool, i % 2 === 0 ? 0x02 : 0x80, filled(1 + (i % 700), i)));
    expect(pool.pending()).toBe(count);
    for (let i = 0; i < count; i++) {
      const reply = await collector.result(tokens[i]!);
      const payload = filled(1 + (i % 700), i);
      expect(reply.status).toBe(0);
      expect(reply.payload).toEqual(i % 2 === 0 ? sha256(payload) : payload.slice().reverse());
    }
    expect(context.stats.total(Counter.poolSubmitted) - submittedBefore).toBe(count);
    expect(context.stats.total(Counter.poolCompleted) - completedBefore).toBe(count);
    expect(pool.pending()).toBe(0);
    const gauges = context.gauges.get("pool")!();
    expect(gauges.workers).toBe(2);
    expect(gauges.queued).toBe(0);
    expect(gauges.running).toBe(0);
  });

  test("runRange copies the payload before it returns: the source may be reused at once (bytewise, by set, fallback)", async () => {
    const sizes = [0, 1, 31, 64, 256, 257, 4000, 70_000];
    const source = new Uint8Array(80_000);
    const tokens: number[] = [];
    const expected: Uint8Array[] = [];
    let token = 10_000_000;
    for (let i = 0; i < sizes.length; i++) {
      const start = 3 + i;
      source.set(filled(sizes[i]!, i), start);
      expected.push(filled(sizes[i]!, i).reverse());
      tokens.push(++token);
      pool.runRange(0x80, source, start, sizes[i]!, token, collector.done);
      source.fill(0xee); // the pool holds its own copy now
    }
    for (let i = 0; i < sizes.length; i++) {
      const reply = await collector.result(tokens[i]!);
      expect(reply.status).toBe(0);
      expect(reply.payload).toEqual(expected[i]!);
    }
    await waitFor(() => pool.pending() === 0, 2000, "pool idle");
    expect(context.gauges.get("arena")!().bytesInUse).toBe(0);
  });

  test("results of every small length reach done exactly (reused views per length), interleaved with large ones", async () => {
    const sizes = [1, 2, 32, 33, 255, 256, 257, 1000, 32, 1];
    const tokens = sizes.map((size, i) => collector.submit(pool, 0x80, filled(size, 50 + i)));
    for (let i = 0; i < sizes.length; i++) {
      const reply = await collector.result(tokens[i]!);
      expect(reply.payload).toEqual(filled(sizes[i]!, 50 + i).reverse());
    }
  });

  test("user handlers: loaded in the workers, sync and async, handles() names exactly their opcodes", async () => {
    expect(pool.handles(0x02)).toBe(true);
    expect(pool.handles(0x80)).toBe(true);
    expect(pool.handles(0x81)).toBe(true);
    expect(pool.handles(0x90)).toBe(false);
    expect(pool.handles(0x01)).toBe(false);
    const reply = await collector.result(collector.submit(pool, 0x81, new Uint8Array(70_000)));
    expect(reply.status).toBe(0);
    expect(new DataView(reply.payload.buffer).getUint32(0)).toBe(70_000);
  });

  test("a handler that throws fails only its task with status 6 and its message", async () => {
    const failedBefore = context.stats.total(Counter.poolFailed);
    const bad = collector.submit(pool, 0x82, new Uint8Array(9));
    const good = collector.submit(pool, 0x80, new Uint8Array([1, 2]));
    const rejected = collector.submit(pool, 0x89, new Uint8Array(1));
    const notBytes = collector.submit(pool, 0x86, new Uint8Array(1));
    expect(await collector.result(bad)).toEqual({
      status: 6,
      payload: new TextEncoder().encode("boom: bad input of 9 bytes"),
    });
    expect((await collector.result(good)).payload).toEqual(new Uint8Array([2, 1]));
    expect(decoder.decode((await collector.result(rejected)).payload)).toBe("async boom");
    const reply = await collector.result(notBytes);
    expect(reply.status).toBe(6);
    expect(decoder.decode(reply.payload)).toContain("not a Uint8Array");
    expect(context.stats.total(Counter.poolFailed) - failedBefore).toBe(3);
    expect(context.stats.total(Counter.poolCrashed)).toBe(0);
  });

  test("a result larger than its slot comes back whole", async () => {
    const reply = await collector.result(collector.submit(pool, 0x85, new Uint8Array([7])));
    expect(reply.status).toBe(0);
    expect(reply.payload.length).toBe(100_000);
    expect(reply.payload.every((b) => b === 7)).toBe(true);
  });

  test("a worker that dies mid-task fails that task at once; queued work and the next request succeed", async () => {
    for (const [opcode, reason] of [
      [0x84, "code 3"],
      [0x88, "uncaught in worker"],
    ] as const) {
      const crashedBefore = context.stats.total(Counter.poolCrashed);
      const crash = collector.submit(pool, opcode, new Uint8Array(1));
      const others = Array.from({ length: 50 }, (_, i) => collector.submit(pool, 0x02, filled(100, i)));
      const reply = await collector.result(crash, 5000);
      expect(reply.status).toBe(6);
      expect(decoder.decode(reply.payload)).toContain(reason);
      for (let i = 0; i < others.length; i++) {
        const other = await collector.result(others[i]!);
        expect(other).toEqual({ status: 0, payload: sha256(filled(100, i)) });
      }
      expect(context.stats.total(Counter.poolCrashed) - crashedBefore).toBe(1);
      await waitFor(() => context.gauges.get("pool")!().workers === 2, 5000, "replacement worker");
      const after = await collector.result(collector.submit(pool, 0x80, new Uint8Array([5, 6])));
      expect(after).toEqual({ status: 0, payload: new Uint8Array([6, 5]) });
    }
  });
});

describe("wake-ups", () => {
  test("tasks submitted in one round wake a sleeping worker at most twice (the first, lone task; the round's end), not once per task", async () => {
    const { context, pool, collector } = await start({ pool: { threads: 1, task_timeout_ms: 0 } });
    try {
      const warm = collector.submit(pool, 0x02, filled(64, 1));
      await collector.result(warm);
      const gauges = context.gauges.get("pool")!;
      const before = gauges().wakeups!;
      const tokens: number[] = [];
      const perTurn = Math.floor((EARLY_WAKE_TASKS - 1) / 10); // the round stays below the early wake-up
      for (let turn = 0; turn < 10; turn++) {
        for (let i = 0; i < perTurn; i++) tokens.push(collector.submit(pool, 0x02, filled(64, turn * perTurn + i)));
        // The round's first task was alone (its worker woken at once); the rest wait for the end of the round.
        expect(gauges().wakeups! - before).toBeLessThanOrEqual(1);
        await Promise.resolve(); // several microtask turns, one round
      }
      for (let i = 0; i < tokens.length; i++) {
        const reply = await collector.result(tokens[i]!);
        expect(reply.status).toBe(0);
        expect(reply.payload).toEqual(sha256(filled(64, i)));
      }
      expect(gauges().wakeups! - before).toBeLessThanOrEqual(2);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("a lone task, and a round that gives a sleeping worker EARLY_WAKE_TASKS tasks, wake it at once; all finish", async () => {
    const { context, pool, collector } = await start({ pool: { threads: 1, task_timeout_ms: 0 } });
    try {
      await collector.result(collector.submit(pool, 0x02, filled(64, 1)));
      const gauges = context.gauges.get("pool")!;
      await waitFor(() => gauges().sleepingWorkers === 1, 2000, "the worker back asleep");
      const before = gauges().wakeups!;
      const tokens: number[] = [];
      tokens.push(collector.submit(pool, 0x02, filled(64, 0)));
      expect(gauges().wakeups).toBe(before + 1); // a lone task wakes its worker at once
      // Blocks this thread: the worker finishes that task and sleeps again, but its completion is not drained yet, so the
      // next tasks are not alone.
      const deadline = performance.now() + 2000;
      while (gauges().sleepingWorkers !== 1 && performance.now() < deadline); // bounded: shared memory, no event loop turn
      expect(gauges().sleepingWorkers).toBe(1);
      for (let i = 1; i < EARLY_WAKE_TASKS; i++) tokens.push(collector.submit(pool, 0x02, filled(64, i)));
      expect(gauges().wakeups).toBe(before + 1);
      tokens.push(collector.submit(pool, 0x02, filled(64, EARLY_WAKE_TASKS)));
      expect(gauges().wakeups).toBe(before + 2); // woken by the EARLY_WAKE_TASKS-th task of the round, before the round ends
      for (let i = EARLY_WAKE_TASKS + 1; i < 3 * EARLY_WAKE_TASKS; i++)
        tokens.push(collector.submit(pool, 0x02, filled(64, i)));
      for (let i = 0; i < tokens.length; i++) {
        const reply = await collector.result(tokens[i]!);
        expect(reply.status).toBe(0);
        expect(reply.payload).toEqual(sha256(filled(64, i)));
      }
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("lost wake-ups (the notify never sent) are recovered by the watchdog: every task completes, each recovery counted", async () => {
    for (const taskTimeoutMs of [0, 400]) {
      const { context, pool, collector } = await start(
        { pool: { threads: 1, task_timeout_ms: taskTimeoutMs } },
        { loseWakeups: true },
      );
      try {
        const gauges = context.gauges.get("pool")!;
        for (let round = 0; round < 2; round++) {
          // Tasks sent while the worker sleeps get no notify at all: only the watchdog can wake it.
          await waitFor(() => gauges().sleepingWorkers === 1, 2000, "the worker asleep");
          // The flag is raised just before the worker's Atomics.waitAsync: a task sent in between is seen by the
          // worker's own re-check (no wake-up is lost, so none is recovered). Give it time to reach the wait.
          await Bun.sleep(30);
          const tokens = [0, 1, 2].map((i) => collector.submit(pool, 0x02, filled(64, round * 3 + i)));
          for (let i = 0; i < tokens.length; i++) {
            const reply = await collector.result(tokens[i]!);
            expect(reply).toEqual({ status: 0, payload: sha256(filled(64, round * 3 + i)) });
          }
        }
        expect(gauges().lostWakeups).toBe(2); // one recovery per round
        expect(context.stats.total(Counter.poolTimedOut)).toBe(0);
      } finally {
        await pool.stop({ graceful: false, timeoutMs: 0 });
      }
    }
  });

  /** Runs `length` HASH tasks one after another, each submitted from the previous one's done callback. */
  async function chain(pool: WorkerPool, length: number): Promise<void> {
    let finished = 0;
    let failures = 0;
    const payload = filled(64, 9);
    const expected = sha256(payload);
    const next = (_token: number, status: number, result: Uint8Array): void => {
      if (status !== 0 || !result.every((b, i) => b === expected[i])) failures++;
      if (++finished < length) pool.run(0x02, payload, finished, next);
    };
    pool.run(0x02, payload, 0, next);
    await waitFor(() => finished === length, 10_000, "chain of tasks");
    expect(failures).toBe(0);
  }

  test("a worker polls its empty ring between closely spaced tasks: a chain needs (almost) no wake-ups; the poll after it misses", async () => {
    // A 50 ms poll window: wider than any turn-around here, so every poll in the chain must find its task.
    const context = testContext({ pool: { threads: 1, task_timeout_ms: 0 }, custom: { handlers: HANDLERS } });
    const pool = await startWorkerPoolWithSeams(context, { spinMicros: 50_000, spinCores: 1 });
    try {
      const gauges = context.gauges.get("pool")!;
      const chainLength = 200;
      await chain(pool, chainLength);
      await waitFor(() => gauges().sleepingWorkers === 1, 2000, "the worker asleep after its last poll");
      const { spins, spinCatches, wakeups } = gauges();
      // Without polling every task would find the worker asleep and cost a wake-up (about chainLength of them). A task
      // can also be seen before the worker polls at all, when the main thread turns around fast, and on a crowded
      // machine a poll may run out before the main thread is scheduled: so neither is counted on exactly.
      expect(wakeups).toBeLessThan(chainLength / 4);
      expect(spinCatches).toBeGreaterThan(0);
      expect(spins! - spinCatches!).toBeGreaterThanOrEqual(1); // at least the poll after the last task found nothing
      const metrics = renderMetrics(context);
      expect(metrics).toContain(`hps_pool_spin_catches_total ${spinCatches}`);
      expect(metrics).toContain(`hps_pool_spins_total ${spins}`);
      // A replaced worker's polls stay counted (the counters never run backwards).
      const collector = new Collector();
      expect((await collector.result(collector.submit(pool, 0x84, new Uint8Array(1)))).status).toBe(6);
      await waitFor(() => gauges().workers === 1 && gauges().sleepingWorkers === 1, 5000, "the replacement worker");
      expect(gauges().spins).toBeGreaterThanOrEqual(spins!);
      expect(gauges().spinCatches).toBeGreaterThanOrEqual(spinCatches!);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("a worker polls only while the awake workers leave a core to the main thread", async () => {
    // Two workers; one runs a long task (from its ring, or sent by message: a payload over 64 KiB) while a chain of
    // tasks goes to the other. With one spare core the other must not poll (the busy worker has that core); with two
    // spare cores it may.
    for (const [spinCores, busyPayloadBytes] of [
      [1, 1],
      [1, 100_000],
      [2, 1],
    ] as const) {
      const { context, pool, collector } = await start(
        { pool: { threads: 2, task_timeout_ms: 0 }, custom: { handlers: HANDLERS } },
        { spinMicros: 50_000, spinCores },
      );
      try {
        const gauges = context.gauges.get("pool")!;
        const busy = collector.submit(pool, 0x87, busyFor(250, busyPayloadBytes));
        // awakeWorkers: the busy worker's thread has really started (not just been sent the task).
        await waitFor(() => gauges().busyWorkers === 1 && gauges().awakeWorkers === 1, 2000, "one worker busy");
        await chain(pool, 60);
        expect(collector.replies.has(busy)).toBe(false); // the chain ran while the other worker was busy
        if (spinCores === 1) expect(gauges().spins).toBe(0);
        else expect(gauges().spins).toBeGreaterThan(0); // whether a poll then finds its task depends on the scheduler
        expect((await collector.result(busy)).status).toBe(0);
      } finally {
        await pool.stop({ graceful: false, timeoutMs: 0 });
      }
    }
  });

  test("while polling keeps catching a stream of tasks, async handlers and message tasks on that worker still finish", async () => {
    // A 50 ms poll window: no poll ever misses while two chains run, so only the drain loop's time slice lets the
    // worker's event loop turn (the async handler's continuation, the message carrying a payload over 64 KiB).
    const { pool, collector } = await start(
      { pool: { threads: 1, task_timeout_ms: 0 }, custom: { handlers: HANDLERS } },
      { spinMicros: 50_000, spinCores: 1 },
    );
    try {
      const streamMs = 600;
      const endMs = performance.now() + streamMs;
      let streamed = 0;
      let chainsRunning = 2;
      const payload = filled(64, 3);
      const next = (_token: number, status: number): void => {
        expect(status).toBe(0);
        streamed++;
        if (performance.now() < endMs) pool.run(0x8a, payload, 0, next);
        else chainsRunning--;
      };
      pool.run(0x8a, payload, 0, next);
      pool.run(0x8a, payload, 0, next);
      await Bun.sleep(50); // the stream is under way (bounded: the chains stop at endMs)
      const sentMs = performance.now();
      const asyncTask = collector.submit(pool, 0x81, filled(10, 1));
      const messageTask = collector.submit(pool, 0x8a, filled(100_000, 2));
      const asyncReply = await collector.result(asyncTask, 5000);
      const messageReply = await collector.result(messageTask, 5000);
      const waitedMs = performance.now() - sentMs;
      expect(asyncReply.status).toBe(0);
      expect(new DataView(asyncReply.payload.buffer).getUint32(0)).toBe(10);
      expect(messageReply).toEqual({ status: 0, payload: filled(100_000, 2) });
      expect(chainsRunning).toBe(2); // both finished while the stream still ran...
      expect(waitedMs).toBeLessThan(streamMs / 2); // ...and long before it would have stopped
      await waitFor(() => chainsRunning === 0, 5000, "the stream to end");
      expect(streamed).toBeGreaterThan(100);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("no polling when tasks come further apart than pool.spin_us, or when it is 0", async () => {
    const { context, pool, collector } = await start(
      { pool: { threads: 1, task_timeout_ms: 0 } },
      { spinMicros: 2000, spinCores: 1 },
    );
    const { context: offContext, pool: offPool } = await start({
      pool: { threads: 1, task_timeout_ms: 0, spin_us: 0 },
    });
    try {
      const gauges = context.gauges.get("pool")!;
      for (let i = 0; i < 5; i++) {
        await Bun.sleep(10); // the spacing under test: tasks 10 ms apart, poll window 2 ms
        const reply = await collector.result(collector.submit(pool, 0x02, filled(64, i)));
        expect(reply).toEqual({ status: 0, payload: sha256(filled(64, i)) });
      }
      expect(gauges().spins).toBe(0);
      expect(gauges().wakeups).toBe(5);
      await chain(offPool, 100);
      expect(offContext.gauges.get("pool")!().spins).toBe(0);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
      await offPool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("tasks submitted from inside done callbacks (one at a time, a chain) all complete", async () => {
    const { pool } = await start({ pool: { threads: 1, task_timeout_ms: 0 } });
    try {
      await chain(pool, 300);
      expect(pool.pending()).toBe(0);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });
});

describe("busy answers", () => {
  test("pool.max_queue bounds the tasks not started yet, rings included: past it busy at once, counted", async () => {
    const { context, pool, collector } = await start({
      pool: { threads: 1, max_queue: 4, task_timeout_ms: 0 },
      custom: { handlers: HANDLERS },
    });
    try {
      const gauges = context.gauges.get("pool")!;
      const first = collector.submit(pool, 0x87, busyFor(150));
      await waitFor(() => gauges().queued === 0 && gauges().running === 1, 2000, "the worker to start the first task");
      // The worker is busy: 4 more wait (in its ring, not the pool's queue), the next 3 are refused at once.
      const tokens: number[] = [];
      for (let i = 0; i < 4 + 3; i++) tokens.push(collector.submit(pool, 0x02, filled(10, i)));
      const rejectedNow = [...collector.replies.values()];
      expect(rejectedNow.length).toBe(3);
      for (const reply of rejectedNow) {
        expect(reply.status).toBe(FrameStatus.BUSY);
        expect(decoder.decode(reply.payload)).toContain("queue full");
      }
      expect(gauges().queued).toBe(4);
      expect(context.stats.total(Counter.poolRejected)).toBe(3);
      expect((await collector.result(first)).status).toBe(0);
      for (let i = 0; i < 4; i++) expect((await collector.result(tokens[i]!)).payload).toEqual(sha256(filled(10, i)));
      // Room again once they ran.
      expect((await collector.result(collector.submit(pool, 0x02, filled(10, 99)))).status).toBe(0);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("an exhausted arena answers busy at once; the slot is usable again after", async () => {
    const { context, pool, collector } = await start({ memory: { arena_bytes: 64 * 1024 }, pool: { threads: 1 } });
    try {
      const first = collector.submit(pool, 0x02, filled(40_000, 1));
      const second = collector.submit(pool, 0x02, filled(40_000, 2));
      const busy = collector.replies.get(second)!;
      expect(busy.status).toBe(4);
      expect(decoder.decode(busy.payload)).toContain("arena exhausted");
      expect(context.gauges.get("arena")!().failures).toBe(1);
      expect((await collector.result(first)).payload).toEqual(sha256(filled(40_000, 1)));
      const third = await collector.result(collector.submit(pool, 0x02, filled(40_000, 3)));
      expect(third.payload).toEqual(sha256(filled(40_000, 3)));
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  for (const arenaOn of [true, false]) {
    test(`payloads over 64 KiB${arenaOn ? "" : " (memory.arena = false: every payload)"} share a budget of memory.arena_bytes, held until their task finishes; past it busy at once`, async () => {
      const { context, pool, collector } = await start({
        memory: { arena: arenaOn, arena_bytes: 256 * 1024 },
        pool: { threads: 1, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS },
      });
      try {
        const first = collector.submit(pool, 0x87, busyFor(80, 100_000));
        const second = collector.submit(pool, 0x87, busyFor(0, 100_000));
        const third = collector.submit(pool, 0x87, busyFor(0, 100_000)); // 300 000 bytes > 262 144
        const busy = collector.replies.get(third)!;
        expect(busy.status).toBe(FrameStatus.BUSY);
        expect(decoder.decode(busy.payload)).toContain("memory.arena_bytes");
        expect(context.stats.total(Counter.poolRejected)).toBe(1);
        const arena = context.gauges.get("arena")!;
        expect(arena().heapBytesInUse).toBe(200_000); // both sent to the worker already, still counted
        expect(arena().heapFailures).toBe(1);
        expect(collector.replies.has(first) || collector.replies.has(second)).toBe(false);
        expect((await collector.result(first)).status).toBe(0);
        expect((await collector.result(second)).payload).toEqual(busyFor(0, 100_000));
        expect(arena().heapBytesInUse).toBe(0);
        const fourth = await collector.result(collector.submit(pool, 0x87, busyFor(0, 250_000)));
        expect(fourth.status).toBe(0);
        expect(fourth.payload.length).toBe(250_000);
        expect(context.stats.total(Counter.arenaFallbacks)).toBe(arenaOn ? 3 : 0);
      } finally {
        await pool.stop({ graceful: false, timeoutMs: 0 });
      }
    });
  }
});

describe("timeouts, start-up, shutdown, modes", () => {
  test("a task running past pool.task_timeout_ms fails with status 7 and its worker is replaced", async () => {
    const { context, pool, collector } = await start({
      pool: { threads: 1, task_timeout_ms: 150 },
      custom: { handlers: HANDLERS },
    });
    try {
      const hang = collector.submit(pool, 0x83, new Uint8Array(1));
      const behind = collector.submit(pool, 0x80, new Uint8Array([1, 2, 3]));
      const reply = await collector.result(hang, 5000);
      expect(reply.status).toBe(7);
      expect(decoder.decode(reply.payload)).toContain("task_timeout_ms");
      expect(context.stats.total(Counter.poolTimedOut)).toBe(1);
      // the task queued behind the hung one was not started: it runs on the replacement
      expect(await collector.result(behind, 5000)).toEqual({ status: 0, payload: new Uint8Array([3, 2, 1]) });
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("a worker stuck in a native call is answered 7 at the timeout and replaced at once; its thread is counted until it exits", async () => {
    const { context, pool, collector } = await start({
      pool: { threads: 1, task_timeout_ms: 100 },
      custom: { handlers: HANDLERS },
    });
    try {
      const gauges = context.gauges.get("pool")!;
      const stuck = collector.submit(pool, 0x8c, new Uint8Array([12])); // a 192 MiB fill, one native call
      const reply = await collector.result(stuck, 5000);
      expect(reply.status).toBe(FrameStatus.TIMEOUT);
      // The replacement serves while the old thread may still be inside its call.
      expect(await collector.result(collector.submit(pool, 0x80, new Uint8Array([1, 2])), 5000)).toEqual({
        status: 0,
        payload: new Uint8Array([2, 1]),
      });
      await waitFor(() => gauges().terminatingWorkers === 0, 20_000, "the stuck thread to exit");
      expect(gauges().workers).toBe(1);
      expect(context.stats.total(Counter.poolTimedOut)).toBe(1);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  }, 30_000);

  test("pool.task_timeout_ms times a task from when its worker starts it: waiting behind others does not count", async () => {
    // 24 tasks of 25 ms pipelined on one worker: the last waits ~575 ms in the ring, yet each runs far below 250 ms.
    const { context, pool, collector } = await start({
      pool: { threads: 1, task_timeout_ms: 250 },
      custom: { handlers: HANDLERS },
    });
    try {
      const tokens = Array.from({ length: 24 }, () => collector.submit(pool, 0x87, busyFor(25)));
      // large payloads travel by message: timed from when the worker starts them too
      const messageTokens = Array.from({ length: 12 }, () => collector.submit(pool, 0x87, busyFor(25, 70_000)));
      for (const token of tokens) expect((await collector.result(token, 10_000)).status).toBe(0);
      for (const token of messageTokens) expect((await collector.result(token, 10_000)).status).toBe(0);
      expect(context.stats.total(Counter.poolTimedOut)).toBe(0);
      expect(context.stats.total(Counter.poolCrashed)).toBe(0);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("a task sent by message (payload over 64 KiB) that runs too long also fails with status 7", async () => {
    const { context, pool, collector } = await start({
      pool: { threads: 1, task_timeout_ms: 150 },
      custom: { handlers: HANDLERS },
    });
    try {
      const hang = collector.submit(pool, 0x83, new Uint8Array(70_000));
      const behind = collector.submit(pool, 0x80, new Uint8Array([1, 2, 3]));
      const reply = await collector.result(hang, 5000);
      expect(reply.status).toBe(FrameStatus.TIMEOUT);
      expect(context.stats.total(Counter.poolTimedOut)).toBe(1);
      expect(await collector.result(behind, 5000)).toEqual({ status: 0, payload: new Uint8Array([3, 2, 1]) });
      await waitFor(() => context.gauges.get("arena")!().heapBytesInUse === 0, 2000, "payload budget released");
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("a handlers module with a bad opcode stops start-up with a message naming the setting", async () => {
    const context = makeContext({
      custom: { handlers: new URL("../fixtures/pool-handlers-bad.ts", import.meta.url).pathname },
    });
    await expect(startWorkerPool(context)).rejects.toThrow(
      /custom\.handlers .*"16" is not an opcode from 0x80 to 0xFF/,
    );
  });

  test("a missing handlers module stops start-up with a clear message", async () => {
    const context = makeContext({ custom: { handlers: "./no/such/handlers.ts" } });
    await expect(startWorkerPool(context)).rejects.toThrow(/custom\.handlers .*cannot load the module/);
  });

  test("workers that die during start-up make start fail instead of looping", async () => {
    const context = makeContext({ pool: { threads: 2 } });
    const workerUrl = new URL("../fixtures/pool-worker-dies.ts", import.meta.url);
    await expect(startWorkerPoolWithSeams(context, { workerUrl })).rejects.toThrow(/died during start-up 3 times/);
    expect(context.gauges.has("pool")).toBe(false);
    expect(context.gauges.has("arena")).toBe(false);
  });

  test("stop removes the pool and arena gauge groups (not a newer pool's); /metrics shows their names at 0", async () => {
    const context = testContext({ pool: { threads: 1 } });
    const older = await startWorkerPool(context);
    expect(renderMetrics(context)).toMatch(/^hps_pool_workers 1$/m);
    const newer = await startWorkerPool(context); // e.g. a reload: registers its own groups
    await older.stop({ graceful: false, timeoutMs: 0 });
    expect(context.gauges.has("pool")).toBe(true);
    expect(renderMetrics(context)).toMatch(/^hps_pool_workers 1$/m);
    await newer.stop({ graceful: true, timeoutMs: 1000 });
    expect(context.gauges.has("pool")).toBe(false);
    expect(context.gauges.has("arena")).toBe(false);
    const text = renderMetrics(context);
    expect(text).toMatch(/^hps_pool_workers 0$/m);
    expect(text).toMatch(/^hps_pool_queued_tasks 0$/m);
    expect(text).toMatch(/^hps_arena_capacity_bytes 0$/m);
    expect(text).toMatch(/^hps_arena_bytes_in_use 0$/m);
  });

  test("the pool answers with the HPS/1 status codes of src/tcp/frame.ts (one definition)", async () => {
    expect(TcpFrameStatus).toBe(FrameStatus);
    const { pool, collector } = await start({ pool: { threads: 1 } });
    await pool.stop({ graceful: false, timeoutMs: 0 });
    const late = collector.submit(pool, 0x02, new Uint8Array(1));
    expect(collector.replies.get(late)!.status).toBe(TcpFrameStatus.BUSY);
  });

  test("graceful stop lets queued and running tasks finish, then refuses new ones", async () => {
    const { pool, collector } = await start({ pool: { threads: 2 }, custom: { handlers: HANDLERS } });
    const tokens = Array.from({ length: 6 }, () => collector.submit(pool, 0x87, new Uint8Array([40])));
    await pool.stop({ graceful: true, timeoutMs: 5000 });
    for (const token of tokens) expect(collector.replies.get(token)?.status).toBe(0);
    const late = collector.submit(pool, 0x02, new Uint8Array(1));
    expect(collector.replies.get(late)!.status).toBe(4);
  });

  test("stop past its deadline fails what is still running, without hanging", async () => {
    const { pool, collector } = await start({
      pool: { threads: 1, task_timeout_ms: 0 },
      custom: { handlers: HANDLERS },
    });
    const hang = collector.submit(pool, 0x83, new Uint8Array(1));
    const startedMs = performance.now();
    await pool.stop({ graceful: true, timeoutMs: 100 });
    expect(performance.now() - startedMs).toBeLessThan(3000);
    expect(collector.replies.get(hang)!.status).toBe(6);
  });

  test("memory.arena = false: payloads and results travel by message", async () => {
    const { context, pool, collector } = await start({
      memory: { arena: false },
      pool: { threads: 2 },
      custom: { handlers: HANDLERS },
    });
    try {
      const hash = await collector.result(collector.submit(pool, 0x02, filled(5000, 9)));
      expect(hash).toEqual({ status: 0, payload: sha256(filled(5000, 9)) });
      const thrown = await collector.result(collector.submit(pool, 0x82, new Uint8Array(2)));
      expect(thrown.status).toBe(6);
      expect(context.gauges.get("arena")!().capacityBytes).toBe(0);
      expect(context.stats.total(Counter.arenaFallbacks)).toBe(0);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });

  test("an idle pool does not spin: little CPU used over a quiet interval", async () => {
    const { pool, collector } = await start({ pool: { threads: 2 } }, { spinMicros: 10_000, spinCores: 2 });
    try {
      // Closely spaced tasks first, so the workers are polling when the quiet interval begins.
      for (let i = 0; i < 20; i++) await collector.result(collector.submit(pool, 0x02, new Uint8Array(10)));
      const before = process.cpuUsage();
      const wallStartMs = performance.now();
      await Bun.sleep(500); // measuring idleness itself: there is no event to wait for
      const used = process.cpuUsage(before);
      const cpuMs = (used.user + used.system) / 1000;
      const wallMs = performance.now() - wallStartMs;
      // a spinning worker would burn about wallMs per thread
      expect(cpuMs).toBeLessThan(wallMs * 0.2);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });
});

describe("examples/handlers.ts", () => {
  test("word count, gzip and gunzip run on the pool; bad gzip fails with status 6", async () => {
    const handlersPath = new URL("../../examples/handlers.ts", import.meta.url).pathname;
    const { pool, collector } = await start({ pool: { threads: 1 }, custom: { handlers: handlersPath } });
    try {
      const text = new TextEncoder().encode("  the quick\tbrown\nfox  jumps ");
      const count = await collector.result(collector.submit(pool, 0x80, text));
      expect(count.status).toBe(0);
      expect(new DataView(count.payload.buffer).getUint32(0)).toBe(5);
      const big = new TextEncoder().encode("hello world ".repeat(5000));
      const zipped = await collector.result(collector.submit(pool, 0x81, big));
      expect(zipped.status).toBe(0);
      expect(zipped.payload.length).toBeLessThan(big.length / 10);
      expect(Bun.gunzipSync(zipped.payload as Uint8Array<ArrayBuffer>)).toEqual(big);
      const unzipped = await collector.result(collector.submit(pool, 0x82, zipped.payload));
      expect(unzipped).toEqual({ status: 0, payload: big });
      const bad = await collector.result(collector.submit(pool, 0x82, new Uint8Array([1, 2, 3])));
      expect(bad.status).toBe(6);
      expect(bad.payload.length).toBeGreaterThan(0);
    } finally {
      await pool.stop({ graceful: false, timeoutMs: 0 });
    }
  });
});
