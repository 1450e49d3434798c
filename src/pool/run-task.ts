// The promise form of OpRunner.run, for callers off the hot path (tools, embedding): abort and timeout included.
import { FrameStatus } from "../protocol/hps1.ts";
import type { OpRunner } from "./op-runner.ts";

/** What `runTask` resolves with: an HPS/1 status and the result (or the error message as UTF-8). */
export interface TaskResult {
  status: number;
  payload: Uint8Array;
}

export interface RunTaskOptions {
  /** An abort before the task is answered settles it at once with status 6 "aborted" (its result is dropped). */
  readonly signal?: AbortSignal;
  /** Settles with status 7 when no answer came in time (the pool's own pool.task_timeout_ms still bounds the worker). */
  readonly timeoutMs?: number;
}

const messageBytes = (text: string) => new TextEncoder().encode(text);

/** Runs `opcode` on `payload` through `runner`; the result's payload is a copy. Never rejects. */
export function runTask(
  runner: OpRunner,
  opcode: number,
  payload: Uint8Array,
  options: RunTaskOptions = {},
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
      timer = setTimeout(() => settle(FrameStatus.TIMEOUT, messageBytes("timed out waiting for the pool")), timeoutMs);
    runner.run(opcode, payload, 0, (_token, status, result) => settle(status, result.slice()));
  });
}
