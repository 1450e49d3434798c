// Worker entry for `bun run load --threads T`: runs one thread's share and posts its histograms back encoded.
import { FetchEngine } from "./fetch-engine.ts";
import { LoadEngine } from "./engine.ts";
import { encodeHistogram } from "./latency.ts";
import type { ThreadPlan } from "./plan.ts";

/** Message from the main thread: the plan and the shared tally array this worker writes. */
export interface WorkerStart {
  plan: ThreadPlan;
  tallies: SharedArrayBuffer;
}

/** Message back when the thread is done. */
export interface WorkerDone {
  statuses: number[];
  latency: string;
  corrected: string | null;
  fatal: string | null;
  completedBySecond: number[];
  bytesReadBySecond: number[];
}

declare const self: Worker;

self.onmessage = async (event: MessageEvent<WorkerStart>) => {
  const { plan } = event.data;
  const tallies = new Float64Array(event.data.tallies);
  const engine = plan.options.http2 ? new FetchEngine(plan, tallies) : new LoadEngine(plan, tallies);
  const result = await engine.run();
  const done: WorkerDone = {
    statuses: Array.from(result.statuses),
    latency: encodeHistogram(result.latency),
    corrected: result.corrected === null ? null : encodeHistogram(result.corrected),
    fatal: result.fatal,
    completedBySecond: result.completedBySecond,
    bytesReadBySecond: result.bytesReadBySecond,
  };
  self.postMessage(done);
};
