// Extra I/O threads (server.io_threads > 1): each binds the public port with reusePort so the kernel balances connections.
import type { Config } from "./config/schema.ts";
import { IO_THREAD_URL } from "./entry-points.ts";
import { createContext, type Listener, type ServerContext, type SharedResources, type StopOptions } from "./context.ts";
import { threadReloadSteps } from "./reload/thread-steps.ts";
import { type PreparedAll, type PreparedChange, prepareAll } from "./reload/two-phase.ts";
import type { TlsState } from "./tls/tls-state.ts";

interface StartMessage {
  kind: "start";
  config: Config;
  shared: SharedResources;
  poolThreads: number;
  /** The certificates the main thread read (threads never read certificate files themselves). */
  tls: TlsState | null;
}
/** Messages from the main thread to an I/O thread. */
type ToIoThread =
  | StartMessage
  | { kind: "stop"; options: StopOptions }
  | { kind: "reopen" }
  /** tls: the certificates the reload read; absent: the thread keeps the ones it runs with. */
  | { kind: "reload-prepare"; config: Config; tls?: TlsState | null }
  | { kind: "reload-commit" }
  | { kind: "reload-abort" };
/** Messages from an I/O thread to the main thread. */
type FromIoThread =
  | { kind: "started"; port: number }
  | { kind: "failed"; message: string }
  | { kind: "stopped" }
  | { kind: "reopened" }
  | { kind: "reload-prepared" }
  | { kind: "reload-done" };

export interface IoThreads {
  stop(options: StopOptions): Promise<void>;
  /** Each thread reopens the files its listener writes (the access log). */
  reopenLogs(): Promise<void>;
  /**
   * First phase of a configuration reload on every thread (src/reload/two-phase.ts): each prepares; when one
   * cannot, the others abort and this rejects. Committing the result commits every thread.
   */
  prepareReload(config: Config, tls?: TlsState | null): Promise<PreparedChange>;
}

export interface IoThreadOptions {
  /** The public port, already bound by the main thread with reusePort. */
  port: number;
  /** Threads to start besides the main thread. */
  count: number;
  /** Pool workers each thread starts for the custom protocol. */
  poolThreads: number;
  /** What the threads share with the main thread (createContext). */
  shared: SharedResources;
}

/** The configuration an I/O thread runs: the main thread's port, shared with reusePort. */
function threadConfig(config: Config, port: number): Config {
  return { ...config, server: { ...config.server, port, reuse_port: true } };
}

/**
 * Starts extra I/O threads. Each has its own listener, logger (stderr) and, for `custom`, its own worker pool; all
 * count into the shared Stats, the shared total-connection count and the shared per-address table.
 */
export async function startIoThreads(context: ServerContext, options: IoThreadOptions): Promise<IoThreads> {
  const config = threadConfig(context.config, options.port);
  const workers: Worker[] = [];
  try {
    for (let i = 0; i < options.count; i++) {
      const worker = new Worker(IO_THREAD_URL.href);
      workers.push(worker);
      const start: StartMessage = {
        kind: "start",
        config,
        shared: options.shared,
        poolThreads: options.poolThreads,
        tls: context.tls ?? null,
      };
      await request(worker, start, "started");
    }
  } catch (error) {
    for (const worker of workers) worker.terminate();
    throw error;
  }
  /** One thread's part of a reload: its prepare, then commit or abort, each a message answered by the thread. */
  const prepareThread = async (worker: Worker, next: Config, tls?: TlsState | null): Promise<PreparedChange> => {
    const message: ToIoThread = { kind: "reload-prepare", config: threadConfig(next, options.port), tls };
    await request(worker, message, "reload-prepared");
    return {
      commit: () => request(worker, { kind: "reload-commit" }, "reload-done").catch(() => {}),
      abort: () => request(worker, { kind: "reload-abort" }, "reload-done").catch(() => {}),
    };
  };
  return {
    async stop(stopOptions) {
      await Promise.all(
        workers.map((worker) => request(worker, { kind: "stop", options: stopOptions }, "stopped").catch(() => {})),
      );
      for (const worker of workers) worker.terminate();
    },
    async reopenLogs() {
      await Promise.all(workers.map((worker) => request(worker, { kind: "reopen" }, "reopened")));
    },
    async prepareReload(next, tls) {
      try {
        return await prepareAll(
          workers.map((worker) => () => prepareThread(worker, next, tls)),
          "at-once",
        );
      } catch (error) {
        throw new Error(
          `an I/O thread cannot apply the configuration: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    },
  };
}

function request(worker: Worker, message: ToIoThread, expected: FromIoThread["kind"]): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (event: MessageEvent<FromIoThread>) => {
      if (event.data.kind === "failed") reject(new Error(event.data.message));
      else if (event.data.kind === expected) resolve();
      else return;
      worker.removeEventListener("message", onMessage);
      worker.removeEventListener("error", onError);
      worker.removeEventListener("close", onClose);
    };
    const onError = (event: ErrorEvent) => reject(new Error(`I/O thread crashed: ${event.message}`));
    // A thread terminated (a stop) before it answered: the request fails instead of waiting forever.
    const onClose = () => reject(new Error("I/O thread has exited"));
    worker.addEventListener("message", onMessage);
    worker.addEventListener("error", onError);
    worker.addEventListener("close", onClose, { once: true });
    worker.postMessage(message);
  });
}

async function runInThread(): Promise<void> {
  let listener: Listener | null = null;
  let context: ServerContext | null = null;
  /** A reload this thread has prepared and not yet committed or aborted. */
  let pending: { next: ServerContext; prepared: PreparedAll } | null = null;
  const post = (message: FromIoThread) => postMessage(message);
  const failed = (error: unknown) => post({ kind: "failed", message: (error as Error).message });
  self.addEventListener("message", async (event: MessageEvent<ToIoThread>) => {
    const message = event.data;
    if (message.kind === "start") {
      try {
        context = createContext(message.config, message.shared, message.tls).context;
        await context.fleet?.start();
        const { startProtocolListener } = await import("./protocol-listener.ts");
        listener = await startProtocolListener(context, message.poolThreads);
        post({ kind: "started", port: listener.port });
      } catch (error) {
        failed(error);
      }
    } else if (message.kind === "reopen") {
      try {
        // Both, whatever the first does: a file that cannot be reopened does not keep the other from it.
        const results = await Promise.allSettled([context?.logger.reopen(), listener?.reopenLogs?.()]);
        const failures = results.flatMap((result) => (result.status === "rejected" ? [result.reason as Error] : []));
        if (failures.length > 0) throw new Error(failures.map((error) => error.message).join("; "));
        post({ kind: "reopened" });
      } catch (error) {
        failed(error);
      }
    } else if (message.kind === "reload-prepare") {
      try {
        await pending?.prepared.abort();
        pending = null;
        if (context !== null && listener !== null) {
          const tls = message.tls === undefined ? context.tls : message.tls;
          const next: ServerContext = { ...context, config: message.config, tls };
          pending = { next, prepared: await prepareAll(threadReloadSteps(listener, context, next)) };
        }
        post({ kind: "reload-prepared" });
      } catch (error) {
        failed(error);
      }
    } else if (message.kind === "reload-commit") {
      if (pending !== null) {
        const { next, prepared } = pending;
        pending = null;
        await prepared.commit();
        context = next;
      }
      post({ kind: "reload-done" });
    } else if (message.kind === "reload-abort") {
      await pending?.prepared.abort();
      pending = null;
      post({ kind: "reload-done" });
    } else if (message.kind === "stop") {
      await listener?.stop(message.options);
      await context?.fleet?.stop();
      await context?.logger.close();
      post({ kind: "stopped" });
    }
  });
}

declare const self: Worker;
if (!Bun.isMainThread) await runInThread();
