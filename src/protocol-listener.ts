// Starts the public listener for config.server.protocol, with the worker pool the custom protocol needs.
import { cpus } from "node:os";
import type { Listener, ServerContext, StopOptions } from "./context.ts";
import { startHttp } from "./http/serve.ts";
import type { OpDone, OpRunner } from "./pool/op-runner.ts";
import { startWorkerPool } from "./pool/worker-pool.ts";
import { startTcp } from "./tcp/listen.ts";
import { startTcpProxy } from "./upstream/tcp-proxy-listener.ts";

/** The echo protocol never dispatches to a pool: this runner claims no opcode. */
const NO_POOL: OpRunner = {
  run(_opcode: number, _payload: Uint8Array, token: number, done: OpDone) {
    done(token, 6, new TextEncoder().encode("no worker pool"));
  },
  handles: () => false,
  pending: () => 0,
};

/**
 * Starts the listener (and, for `custom`, a worker pool with `poolThreads` workers; 0 = pool.threads).
 * Stopping it drains the listener first, then the pool, within one deadline.
 */
export async function startProtocolListener(context: ServerContext, poolThreads = 0): Promise<Listener> {
  const config = context.config;
  if (config.server.protocol === "http") return await startHttp(context);
  if (config.server.protocol === "echo") return await startTcp(context, NO_POOL);
  if (config.server.protocol === "tcp_proxy") return await startTcpProxy(context);
  const pool = await startWorkerPool(context, poolThreads > 0 ? { threads: poolThreads } : {});
  let tcp: Listener;
  try {
    tcp = await startTcp(context, pool);
  } catch (error) {
    await pool.stop({ graceful: false, timeoutMs: 0 });
    throw error;
  }
  return {
    port: tcp.port,
    inFlight: () => tcp.inFlight(),
    prepareReconfigure: tcp.prepareReconfigure,
    async stop(options: StopOptions) {
      const deadlineMs = performance.now() + options.timeoutMs;
      await tcp.stop(options);
      await pool.stop({ graceful: options.graceful, timeoutMs: Math.max(0, deadlineMs - performance.now()) });
    },
  };
}

/** Pool workers per I/O thread when `io_threads` threads share pool.threads (0 = one per core) among them. */
export function poolThreadsPerIoThread(poolThreads: number, ioThreads: number): number {
  const total = poolThreads > 0 ? poolThreads : cpus().length;
  return Math.max(1, Math.round(total / ioThreads));
}
