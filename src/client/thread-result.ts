// What one thread of the load tester reports when its run ends (socket engine and fetch engine alike).
import type { Histogram } from "hdr-histogram-js";

/** One thread's tallies, status counts, histograms and per-second series. */
export interface ThreadResult {
  tallies: Float64Array;
  /** Responses by status code (HTTP 100-999; HPS/1 frame status 0-255). */
  statuses: Float64Array;
  /** From the actual send time. */
  latency: Histogram;
  /** Open model: from the planned send time (coordinated-omission corrected); null in the closed model. */
  corrected: Histogram | null;
  /** Set when the thread gave up (no connection could be opened, no progress). */
  fatal: string | null;
  /** Measured responses and bytes read in each second since measuring began (the last one is usually partial). */
  completedBySecond: number[];
  bytesReadBySecond: number[];
}
