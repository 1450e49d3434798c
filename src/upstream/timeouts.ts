// Idle timeouts of upstream connections, checked by one sweep per thread instead of a timer per connection.
//
// Bun's socket.timeout() ticks in steps of about 4 seconds (uSockets' timeout granularity), too coarse for a read
// timeout of 1 s or a keep-alive timeout just under a backend's 5 s. A connection stamps the sweep's clock on every
// byte it moves (a store, no clock read); the sweep runs every SWEEP_INTERVAL_MS while anything is tracked.

/** Sweep period: a timeout fires between its time and its time plus twice this. */
export const SWEEP_INTERVAL_MS = 250;

/** Something with an idle timeout: a connection to an upstream server. */
export interface Timed {
  /** The sweep's clock when the item last moved a byte (or changed state). */
  lastActivityMs: number;
  /** Idle time allowed now, milliseconds; Infinity = none. */
  timeoutMs: number;
  /** Position in the sweep's list; -1 while not tracked. */
  sweepIndex: number;
  /** The idle time passed; the item is no longer tracked. */
  onIdleTimeout(): void;
}

export class TimeoutSweep {
  /** The clock items stamp: performance.now() as of the last sweep (or the first tracked item). */
  nowMs = performance.now();
  private readonly items: Timed[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly intervalMs: number;

  constructor(intervalMs = SWEEP_INTERVAL_MS) {
    this.intervalMs = intervalMs;
  }

  get size(): number {
    return this.items.length;
  }

  track(item: Timed): void {
    if (item.sweepIndex >= 0) return;
    if (this.timer === null) {
      this.nowMs = performance.now();
      this.timer = setInterval(() => this.sweep(), this.intervalMs);
      this.timer.unref();
    }
    item.sweepIndex = this.items.length;
    this.items.push(item);
  }

  untrack(item: Timed): void {
    const index = item.sweepIndex;
    if (index < 0) return;
    const items = this.items;
    const last = items.pop()!;
    if (last !== item) {
      items[index] = last;
      last.sweepIndex = index;
    }
    item.sweepIndex = -1;
    if (items.length === 0) this.stopTimer();
  }

  /** Fires the timeouts that have passed. A stamp is up to one period old, so one period is added: never early. */
  sweep(): void {
    const nowMs = performance.now();
    this.nowMs = nowMs;
    const items = this.items;
    const graceMs = this.intervalMs;
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i];
      if (item === undefined) continue; // the list shrank under a callback
      if (nowMs - item.lastActivityMs < item.timeoutMs + graceMs) continue;
      this.untrack(item);
      item.onIdleTimeout();
    }
  }

  stop(): void {
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
