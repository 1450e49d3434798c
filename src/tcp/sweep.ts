// The listener's timer for per-connection timeouts: idle connections (limits.connection_timeout_s) and clients that
// read nothing of the output waiting for them (tcp.send_timeout_s). It also advances the idle clock that events stamp
// connections with, so no event reads a system clock.
import type { Logger } from "../log.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { HandshakeFailure } from "../tls/handshake.ts";
import type { ConnectionState } from "./connection.ts";
import type { IdleClock } from "./echo.ts";

/** The sweep runs about this many times per timeout (idle, send), so a connection closes within 1.25x the timeout. */
const SWEEPS_PER_TIMEOUT = 4;
const MIN_SWEEP_MS = 5;
const MAX_SWEEP_MS = 1000;

export class ConnectionSweeper {
  readonly clock: IdleClock = { tick: 0 };
  private readonly open: readonly ConnectionState[];
  private readonly stats: Stats;
  private readonly logger: Logger;
  /** Sweep periods after which an idle connection closes; 0 = never. */
  private idleTicks = 0;
  /** Sweep periods without write progress after which a connection with output waiting is cut; 0 = never. */
  private sendTicks = 0;
  private sweepMs = MAX_SWEEP_MS;
  private timer: ReturnType<typeof setInterval> | null = null;

  /** `open`: the listener's list of open connections (read at every sweep). */
  constructor(open: readonly ConnectionState[], stats: Stats, logger: Logger) {
    this.open = open;
    this.stats = stats;
    this.logger = logger;
  }

  /**
   * Sets both timeouts (seconds, 0 = never) and (re)starts the timer when its period changed. The period serves the
   * shorter timeout. A connection idle (or stalled) across a change is timed in periods of both values, so it may
   * close up to one old period early or late, once.
   */
  configure(connectionTimeoutSeconds: number, sendTimeoutSeconds: number): void {
    const idleMs = connectionTimeoutSeconds * 1000;
    const sendMs = sendTimeoutSeconds * 1000;
    const shortestMs = Math.min(idleMs > 0 ? idleMs : Infinity, sendMs > 0 ? sendMs : Infinity);
    const sweepMs =
      shortestMs === Infinity
        ? MAX_SWEEP_MS
        : Math.min(MAX_SWEEP_MS, Math.max(MIN_SWEEP_MS, shortestMs / SWEEPS_PER_TIMEOUT));
    const wasSweeping = this.isSweeping();
    const periodChanged = sweepMs !== this.sweepMs;
    this.sweepMs = sweepMs;
    this.idleTicks = idleMs > 0 ? Math.ceil(idleMs / sweepMs) : 0;
    this.sendTicks = sendMs > 0 ? Math.ceil(sendMs / sweepMs) : 0;
    if (this.timer === null ? this.isSweeping() : periodChanged || wasSweeping !== this.isSweeping()) this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private isSweeping(): boolean {
    return this.idleTicks > 0 || this.sendTicks > 0;
  }

  private schedule(): void {
    this.stop();
    if (!this.isSweeping()) return;
    this.timer = setInterval(this.sweep, this.sweepMs);
    this.timer.unref();
  }

  /**
   * Every period: a connection with output waiting is not idle (it waits for its client to read) and is cut only when
   * its output made no progress for tcp.send_timeout_s (disconnectedSlowReader); any other connection closes after
   * limits.connection_timeout_s without a read or drain, unless requests are in flight.
   */
  private readonly sweep = (): void => {
    const tick = ++this.clock.tick;
    const open = this.open;
    const idleTicks = this.idleTicks;
    const sendTicks = this.sendTicks;
    // Backwards: closing swaps the last open connection into this index, which was already visited.
    for (let i = open.length - 1; i >= 0; i--) {
      const connection = open[i]!;
      if (connection.isClosed) continue;
      if (connection.queuedBytes > 0) {
        if (sendTicks === 0 || tick - connection.lastWriteTick < sendTicks) continue;
        this.stats.inc(Counter.disconnectedSlowReader);
        this.logger.debug(
          `tcp: ${connection.remoteAddress} read nothing of ${connection.queuedBytes} bytes for tcp.send_timeout_s; disconnecting`,
        );
        connection.isClosed = true;
        connection.socket?.terminate();
        continue;
      }
      if (idleTicks === 0 || tick - connection.lastActiveTick < idleTicks || connection.inFlight > 0) continue;
      this.stats.inc(Counter.connectionsTimedOut);
      if (connection.isHandshaking) this.stats.inc(HandshakeFailure.timeout);
      connection.isClosed = true;
      connection.socket?.end();
    }
  };
}
