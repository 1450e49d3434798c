// One thread of the load tester: its connections over Bun.connect, closed or open model, timing, tallies, histograms.
import type { Socket } from "bun";
import type { Histogram } from "hdr-histogram-js";
import { type ConnectionOwner, LoadConnection, repeat } from "./connection.ts";
import { type EngineConnection, HANDLERS, TLS_HANDLERS } from "./engine-sockets.ts";
import { newLatencyHistogram, recordMillis } from "./latency.ts";
import { echoProtocol } from "./load-echo.ts";
import { hpsProtocol } from "./load-hps.ts";
import { httpProtocol } from "./load-http.ts";
import type { LoadOptions } from "./options.ts";
import { PerSecondCounts } from "./per-second.ts";
import type { ThreadPlan } from "./plan.ts";
import { Outcome, STATUS_SLOTS, type LoadProtocol } from "./protocol.ts";
import { SendSchedule } from "./schedule.ts";
import { LATE_SEND_MS, Tally } from "./tally.ts";
import type { ThreadResult } from "./thread-result.ts";

/** Pause before reopening a connection whose connect failed. */
const RECONNECT_DELAY_MS = 100;
/** How often timeouts and the end of the run are checked in the closed model. */
const HOUSEKEEPING_MS = 50;
/** The open-model timer never sleeps longer than this (timeouts and the end are checked on every tick). */
const OPEN_TICK_MAX_MS = 20;
/**
 * Bun's timers count whole milliseconds (a fractional delay is cut short), so a send planned between two timer
 * wake-ups could leave up to 1 ms late. A request whose planned time is less than this ahead goes out with the
 * wake-up before it instead; its latency is then measured from its actual send, never from the later plan.
 */
const SEND_AHEAD_MS = 1;

export function protocolFor(options: LoadOptions): LoadProtocol {
  switch (options.target.protocol) {
    case "http":
      return httpProtocol(options);
    case "echo":
      return echoProtocol(options);
    case "hps":
      return hpsProtocol(options);
  }
}

const Lost = { READ: Tally.readErrors, TIMEOUT: Tally.timeouts } as const;

/** Runs one thread's share of the load and resolves with its tallies and histograms. */
export class LoadEngine implements ConnectionOwner {
  readonly protocol: LoadProtocol;
  readonly pipeline: number;
  readonly requestBytes: number;
  readonly tallies: Float64Array;
  readonly statuses = new Float64Array(STATUS_SLOTS);
  readonly latency = newLatencyHistogram();
  readonly corrected: Histogram | null;
  private readonly perSecond = new PerSecondCounts();
  private readonly connections: EngineConnection[] = [];
  private readonly isOpen: boolean;
  private readonly timeoutMs: number;
  /** Requests planned at or after this time are measured (performance.now() ms). */
  private measureStartMs = Infinity;
  private endMs = Infinity;
  /** -n mode: measured requests not yet sent, and not yet resolved. */
  private unsent: number;
  private unresolved: number;
  private readonly limited: boolean;
  private stopping = false;
  private finished = false;
  private timer: Timer | null = null;
  /** When the armed timer fires (performance.now() ms); Infinity when none is armed. */
  private timerAtMs = Infinity;
  /** Last time a request was sent or resolved (the no-progress guard). */
  lastProgressMs = 0;
  /** Time of the data event being handled (one clock read per chunk, shared by its responses), or of the last send. */
  nowMs = 0;
  private lastResolvedMs = 0;
  private fatal: string | null = null;
  private lastConnectError = "";
  private resolveRun: ((result: ThreadResult) => void) | null = null;
  private readonly tickHandler = (): void => this.tick();
  /** https://: a server certificate that does not verify fails the connection (no --insecure). */
  readonly verifiesCertificates: boolean;
  /** https://: connects whose handshake has not ended yet, with what settles them. */
  private readonly handshakes = new Map<EngineConnection, () => void>();

  constructor(
    private readonly plan: ThreadPlan,
    tallies: Float64Array,
  ) {
    const options = plan.options;
    this.protocol = protocolFor(options);
    this.pipeline = options.pipeline;
    this.requestBytes = this.protocol.template.length;
    this.tallies = tallies;
    this.isOpen = options.ratePerSecond !== null;
    this.corrected = this.isOpen ? newLatencyHistogram() : null;
    this.timeoutMs = options.timeoutMs;
    this.verifiesCertificates = options.tls?.rejectUnauthorized !== false;
    this.limited = plan.totalRequests !== null;
    this.unsent = plan.totalRequests ?? 0;
    this.unresolved = plan.totalRequests ?? 0;
  }

  /** Opens every connection, waits for them (or their failure), then runs the load until the end condition. */
  async run(): Promise<ThreadResult> {
    const { options } = this.plan;
    const sharedBatch = this.protocol.stamped ? null : repeat(this.protocol.template, this.pipeline);
    const opened: Promise<unknown>[] = [];
    for (let i = 0; i < this.plan.connections; i++) {
      const connection = new LoadConnection(this, i, sharedBatch, null);
      this.connections.push(connection);
      opened.push(this.connect(connection));
    }
    await Promise.all(opened);
    if (this.connections.every((c) => !c.everOpened)) {
      this.fatal = `cannot connect to ${options.target.host}:${options.target.port}: ${this.lastConnectError}`;
      return this.result();
    }
    const startMs = performance.now();
    this.measureStartMs = startMs + options.warmupMs;
    this.perSecond.start(this.measureStartMs);
    if (options.durationMs !== null) this.endMs = this.measureStartMs + options.durationMs;
    if (options.warmupMs === 0) this.tallies[Tally.recording] = 1;
    this.lastProgressMs = startMs;
    if (this.isOpen) {
      const total = options.connections;
      for (const connection of this.connections) {
        (connection as { schedule: SendSchedule }).schedule = new SendSchedule(
          startMs,
          options.ratePerSecond!,
          total,
          this.plan.firstConnection + connection.index,
        );
      }
    }
    const done = new Promise<ThreadResult>((resolve) => (this.resolveRun = resolve));
    for (const connection of this.connections) {
      if (connection.socket !== null) this.sendMore(connection, startMs);
      else void this.connect(connection);
    }
    this.tick();
    return done;
  }

  private connect(connection: EngineConnection): Promise<unknown> {
    const { host, port } = this.plan.options.target;
    const tls = this.plan.options.tls;
    try {
      if (tls === null) {
        return Bun.connect({ hostname: host, port, socket: HANDLERS, data: connection }).catch(() => undefined);
      }
      // Over TLS the connection is ready (or failed) when its handshake ends, after Bun.connect resolves.
      const handshaken = new Promise<void>((resolve) => this.handshakes.set(connection, resolve));
      return Bun.connect({ hostname: host, port, socket: TLS_HANDLERS, data: connection, tls }).then(
        () => handshaken,
        () => this.settleHandshake(connection),
      );
    } catch (error) {
      this.onConnectError(connection, error as Error);
      return Promise.resolve();
    }
  }

  /** https://: the connect of `connection` is over (handshake done or failed). */
  private settleHandshake(connection: EngineConnection): void {
    this.handshakes.get(connection)?.();
    this.handshakes.delete(connection);
  }

  onOpen(connection: EngineConnection, socket: Socket<EngineConnection>): void {
    this.settleHandshake(connection);
    if (this.finished) {
      socket.terminate();
      return;
    }
    connection.socket = socket;
    connection.everOpened = true;
    connection.connectFailures = 0;
    socket.setNoDelay(true);
    if (this.resolveRun !== null) this.sendMore(connection, performance.now());
  }

  onConnectError(connection: EngineConnection, error: Error): void {
    this.settleHandshake(connection);
    this.tallies[Tally.connectErrors]!++;
    this.lastConnectError = error.message || String(error);
    connection.connectFailures++;
    if (this.resolveRun === null || this.finished) return; // during start-up: run() decides
    setTimeout(() => {
      if (!this.finished) void this.connect(connection);
    }, RECONNECT_DELAY_MS);
  }

  onData(connection: EngineConnection, chunk: Buffer): void {
    this.nowMs = performance.now();
    if (this.tallies[Tally.recording] === 1) {
      this.tallies[Tally.bytesRead]! += chunk.length;
      this.perSecond.addBytes(this.nowMs, chunk.length);
    }
    if (!connection.codec.feed(chunk, connection)) {
      this.reopen(connection, Lost.READ);
      return;
    }
    if (this.finished) return;
    if (connection.codec.closeRequested) {
      this.reopen(connection, Lost.READ);
      return;
    }
    this.sendMore(connection, this.nowMs);
  }

  onClose(connection: EngineConnection): void {
    connection.socket = null;
    if (this.finished) return;
    this.nowMs = performance.now();
    connection.codec.finishOnClose(connection);
    connection.loseAll(Lost.READ);
    if (this.stopping && !this.isOpen) return;
    void this.connect(connection);
  }

  /** Closes the connection on purpose: its outstanding requests are lost as `kind`; a new one is opened. */
  private reopen(connection: EngineConnection, kind: number): void {
    const socket = connection.socket;
    connection.socket = null;
    connection.loseAll(kind);
    socket?.terminate();
    if (!this.finished) void this.connect(connection);
  }

  /** A response was matched to its request. */
  finish(plannedMs: number, sentMs: number, outcome: number, status: number): void {
    const tallies = this.tallies;
    tallies[Tally.inFlight]!--;
    tallies[Tally.responsesAll]!++;
    if (plannedMs < this.measureStartMs || this.finished) return;
    const nowMs = this.nowMs;
    tallies[Tally.completed]!++;
    tallies[outcome === Outcome.OK ? Tally.ok : outcome === Outcome.NON_OK ? Tally.nonOk : Tally.mismatch]!++;
    if (status >= 0 && status < STATUS_SLOTS) this.statuses[status]!++;
    this.perSecond.addRequest(nowMs);
    recordMillis(this.latency, nowMs - sentMs);
    // from the plan, or from the send when it left ahead of its plan (SEND_AHEAD_MS)
    if (this.corrected !== null) recordMillis(this.corrected, nowMs - Math.min(plannedMs, sentMs));
    this.resolved(nowMs);
  }

  /** A request ended without a response (connection lost, timeout). */
  lose(plannedMs: number, kind: number): void {
    this.tallies[Tally.inFlight]!--;
    if (plannedMs < this.measureStartMs || this.finished) return;
    this.tallies[kind]!++;
    this.nowMs = performance.now();
    this.resolved(this.nowMs);
  }

  /** Bytes that answer no outstanding request. */
  stray(): void {
    if (this.tallies[Tally.recording] === 1 && !this.finished) this.tallies[Tally.mismatch]!++;
  }

  private resolved(nowMs: number): void {
    this.lastProgressMs = nowMs;
    this.lastResolvedMs = nowMs;
    if (this.limited && --this.unresolved === 0) this.end(nowMs);
    // the open model's last answer: the run is over now, not at the next housekeeping tick
    else if (this.stopping && this.tallies[Tally.inFlight] === 0) this.end(this.endMs);
  }

  /** Sends what the model allows on this connection now. */
  private sendMore(connection: EngineConnection, nowMs: number): void {
    if (connection.socket === null || this.finished) return;
    this.nowMs = nowMs;
    if (!this.isOpen) {
      this.topUp(connection, nowMs);
      return;
    }
    this.sendDue(connection, nowMs);
    // a response that came after its connection's next send was due (or a new connection) may need an earlier wake-up
    const dueMs = this.nextDueMs(connection, nowMs);
    if (dueMs < this.timerAtMs) this.arm(dueMs);
  }

  /** Closed model: keep `pipeline` requests in flight. */
  private topUp(connection: EngineConnection, nowMs: number): void {
    if (this.stopping) return;
    let count = this.pipeline - connection.inFlight;
    if (count <= 0) return;
    const measured = nowMs >= this.measureStartMs;
    if (measured && this.tallies[Tally.recording] === 0) this.tallies[Tally.recording] = 1;
    if (measured && this.limited) {
      if (count > this.unsent) count = this.unsent;
      if (count === 0) return;
      this.unsent -= count;
    }
    for (let i = 0; i < count; i++) connection.enqueue(nowMs, nowMs, i);
    connection.flush(count, measured ? count : 0);
  }

  /** Open model: send every request whose planned time has come, up to `pipeline` in flight. */
  private sendDue(connection: EngineConnection, nowMs: number): void {
    if (this.stopping || nowMs >= this.endMs) return;
    const schedule = connection.schedule!;
    const tallies = this.tallies;
    let count = 0;
    let measuredCount = 0;
    while (connection.inFlight < this.pipeline) {
      const plannedMs = schedule.plannedMs(connection.nextPlanned);
      if (plannedMs > nowMs + SEND_AHEAD_MS || plannedMs >= this.endMs) break;
      const measured = plannedMs >= this.measureStartMs;
      if (measured) {
        if (this.limited) {
          if (this.unsent === 0) break;
          this.unsent--;
        }
        measuredCount++;
        if (nowMs - plannedMs > LATE_SEND_MS) tallies[Tally.lateSends]!++;
      }
      connection.enqueue(plannedMs, nowMs, count);
      connection.nextPlanned++;
      count++;
    }
    if (count > 0) connection.flush(count, measuredCount);
  }

  /** Timer: open-model sends, timeouts, the end of the run. */
  private tick(): void {
    // also called directly (at the start): a timer armed meanwhile must not start a second chain of ticks
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAtMs = Infinity;
    if (this.finished) return;
    const nowMs = performance.now();
    const tallies = this.tallies;
    if (tallies[Tally.recording] === 0 && nowMs >= this.measureStartMs) tallies[Tally.recording] = 1;
    // timeouts
    for (const connection of this.connections) {
      if (connection.inFlight > 0 && nowMs - connection.oldestSentMs() > this.timeoutMs)
        this.reopen(connection, Lost.TIMEOUT);
    }
    if (this.finished) return;
    // end of a timed run
    if (nowMs >= this.endMs) {
      if (!this.isOpen) {
        this.end(this.endMs);
        return;
      }
      // open model: nothing more goes out; the requests in flight get until their timeout to answer
      this.stopping = true;
      if (this.connections.every((c) => c.inFlight === 0)) {
        this.end(this.endMs);
        return;
      }
    }
    // no progress at all for two timeouts (e.g. the server vanished and reconnects keep failing)
    if (nowMs - this.lastProgressMs > 2 * this.timeoutMs + RECONNECT_DELAY_MS) {
      this.fatal = `no progress for ${Math.round((nowMs - this.lastProgressMs) / 1000)} s${this.lastConnectError ? ` (last connect error: ${this.lastConnectError})` : ""}`;
      this.end(this.limited ? this.lastResolvedMs || nowMs : Math.min(nowMs, this.endMs));
      return;
    }
    let wakeMs = nowMs + HOUSEKEEPING_MS;
    if (this.isOpen) {
      wakeMs = nowMs + OPEN_TICK_MAX_MS;
      this.nowMs = nowMs;
      for (const connection of this.connections) {
        if (connection.socket === null) continue;
        this.sendDue(connection, nowMs);
        const dueMs = this.nextDueMs(connection, nowMs);
        if (dueMs < wakeMs) wakeMs = dueMs;
      }
    }
    this.arm(wakeMs);
  }

  /**
   * Open model: when this connection's next request is due, or Infinity when nothing will be sent on it by the
   * timer: no socket, the run is stopping, -n is used up, or it is at its pipeline cap with the send already due
   * (its next response sends it). A connection at the cap whose next send lies ahead still counts: its response
   * usually comes back before then, and the send must not wait for the following housekeeping tick.
   */
  private nextDueMs(connection: EngineConnection, nowMs: number): number {
    if (connection.socket === null || this.stopping) return Infinity;
    if (this.limited && this.unsent === 0) return Infinity;
    const dueMs = connection.schedule!.plannedMs(connection.nextPlanned);
    if (dueMs >= this.endMs) return this.endMs;
    if (connection.inFlight >= this.pipeline && dueMs <= nowMs + SEND_AHEAD_MS) return Infinity;
    return dueMs;
  }

  /** (Re)arms the timer to fire at `wakeMs`; sends planned less than SEND_AHEAD_MS later go out with it. */
  private arm(wakeMs: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtMs = wakeMs;
    const delayMs = wakeMs - performance.now();
    // rounded down: it fires at most SEND_AHEAD_MS early, which the send-ahead window covers, never late
    this.timer = setTimeout(this.tickHandler, delayMs > 0 ? Math.floor(delayMs) : 0);
  }

  private end(lastMs: number): void {
    if (this.finished) return;
    const measuredMs = Math.max(
      0,
      (this.limited && this.endMs === Infinity ? lastMs : Math.min(lastMs, this.endMs)) - this.measureStartMs,
    );
    this.tallies[Tally.measuredMs] = measuredMs;
    if (this.isOpen) {
      let planned = 0;
      for (const connection of this.connections) {
        const schedule = connection.schedule!;
        const endIndex = this.endMs === Infinity ? connection.nextPlanned : schedule.countBefore(this.endMs);
        planned += Math.max(0, endIndex - schedule.countBefore(this.measureStartMs));
      }
      this.tallies[Tally.planned] = this.limited ? this.plan.totalRequests! : planned;
    }
    this.finished = true;
    if (this.timer !== null) clearTimeout(this.timer);
    for (const connection of this.connections) {
      const socket = connection.socket;
      connection.socket = null;
      socket?.terminate();
    }
    this.tallies[Tally.inFlight] = 0;
    this.tallies[Tally.done] = 1;
    this.resolveRun?.(this.result());
  }

  private result(): ThreadResult {
    this.tallies[Tally.done] = 1;
    return {
      tallies: this.tallies,
      statuses: this.statuses,
      latency: this.latency,
      corrected: this.corrected,
      fatal: this.fatal,
      completedBySecond: this.perSecond.requests,
      bytesReadBySecond: this.perSecond.bytes,
    };
  }
}
