// How a load run is split over threads: each gets its share of the connections and of the -n requests.
import type { LoadOptions } from "./options.ts";

/** What one thread runs: the shared options plus its share of the connections and requests. */
export interface ThreadPlan {
  options: LoadOptions;
  threadIndex: number;
  /** Index of this thread's first connection among all connections (spreads the open-model phases). */
  firstConnection: number;
  connections: number;
  /** Measured requests for this thread in -n mode; null in duration mode. */
  totalRequests: number | null;
}

/** Splits connections and -n requests over threads as evenly as possible. */
export function planThreads(options: LoadOptions): ThreadPlan[] {
  const plans: ThreadPlan[] = [];
  let firstConnection = 0;
  for (let t = 0; t < options.threads; t++) {
    const connections =
      Math.floor(options.connections / options.threads) + (t < options.connections % options.threads ? 1 : 0);
    const totalRequests =
      options.totalRequests === null
        ? null
        : Math.floor(options.totalRequests / options.threads) + (t < options.totalRequests % options.threads ? 1 : 0);
    plans.push({ options, threadIndex: t, firstConnection, connections, totalRequests });
    firstConnection += connections;
  }
  return plans;
}
