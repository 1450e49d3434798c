// Passive health of one upstream server: failures within fail_timeout_s eject it for fail_timeout_s (nginx's
// max_fails); active checks (see active-health.ts) can mark it down or bring it back at once.

/** What a server's health looks like at one moment (for stats, /metrics and the dashboard). */
export const HealthState = { UP: 0, EJECTED: 1, CHECK_FAILED: 2 } as const;

export class ServerHealth {
  private maxFails: number;
  private failTimeoutMs: number;
  /** Failures counted in the window that started at windowStartMs. */
  private fails = 0;
  private windowStartMs = 0;
  /** Passive ejection: no requests before this time. */
  private ejectedUntilMs = 0;
  /** The last active check failed (cleared by the next one that passes). */
  private checkFailed = false;
  /** Times this server was ejected by failures (a counter for stats). */
  ejections = 0;

  constructor(maxFails: number, failTimeoutSeconds: number) {
    this.maxFails = maxFails;
    this.failTimeoutMs = failTimeoutSeconds * 1000;
  }

  /** A reload changed max_fails or fail_timeout_s: the counts so far stay. */
  configure(maxFails: number, failTimeoutSeconds: number): void {
    this.maxFails = maxFails;
    this.failTimeoutMs = failTimeoutSeconds * 1000;
  }

  /** Whether the server may be given new requests now. */
  isUp(nowMs: number): boolean {
    return !this.checkFailed && nowMs >= this.ejectedUntilMs;
  }

  state(nowMs: number): number {
    if (this.checkFailed) return HealthState.CHECK_FAILED;
    return nowMs < this.ejectedUntilMs ? HealthState.EJECTED : HealthState.UP;
  }

  /**
   * A request to the server failed (could not connect, the connection broke before a response, or the response timed
   * out). The max_fails-th failure within fail_timeout_s ejects it for fail_timeout_s; after that one more failure,
   * still inside the window, ejects it again at once. max_fails = 0 never ejects. Returns true when this ejected it.
   */
  failed(nowMs: number): boolean {
    if (this.maxFails === 0) return false;
    if (nowMs - this.windowStartMs > this.failTimeoutMs) {
      this.fails = 0;
      this.windowStartMs = nowMs;
    }
    this.fails += 1;
    if (this.fails < this.maxFails || nowMs < this.ejectedUntilMs) return false;
    this.ejectedUntilMs = nowMs + this.failTimeoutMs;
    this.ejections += 1;
    return true;
  }

  /** A response came back: the failures counted so far are forgotten. */
  succeeded(): void {
    this.fails = 0;
  }

  /** An active check answered: passed brings the server back at once (ending an ejection too); failed takes it out. */
  checked(passed: boolean): void {
    this.checkFailed = !passed;
    if (passed) {
      this.ejectedUntilMs = 0;
      this.fails = 0;
    }
  }
}
