// Extra I/O threads (server.io_threads > 1): each binds the public port with reusePort so the kernel balances connections.
import type { Config } from "./config/schema.ts";
import { UNCHANGED, type Listener, type PreparedReconfigure, type ServerContext, type StopOptions } from "./context.ts";
import { Logger } from "./log.ts";
import { Admission } from "./net/admission.ts";
import { SharedAddressTable, type SharedAddressTableShare } from "./net/shared-address-table.ts";
import { Stats } from "./stats/stats.ts";

interface StartMessage {
  kind: "start";
  config: Config;
  statsBuffer: SharedArrayBuffer;
  startedAtMs: number;
  poolThreads: number;
  sharedConnections: Int32Array | null;
  sharedAddresses: SharedAddressTableShare | null;
}
/** Messages from the main thread to an I/O thread. */
type ToIoThread =
  | StartMessage
  | { kind: "stop"; options: StopOptions }
  | { kind: "reopen" }
  | { kind: "reload-prepare"; config: Config }
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
   * A configuration reload in two phases (see Server.reload): every thread prepares (checks and builds; changes
   * nothing) — on any failure the others abort and this rejects — then commitReload swaps it in on every thread.
   */
  prepareReload(config: Config): Promise<void>;
  commitReload(): Promise<void>;
  abortReload(): Promise<void>;
}

export interface IoThreadOptions {
  /** The public port, already bound by the main thread with reusePort. */
  port: number;
  /** Threads to start besides the main thread. */
  count: number;
  /** Pool workers each thread starts for the custom protocol. */
  poolThreads: number;
  /** The shared total-connection count (limits.max_connections spans all threads). */
  sharedConnections: Int32Array | null;
  /** The shared per-address table (connections per address, rate limits). */
  sharedAddresses: SharedAddressTable | null;
}

/**
 * Starts extra I/O threads. Each has its own listener, logger (stderr) and, for `custom`, its own worker pool; all
 * count into the shared Stats, the shared total-connection count and the shared per-address table.
 */
export async function startIoThreads(context: ServerContext, options: IoThreadOptions): Promise<IoThreads> {
  const config: Config = {
    ...context.config,
    server: { ...context.config.server, port: options.port, reuse_port: true },
  };
  const workers: Worker[] = [];
  try {
    for (let i = 0; i < options.count; i++) {
      const worker = new Worker(new URL("./io-thread.ts", import.meta.url).href);
      workers.push(worker);
      const start: StartMessage = {
        kind: "start",
        config,
        statsBuffer: context.stats.buffer,
        startedAtMs: context.stats.startedAtMs,
        poolThreads: options.poolThreads,
        sharedConnections: options.sharedConnections,
        sharedAddresses: options.sharedAddresses?.share() ?? null,
      };
      await request(worker, start, "started");
    }
  } catch (error) {
    for (const worker of workers) worker.terminate();
    throw error;
  }
  const abortAll = async (): Promise<void> => {
    await Promise.allSettled(workers.map((worker) => request(worker, { kind: "reload-abort" }, "reload-done")));
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
    async prepareReload(next) {
      const threadConfig: Config = { ...next, server: { ...next.server, port: options.port, reuse_port: true } };
      const results = await Promise.allSettled(
        workers.map((worker) => request(worker, { kind: "reload-prepare", config: threadConfig }, "reload-prepared")),
      );
      const failure = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
      if (failure === undefined) return;
      await abortAll();
      const reason: unknown = failure.reason;
      throw new Error(
        `an I/O thread cannot apply the configuration: ${reason instanceof Error ? reason.message : String(reason)}`,
      );
    },
    async commitReload() {
      await Promise.allSettled(workers.map((worker) => request(worker, { kind: "reload-commit" }, "reload-done")));
    },
    abortReload: abortAll,
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
  let pending: { next: ServerContext; prepared: PreparedReconfigure } | null = null;
  const post = (message: FromIoThread) => postMessage(message);
  self.addEventListener("message", async (event: MessageEvent<ToIoThread>) => {
    const message = event.data;
    if (message.kind === "start") {
      try {
        const stats = Stats.attach(message.statsBuffer, message.startedAtMs);
        // Threads share stderr; a log file is written by the main thread only.
        const logger = new Logger({ level: message.config.log.level, file: "" });
        const gauges = new Map<string, () => Record<string, number>>();
        const sharedAddresses =
          message.sharedAddresses === null ? null : SharedAddressTable.attach(message.sharedAddresses);
        const admission = new Admission(message.config, stats, gauges, message.sharedConnections, sharedAddresses);
        context = { config: message.config, stats, logger, gauges, admission };
        const { startProtocolListener } = await import("./protocol-listener.ts");
        listener = await startProtocolListener(context, message.poolThreads);
        post({ kind: "started", port: listener.port });
      } catch (error) {
        post({ kind: "failed", message: (error as Error).message });
      }
    } else if (message.kind === "reopen") {
      try {
        await listener?.reopenLogs?.();
        post({ kind: "reopened" });
      } catch (error) {
        post({ kind: "failed", message: (error as Error).message });
      }
    } else if (message.kind === "reload-prepare") {
      try {
        pending?.prepared.abort();
        pending = null;
        if (context !== null && listener !== null) {
          const next: ServerContext = { ...context, config: message.config };
          const prepared = listener.prepareReconfigure ? await listener.prepareReconfigure(next) : UNCHANGED;
          pending = { next, prepared };
        }
        post({ kind: "reload-prepared" });
      } catch (error) {
        post({ kind: "failed", message: (error as Error).message });
      }
    } else if (message.kind === "reload-commit") {
      if (pending !== null) {
        const { next, prepared } = pending;
        pending = null;
        next.logger.setLevel(next.config.log.level);
        next.admission.reconfigure(next.config);
        prepared.commit();
        context = next;
      }
      post({ kind: "reload-done" });
    } else if (message.kind === "reload-abort") {
      pending?.prepared.abort();
      pending = null;
      post({ kind: "reload-done" });
    } else if (message.kind === "stop") {
      await listener?.stop(message.options);
      await context?.logger.close();
      post({ kind: "stopped" });
    }
  });
}

declare const self: Worker;
if (!Bun.isMainThread) await runInThread();
