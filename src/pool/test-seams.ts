// Test seams of the worker pool: the one way to start a pool with switches production must never turn (a crashing
// worker entry, lost wake-ups, polling outside the schema's range). Only tests import this file.
import { WorkerPool, type PoolContext, type PoolTestSeams, type WorkerPoolOptions } from "./worker-pool.ts";

export type { PoolTestSeams };

/** startWorkerPool with test seams. */
export async function startWorkerPoolWithSeams(
  context: PoolContext,
  seams: PoolTestSeams,
  options: WorkerPoolOptions = {},
): Promise<WorkerPool> {
  const pool = new WorkerPool(context, options, seams);
  await pool.start();
  return pool;
}
