// Passive health of one upstream server: failures within fail_timeout_s eject it for fail_timeout_s (nginx's
// max_fails); active checks (see active-health.ts) can mark it down or bring it back at once.

/** What a server's health looks like at one moment (for stats, /metrics and the dashboard). */
export const HealthState = { UP: 0, EJECTED: 1, CHECK_FAILED: 2 } as const;

export class ServerHealth {
  private maxFails: number;
  private failTimeoutMs: number;
  /** Failures counted (see failed). */
  private fails = 0;
  private lastFailureMs = Number.NEGATIVE_INFINITY;
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
   * out). The max_fails-th failure within fail_timeout_s of the one before ejects it for fail_timeout_s. Once it is
   * back, the failures are remembered until a response succeeds: its first request is a trial, and a failure ejects
   * it again at once (nginx's max_fails semantics). max_fails = 0 never ejects. Returns true when this ejected it.
   */
  failed(nowMs: number): boolean {
    if (this.maxFails === 0) return false;
    if (this.fails < this.maxFails && nowMs - this.lastFailureMs > this.failTimeoutMs) this.fails = 0;
    this.fails += 1;
    this.lastFailureMs = nowMs;
    if (this.fails < this.maxFails) return false;
    const wasEjected = nowMs < this.ejectedUntilMs;
    this.ejectedUntilMs = nowMs + this.failTimeoutMs;
    if (wasEjected) return false; // a request already in flight when it was ejected: the ejection is extended
    this.ejections += 1;
    return true;
  }

  /**
   * A response came back. Failures are forgotten once a response succeeds more than fail_timeout_s after the last
   * failure: a server failing every other request is still ejected.
   */
  succeeded(nowMs: number): void {
    if (this.fails > 0 && nowMs - this.lastFailureMs > this.failTimeoutMs) this.fails = 0;
  }

  /** Active checks were turned off (a reload): the last one's verdict no longer stands; passive health goes on. */
  uncheck(): void {
    this.checkFailed = false;
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
