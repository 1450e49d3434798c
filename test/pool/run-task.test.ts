// WorkerPool.runTask: the promise form of run, with an abort signal and a timeout.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { FrameStatus } from "../../src/protocol/hps1.ts";
import { startWorkerPool, type WorkerPool } from "../../src/pool/worker-pool.ts";
import { testContext } from "../helpers/common.ts";

const HANDLERS = new URL("../fixtures/pool-handlers.ts", import.meta.url).pathname;
const BUSY_FOR_MS = 0x87; // the fixture handler that stays busy payload[0] milliseconds, then echoes
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

let pool: WorkerPool;
beforeAll(async () => {
  pool = await startWorkerPool(testContext({ pool: { threads: 2 }, custom: { handlers: HANDLERS } }));
});
afterAll(async () => {
  await pool.stop({ graceful: false, timeoutMs: 0 });
});

test("resolves with the status and a copy of the result", async () => {
  const result = await pool.runTask(0x02, new TextEncoder().encode("abc"));
  expect(result.status).toBe(FrameStatus.OK);
  expect(Buffer.from(result.payload).toString("hex")).toBe(
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  const again = await pool.runTask(0x02, new TextEncoder().encode("abc"));
  expect(again.payload).toEqual(result.payload);
  expect(again.payload).not.toBe(result.payload);
});

test("a handler error resolves with status 6 and its message", async () => {
  const result = await pool.runTask(0x82, new Uint8Array(3));
  expect(result.status).toBe(FrameStatus.INTERNAL);
  expect(text(result.payload)).toContain("boom: bad input of 3 bytes");
});

test("an already aborted signal settles at once without running the task", async () => {
  const controller = new AbortController();
  controller.abort();
  const submittedBefore = pool.pending();
  const result = await pool.runTask(BUSY_FOR_MS, new Uint8Array([200]), { signal: controller.signal });
  expect(result.status).toBe(FrameStatus.INTERNAL);
  expect(text(result.payload)).toBe("aborted");
  expect(pool.pending()).toBe(submittedBefore);
});

test("an abort while the task runs settles it at once", async () => {
  const controller = new AbortController();
  const startedMs = performance.now();
  const pending = pool.runTask(BUSY_FOR_MS, new Uint8Array([250]), { signal: controller.signal });
  setTimeout(() => controller.abort(), 20);
  const result = await pending;
  expect(result.status).toBe(FrameStatus.INTERNAL);
  expect(text(result.payload)).toBe("aborted");
  expect(performance.now() - startedMs).toBeLessThan(200);
});

test("timeoutMs settles with status 7 when the answer is late; a prompt answer is unaffected", async () => {
  const startedMs = performance.now();
  const late = await pool.runTask(BUSY_FOR_MS, new Uint8Array([250]), { timeoutMs: 30 });
  expect(late.status).toBe(FrameStatus.TIMEOUT);
  expect(performance.now() - startedMs).toBeLessThan(200);
  const prompt = await pool.runTask(BUSY_FOR_MS, new Uint8Array([1]), { timeoutMs: 5000 });
  expect(prompt.status).toBe(FrameStatus.OK);
  expect(prompt.payload).toEqual(new Uint8Array([1]));
});
