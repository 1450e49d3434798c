// Extra I/O threads (server.io_threads > 1): each binds the public port with reusePort so the kernel balances connections.
import type { Config } from "./config/schema.ts";
import type { Listener, ServerContext, StopOptions } from "./context.ts";
import { Logger } from "./log.ts";
import { Admission } from "./net/admission.ts";
import { Stats } from "./stats/stats.ts";

/** Messages from the main thread to an I/O thread. */
type ToIoThread = { kind: "start"; config: Config; statsBuffer: SharedArrayBuffer; startedAtMs: number } | { kind: "stop"; options: StopOptions };
/** Messages from an I/O thread to the main thread. */
type FromIoThread = { kind: "started"; port: number } | { kind: "failed"; message: string } | { kind: "stopped" };

export interface IoThreads {
  stop(options: StopOptions): Promise<void>;
}

/**
 * Starts `count` extra I/O threads on `port` (already bound by the main thread with reusePort).
 * Each has its own listener, admission table and logger, and counts into the shared Stats.
 */
export async function startIoThreads(context: ServerContext, port: number, count: number): Promise<IoThreads> {
  const config: Config = { ...context.config, server: { ...context.config.server, port, reuse_port: true } };
  const workers: Worker[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL("./io-thread.ts", import.meta.url).href);
      workers.push(worker);
      await request(worker, { kind: "start", config, statsBuffer: context.stats.buffer, startedAtMs: context.stats.startedAtMs }, "started");
    }
  } catch (error) {
    for (const worker of workers) worker.terminate();
    throw error;
  }
  return {
    async stop(options) {
      await Promise.all(workers.map((worker) => request(worker, { kind: "stop", options }, "stopped").catch(() => {})));
      for (const worker of workers) worker.terminate();
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
    };
    const onError = (event: ErrorEvent) => reject(new Error(`I/O thread crashed: ${event.message}`));
    worker.addEventListener("message", onMessage);
    worker.addEventListener("error", onError);
    worker.postMessage(message);
  });
}

async function runInThread(): Promise<void> {
  let listener: Listener | null = null;
  let context: ServerContext | null = null;
  const post = (message: FromIoThread) => postMessage(message);
  self.addEventListener("message", async (event: MessageEvent<ToIoThread>) => {
    const message = event.data;
    if (message.kind === "start") {
      try {
        const stats = Stats.attach(message.statsBuffer, message.startedAtMs);
        // Threads share stderr; a log file is written by the main thread only.
        const logger = new Logger({ level: message.config.log.level, file: "" });
        const gauges = new Map<string, () => Record<string, number>>();
        context = { config: message.config, stats, logger, gauges, admission: new Admission(message.config, stats, gauges) };
        if (message.config.server.protocol === "http") {
          const { startHttp } = await import("./http/serve.ts");
          listener = await startHttp(context);
        } else {
          const { startTcp } = await import("./tcp/listen.ts");
          const { startWorkerPool } = await import("./pool/worker-pool.ts");
          const runner = message.config.server.protocol === "custom" ? await startWorkerPool(context) : null;
          const tcp = await startTcp(context, runner ?? { run: (_o, _p, token, done) => done(token, 6, new Uint8Array(0)), handles: () => false, pending: () => 0 });
          listener = {
            port: tcp.port,
            inFlight: () => tcp.inFlight(),
            async stop(options) {
              await tcp.stop(options);
              if (runner) await runner.stop(options);
            },
          };
        }
        post({ kind: "started", port: listener.port });
      } catch (error) {
        post({ kind: "failed", message: (error as Error).message });
      }
    } else if (message.kind === "stop") {
      await listener?.stop(message.options);
      await context?.logger.close();
      post({ kind: "stopped" });
    }
  });
}

declare const self: Worker;
if (!Bun.isMainThread) await runInThread();
