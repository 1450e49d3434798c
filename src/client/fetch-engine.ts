// One load-tester thread over Bun's fetch, for `--http2`: HTTP/2 framing and multiplexing are Bun's (closed model).
//
// The socket engine (engine.ts) writes pre-serialized HTTP/1.1 requests on its own connections; HTTP/2 needs HPACK
// and stream framing, which Bun's fetch already speaks (`protocol: "http2"`). Each of the connections × pipeline
// loops keeps one request outstanding; Bun multiplexes them over its own connections to the origin, so -c and -p
// set how many requests are in flight, not how many TCP connections are open.
import { newLatencyHistogram, recordMillis } from "./latency.ts";
import type { ThreadResult } from "./thread-result.ts";
import { PerSecondCounts } from "./per-second.ts";
import type { ThreadPlan } from "./plan.ts";
import { STATUS_SLOTS } from "./protocol.ts";
import { Tally } from "./tally.ts";

/** Runs one thread's share of an HTTP/2 load and resolves with its tallies and histograms. */
export class FetchEngine {
  private readonly statuses = new Float64Array(STATUS_SLOTS);
  private readonly latency = newLatencyHistogram();
  private readonly perSecond = new PerSecondCounts();
  private readonly init: RequestInit;
  private readonly url: string;
  private measureStartMs = Infinity;
  private endMs = Infinity;
  /** -n mode: measured requests not yet sent. */
  private unsent: number;
  private readonly limited: boolean;
  private fatal: string | null = null;
  private lastMs = 0;

  constructor(
    private readonly plan: ThreadPlan,
    private readonly tallies: Float64Array,
  ) {
    const { options } = plan;
    const target = options.target;
    const host = target.host.includes(":") ? `[${target.host}]` : target.host;
    this.url = `https://${host}:${target.port}${target.path}`;
    this.init = {
      method: options.method,
      headers: options.headers,
      ...(options.body === "" ? {} : { body: options.body }),
      protocol: "http2",
      tls: options.tls ?? {},
    } as RequestInit;
    this.limited = plan.totalRequests !== null;
    this.unsent = plan.totalRequests ?? 0;
  }

  async run(): Promise<ThreadResult> {
    const { options } = this.plan;
    const startMs = performance.now();
    this.measureStartMs = startMs + options.warmupMs;
    this.perSecond.start(this.measureStartMs);
    if (options.durationMs !== null) this.endMs = this.measureStartMs + options.durationMs;
    if (options.warmupMs === 0) this.tallies[Tally.recording] = 1;
    const loops = this.plan.connections * options.pipeline;
    await Promise.all(Array.from({ length: loops }, () => this.loop()));
    const measuredMs = Math.max(0, Math.min(this.lastMs, this.endMs) - this.measureStartMs);
    this.tallies[Tally.measuredMs] = measuredMs;
    this.tallies[Tally.done] = 1;
    if (this.tallies[Tally.completed] === 0 && this.tallies[Tally.connectErrors]! > 0) {
      this.fatal ??= `cannot connect over HTTP/2 to ${options.target.host}:${options.target.port}`;
    }
    return {
      tallies: this.tallies,
      statuses: this.statuses,
      latency: this.latency,
      corrected: null,
      fatal: this.fatal,
      completedBySecond: this.perSecond.requests,
      bytesReadBySecond: this.perSecond.bytes,
    };
  }

  /** One request at a time until the end (the duration, or the -n requests handed out). */
  private async loop(): Promise<void> {
    const tallies = this.tallies;
    const timeoutMs = this.plan.options.timeoutMs;
    for (;;) {
      const sentMs = performance.now();
      if (sentMs >= this.endMs) return;
      const measured = sentMs >= this.measureStartMs;
      if (measured) {
        if (tallies[Tally.recording] === 0) tallies[Tally.recording] = 1;
        if (this.limited) {
          if (this.unsent === 0) return;
          this.unsent--;
        }
        tallies[Tally.sent]!++;
      }
      tallies[Tally.inFlight]!++;
      let status = -1;
      let bodyBytes = 0;
      let failure: number = Tally.readErrors;
      try {
        const response = await fetch(this.url, { ...this.init, signal: AbortSignal.timeout(timeoutMs) });
        bodyBytes = (await response.arrayBuffer()).byteLength;
        status = response.status;
      } catch (error) {
        const name = (error as Error).name;
        const code = (error as NodeJS.ErrnoException).code ?? "";
        failure =
          name === "TimeoutError"
            ? Tally.timeouts
            : /ConnectionRefused|ECONNREFUSED/.test(code)
              ? Tally.connectErrors
              : Tally.readErrors;
        if (failure === Tally.connectErrors) this.fatal = `cannot connect: ${(error as Error).message}`;
      }
      tallies[Tally.inFlight]!--;
      tallies[Tally.responsesAll]! += status >= 0 ? 1 : 0;
      const nowMs = performance.now();
      this.lastMs = nowMs;
      if (!measured) continue;
      if (status < 0) {
        tallies[failure]!++;
        // a refused connection ends this loop (a dead server is not hammered in a tight loop); the run reports it
        if (failure === Tally.connectErrors) return;
        continue;
      }
      tallies[Tally.completed]!++;
      tallies[status >= 200 && status < 300 ? Tally.ok : Tally.nonOk]!++;
      if (status < STATUS_SLOTS) this.statuses[status]!++;
      tallies[Tally.bytesRead]! += bodyBytes;
      this.perSecond.addRequest(nowMs);
      this.perSecond.addBytes(nowMs, bodyBytes);
      recordMillis(this.latency, nowMs - sentMs);
    }
  }
}
