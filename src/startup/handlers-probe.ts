// Checks custom.handlers the way the pool's workers will load it, in a throwaway worker: the module's top-level
// code never runs in the main thread.
import { resolve } from "node:path";
import { HANDLERS_PROBE_URL } from "../entry-points.ts";

/** Longest time the module may take to load (top-level await included) before the check gives up on it. */
const PROBE_TIMEOUT_MS = 10_000;

/** What the probe worker answers. */
export type ProbeAnswer = { ok: true; opcodes: number[] } | { ok: false; message: string };

/**
 * Why custom.handlers (`path`, relative to the working directory as for the pool) cannot serve, or null when it
 * loads and exports valid handlers.
 */
export async function handlersProblem(path: string): Promise<string | null> {
  const worker = new Worker(HANDLERS_PROBE_URL.href);
  const { promise, resolve: settle } = Promise.withResolvers<string | null>();
  const timer = setTimeout(
    () => settle(`custom.handlers (${path}): the module did not finish loading within ${PROBE_TIMEOUT_MS / 1000} s`),
    PROBE_TIMEOUT_MS,
  );
  worker.addEventListener("message", (event: MessageEvent<ProbeAnswer>) =>
    settle(event.data.ok ? null : event.data.message),
  );
  worker.addEventListener("error", (event: ErrorEvent) =>
    settle(`custom.handlers (${path}): the module failed while loading: ${event.message}`),
  );
  worker.postMessage(resolve(process.cwd(), path));
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    worker.terminate();
  }
}
