// Open-model send schedule: a fixed plan of when each connection sends, independent of when responses come back.

/**
 * Connection `index` of `connections` (all threads together) sends its k-th request at
 * startMs + phaseMs + k * intervalMs, so the whole run sends `ratePerSecond` evenly spaced requests.
 */
export class SendSchedule {
  readonly intervalMs: number;
  readonly phaseMs: number;

  constructor(
    readonly startMs: number,
    ratePerSecond: number,
    connections: number,
    index: number,
  ) {
    this.intervalMs = (1000 * connections) / ratePerSecond;
    this.phaseMs = (this.intervalMs * index) / connections;
  }

  /** Planned send time of request k (performance.now() milliseconds). */
  plannedMs(k: number): number {
    return this.startMs + this.phaseMs + k * this.intervalMs;
  }

  /** Requests planned strictly before `timeMs` (the index of the first planned at or after it). */
  countBefore(timeMs: number): number {
    const k = Math.ceil((timeMs - this.startMs - this.phaseMs) / this.intervalMs);
    return Math.max(k, 0);
  }
}
