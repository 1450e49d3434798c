// The pool's and the arena's gauge groups ("pool", "arena") for /stats, /metrics and the periodic report.
import type { GaugeRegistry } from "../context.ts";
import type { BufferArena } from "../memory/arena.ts";
import type { LatencyHistogram } from "../stats/histogram.ts";
import { COUNTER_SPIN_CATCHES, COUNTER_SPINS, WORKER_AWAKE_BASE, WORKER_SLEEPING } from "./channel.ts";
import type { CompletionDrain } from "./completions.ts";
import type { TaskTable } from "./task-table.ts";
import type { Waker } from "./wakeups.ts";
import type { PoolWatchdog } from "./watchdog.ts";
import { WorkerState } from "./worker-slot.ts";
import type { WorkerSet } from "./workers.ts";

/** The parts whose numbers the gauges read. */
export interface GaugeSources {
  readonly tasks: TaskTable;
  /** Tasks no worker has started yet (what pool.max_queue bounds). */
  notStarted(): number;
  readonly workers: WorkerSet;
  readonly mainControl: Int32Array;
  readonly waker: Waker;
  readonly completions: CompletionDrain;
  readonly watchdog: PoolWatchdog;
  readonly latency: LatencyHistogram;
  readonly arena: BufferArena;
}

/** Registers both groups; the returned function removes them (unless another pool registered its own since). */
export function registerPoolGauges(registry: GaugeRegistry, sources: GaugeSources): () => void {
  const pool = () => poolGauges(sources);
  const arena = () => arenaGauges(sources.arena);
  registry.set("pool", pool);
  registry.set("arena", arena);
  return () => {
    if (registry.get("pool") === pool) registry.delete("pool");
    if (registry.get("arena") === arena) registry.delete("arena");
  };
}

function poolGauges(sources: GaugeSources): Record<string, number> {
  const { tasks, workers, mainControl } = sources;
  let busyWorkers = 0;
  let workerCount = 0;
  let sleepingWorkers = 0;
  let awakeWorkers = 0;
  let spins = workers.retiredSpins;
  let spinCatches = workers.retiredSpinCatches;
  for (const slot of workers.slots) {
    if (slot.state !== WorkerState.READY) continue;
    awakeWorkers += Atomics.load(mainControl, WORKER_AWAKE_BASE + slot.index);
    spins += slot.counters[COUNTER_SPINS]!;
    spinCatches += slot.counters[COUNTER_SPIN_CATCHES]!;
    workerCount++;
    if (slot.outstanding > 0) busyWorkers++;
    if (Atomics.load(slot.control, WORKER_SLEEPING) === 1) sleepingWorkers++;
  }
  return {
    queued: sources.notStarted(),
    running: tasks.running,
    busyWorkers,
    workers: workerCount,
    wakeups: sources.waker.wakeups,
    doorbells: sources.completions.doorbells,
    lostWakeups: sources.watchdog.lostWakeups,
    terminatingWorkers: workers.terminating,
    sleepingWorkers,
    awakeWorkers,
    spins,
    spinCatches,
    latencyP50Micros: sources.latency.percentile(50),
    latencyP99Micros: sources.latency.percentile(99),
  };
}

function arenaGauges(arena: BufferArena): Record<string, number> {
  const stats = arena.stats();
  const gauges: Record<string, number> = {
    bytesInUse: stats.bytesInUse,
    peakBytes: stats.peakBytes,
    allocations: stats.allocations,
    frees: stats.frees,
    failures: stats.failures,
    fallbacks: stats.fallbacks,
    violations: stats.violations,
    capacityBytes: stats.capacityBytes,
    heapBytesInUse: stats.heapBytesInUse,
    heapBudgetBytes: stats.heapBudgetBytes,
    heapFailures: stats.heapFailures,
  };
  stats.classInUse.forEach((inUse, c) => {
    gauges[`inUse${256 << c}`] = inUse;
  });
  return gauges;
}
