// HPS/1 dispatch: decode frames, answer PING/ECHO/STATS inline, hand runner opcodes to the OpRunner, batch the responses.
import type { ServerContext } from "../context.ts";
import type { Admission } from "../net/admission.ts";
import type { OpDone, OpRunner } from "../pool/op-runner.ts";
import { snapshot } from "../stats/snapshot.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { type ConnectionState, pauseReading, resumeReading } from "./connection.ts";
import { EndOfTickBatch } from "./end-of-tick.ts";
import { EMPTY_PAYLOAD, FrameStatus, Opcode, type FrameRangeHandler } from "./frame.ts";
import { LimitWaiters } from "./limit-waiters.ts";
import { ResponseWriter } from "./responses.ts";
import { RunningRequests } from "./running-requests.ts";
import type { WriteQueue } from "./write-queue.ts";

const textEncoder = new TextEncoder();

export interface CustomProtocolOptions {
  readonly stats: Stats;
  readonly writer: WriteQueue;
  readonly runner: OpRunner;
  /** custom.max_in_flight: runner requests per connection before the socket stops being read. */
  readonly maxInFlight: number;
  /** limits.max_request_bytes, for error messages. */
  readonly maxFrameBytes: number;
  /** Called after responses were written outside a data event (the listener closes idle draining connections). */
  readonly afterActivity: (connection: ConnectionState) => void;
  /** Calls continueHeld(connection) guarded like a data event; used when a paused connection may decode again. */
  readonly readHeld: (connection: ConnectionState) => void;
  /** Rate limiting per client address (status 5). */
  readonly admission: Admission;
  /** For the STATS opcode's snapshot (the same as the admin /stats). */
  readonly context: ServerContext;
}

/** The HPS/1 handler of one listener: per-connection decoding and the table of requests running on the runner. */
export class CustomProtocol {
  private readonly stats: Stats;
  private readonly writer: WriteQueue;
  private readonly runner: OpRunner;
  private maxInFlight: number;
  private readonly afterActivity: (connection: ConnectionState) => void;
  private readonly context: ServerContext;
  /** Its rateLimitEnabled is read per frame (a field), so a reload that turns rate limiting on or off applies to the next frame. */
  private readonly admission: Admission;
  private tooLargeMessage: Uint8Array;
  private readonly badFrameMessage = textEncoder.encode("bad frame: version must be 1 and the length field at least 8");
  private readonly shuttingDownMessage = textEncoder.encode("server shutting down");
  private readonly inFlightBusyMessage = textEncoder.encode(
    "busy: pool queue full (and custom.max_in_flight requests of this connection are running)",
  );

  /**
   * The shutdown deadline passed: frames still held are decoded without stopping at a limit, and pool opcodes among
   * them are answered status 7 instead of being started.
   */
  private isPastDeadline = false;
  /** The connection whose chunk is being decoded (onFrame is one function for all connections, not a closure per call). */
  private current: ConnectionState | null = null;
  /** Batching of answers, and the latency of inline ones (its eventStartMs is also the rate limiter's clock). */
  private readonly responses: ResponseWriter;
  /** Requests on the runner, by token. */
  private readonly running = new RunningRequests();

  /** Connections with responses from the runner waiting to be written at the end of this tick. */
  private readonly toFlush: EndOfTickBatch;
  /** Paused connections whose decoder holds frames and that dropped below max_in_flight: decoded at the end of this tick. */
  private readonly toResume: EndOfTickBatch;
  /** Connections that stopped reading at max_in_flight (woken by a busy answer: see isAtInFlightLimit). */
  private readonly waitingAtLimit = new LimitWaiters();
  private readonly wakeWaiting = (connection: ConnectionState) => this.toResume.add(connection);

  readonly onFrame: FrameRangeHandler;
  private readonly onDone: OpDone;

  constructor(options: CustomProtocolOptions) {
    this.stats = options.stats;
    this.writer = options.writer;
    this.runner = options.runner;
    this.maxInFlight = options.maxInFlight;
    this.afterActivity = options.afterActivity;
    this.context = options.context;
    this.admission = options.admission;
    this.tooLargeMessage = tooLargeMessage(options.maxFrameBytes);
    this.responses = new ResponseWriter(options.stats, options.writer);
    this.onFrame = (opcode, _status, requestId, bytes, payloadStart, payloadBytes) => {
      this.handleFrame(opcode, requestId, bytes, payloadStart, payloadBytes);
      // At max_in_flight runner requests (inline answers are in the batch already), or with more output waiting than
      // the high-water mark, decode no further: the decoder keeps the rest of the chunk until there is room again
      // (settleReading, continueHeld), so one chunk cannot make the server hold more than one frame's answer past it.
      const connection = this.current!;
      if (
        !this.isPastDeadline &&
        (this.isAtInFlightLimit(connection) || connection.queuedBytes + connection.batchBytes > this.writer.highWater)
      )
        connection.decoder!.stop();
    };
    this.onDone = (token, status, result) => this.handleDone(token, status, result);
    this.toFlush = new EndOfTickBatch("isFlushScheduled", (connection) => {
      this.writer.flushBatch(connection);
      if (connection.closeWhenIdle) this.afterActivity(connection);
    });
    this.toResume = new EndOfTickBatch("isResumeScheduled", options.readHeld);
  }

  /**
   * A configuration reload: custom.max_in_flight applies to the next frame of every connection (a connection paused
   * at the old limit resumes when one of its answers is written); limits.max_request_bytes to connections opened from
   * now on (each keeps the decoder it was opened with).
   */
  setLimits(maxInFlight: number, maxFrameBytes: number): void {
    this.maxInFlight = maxInFlight;
    this.tooLargeMessage = tooLargeMessage(maxFrameBytes);
  }

  /** Requests handed to the runner and not answered yet, over all connections (including ones closed meanwhile). */
  inFlight(): number {
    return this.running.total;
  }

  /** One data event: decode complete frames up to max_in_flight, answer what is inline, write the batch, pause at the limit. */
  onData(connection: ConnectionState, chunk: Uint8Array): void {
    // Framing was lost (reading stopped, but a chunk may have been read already): nothing after it means anything,
    // and it is not counted again.
    if (connection.failure !== 0) return;
    this.responses.eventStartMs = performance.now();
    this.current = connection;
    const status = connection.decoder!.pushRanges(chunk, this.onFrame);
    this.current = null;
    if (status !== FrameStatus.OK) {
      this.failConnection(connection, status);
      this.responses.recordInline();
      return;
    }
    if (!connection.isClosed) this.writer.flushBatch(connection);
    this.responses.recordInline();
    this.settleReading(connection);
  }

  /**
   * A paused connection below max_in_flight again (called through options.readHeld, at the end of a tick): decodes
   * the frames its decoder kept, as a data event would, and resumes reading once none are left and there is room.
   */
  continueHeld(connection: ConnectionState): void {
    if (connection.isClosed || !connection.isReadPaused || this.mustWait(connection)) return;
    const decoder = connection.decoder!;
    if (decoder.heldBytes() > 0) {
      this.responses.eventStartMs = performance.now();
      this.current = connection;
      const status = decoder.resume(this.onFrame);
      this.current = null;
      if (status !== FrameStatus.OK) {
        this.failConnection(connection, status);
        this.responses.recordInline();
        return;
      }
      if (!connection.isClosed) this.writer.flushBatch(connection);
      this.responses.recordInline();
    }
    this.settleReading(connection);
  }

  /**
   * A drain brought the connection's output back under the low-water mark (called by the listener): held frames
   * are decoded, or reading resumes, at the end of this tick.
   */
  onOutputDrained(connection: ConnectionState): void {
    if (connection.isReadPaused) this.toResume.add(connection);
  }

  /**
   * At the shutdown deadline, every request `connection` sent that the server read gets its one frame now: each one
   * on the pool (running, queued, or in a worker's ring) status 7 "server shutting down" (its late result, if any, is
   * dropped); the frames held undecoded behind custom.max_in_flight or the high-water mark are decoded, inline ones
   * answered as usual and pool ones status 7 without being started. A connection whose framing was lost then gets its
   * error frame last. Everything is written (or queued) before this returns; nothing is decoded after it.
   */
  answerAtDeadline(connection: ConnectionState): void {
    this.isPastDeadline = true;
    if (connection.isClosed) return;
    const owesFailure = connection.failure !== 0 && connection.inFlight > 0;
    if (connection.inFlight > 0) {
      const running = this.running;
      running.answerEarly(connection, (token) =>
        this.responses.appendFrame(
          connection,
          running.opcode[token]!,
          FrameStatus.TIMEOUT,
          running.requestId[token]!,
          this.shuttingDownMessage,
          true,
        ),
      );
    }
    const decoder = connection.decoder!;
    if (connection.failure === 0 && decoder.heldBytes() > 0) {
      this.responses.eventStartMs = performance.now();
      this.current = connection;
      const status = decoder.resume(this.onFrame);
      this.current = null;
      if (status !== FrameStatus.OK) {
        // Nothing is out any more, so the error frame goes out at once, after the answers batched before it.
        this.failConnection(connection, status);
        this.responses.recordInline();
        return;
      }
    }
    if (owesFailure) this.sendFailure(connection);
    else this.writer.flushBatch(connection);
    this.responses.recordInline();
  }

  /** Reading must wait: framing was lost, the output is over the high-water mark, or max_in_flight requests are out. */
  private mustWait(connection: ConnectionState): boolean {
    return connection.failure !== 0 || connection.isOutputFull || this.isAtInFlightLimit(connection);
  }

  /**
   * max_in_flight runner requests are out, and the runner would take another (when it would not, the frames after
   * the limit are read and answered busy at once rather than held until one of those requests finishes).
   */
  private isAtInFlightLimit(connection: ConnectionState): boolean {
    return connection.inFlight >= this.maxInFlight && this.runner.isSaturated?.() !== true;
  }

  /**
   * After decoding: reading stays paused while it must wait (mustWait) or frames are held undecoded; held frames
   * with room for them are decoded at the end of this tick (in a microtask, never inside a runner's done, which may
   * run inside another connection's event); otherwise reading goes on.
   */
  private settleReading(connection: ConnectionState): void {
    if (connection.isClosed) return;
    const mustWait = this.mustWait(connection);
    if (mustWait || connection.decoder!.heldBytes() > 0) {
      pauseReading(connection);
      if (!mustWait) this.toResume.add(connection);
      else if (connection.failure === 0 && !connection.isOutputFull) this.waitingAtLimit.add(connection);
      return;
    }
    resumeReading(connection);
  }

  /** A paused connection may have room again (an answer went out): read on, or first decode what its decoder holds. */
  private afterRoom(connection: ConnectionState): void {
    // Inside a data event or held decoding, settleReading decides when it ends.
    if (connection.isInData || this.mustWait(connection)) return;
    if (connection.decoder!.heldBytes() === 0) resumeReading(connection);
    else this.toResume.add(connection);
  }

  /** One request frame; its payload is bytes[payloadStart, payloadStart + payloadBytes), valid during this call. */
  private handleFrame(
    opcode: number,
    requestId: number,
    bytes: Uint8Array,
    payloadStart: number,
    payloadBytes: number,
  ): void {
    const connection = this.current!;
    if (connection.isClosed) return;
    if (this.admission.rateLimitEnabled) {
      const waitMs = this.admission.takeToken(connection.remoteAddress, this.responses.eventStartMs);
      if (waitMs > 0) {
        this.responses.unrecordedFrames++;
        this.responses.appendFrame(
          connection,
          opcode,
          FrameStatus.RATE_LIMITED,
          requestId,
          textEncoder.encode(`rate limited: retry in ${waitMs} ms`),
          true,
        );
        return;
      }
    }
    switch (opcode) {
      case Opcode.PING:
        this.responses.unrecordedFrames++;
        this.responses.appendFrame(connection, opcode, FrameStatus.OK, requestId, EMPTY_PAYLOAD, true);
        return;
      case Opcode.ECHO:
        this.responses.unrecordedFrames++;
        this.responses.appendRange(
          connection,
          opcode,
          FrameStatus.OK,
          requestId,
          bytes,
          payloadStart,
          payloadBytes,
          !connection.decoder!.payloadIsBuffered,
        );
        return;
      case Opcode.STATS:
        this.responses.unrecordedFrames++;
        this.responses.appendFrame(connection, opcode, FrameStatus.OK, requestId, this.statsPayload(), true);
        return;
    }
    if (this.runner.handles(opcode)) {
      if (this.isPastDeadline) {
        // Held until the deadline (see answerAtDeadline): answered as a running request is then, never started.
        this.responses.unrecordedFrames++;
        this.responses.appendFrame(connection, opcode, FrameStatus.TIMEOUT, requestId, this.shuttingDownMessage, true);
        return;
      }
      if (connection.inFlight >= this.maxInFlight) {
        // Read past the limit because the runner was saturated: answered busy without adding to what is out (and,
        // as for a busy answer from the runner, connections waiting at their limit read on).
        this.responses.unrecordedFrames++;
        this.stats.inc(Counter.poolRejected);
        if (this.waitingAtLimit.length > 0) this.waitingAtLimit.wakeAll(this.wakeWaiting);
        this.responses.appendFrame(connection, opcode, FrameStatus.BUSY, requestId, this.inFlightBusyMessage, true);
        return;
      }
      if (this.runner.runRange !== undefined) {
        // The runner copies the range before returning: no view of the chunk, nothing to keep.
        this.runner.runRange(
          opcode,
          bytes,
          payloadStart,
          payloadBytes,
          this.running.open(connection, opcode, requestId),
          this.onDone,
        );
        return;
      }
      const payloadEnd = payloadStart + payloadBytes;
      // The runner keeps the payload until done: a view of a chunk stays valid, the decoder's own buffer does not.
      const payload = connection.decoder!.payloadIsBuffered
        ? bytes.slice(payloadStart, payloadEnd)
        : bytes.subarray(payloadStart, payloadEnd);
      this.dispatch(connection, opcode, requestId, payload);
      return;
    }
    this.responses.unrecordedFrames++;
    this.responses.appendFrame(
      connection,
      opcode,
      FrameStatus.UNKNOWN_OPCODE,
      requestId,
      textEncoder.encode(`unknown opcode 0x${opcode.toString(16).padStart(2, "0")}`),
      true,
    );
  }

  private dispatch(connection: ConnectionState, opcode: number, requestId: number, payload: Uint8Array): void {
    this.runner.run(opcode, payload, this.running.open(connection, opcode, requestId), this.onDone);
  }

  private handleDone(token: number, status: number, result: Uint8Array): void {
    const running = this.running;
    const connection = running.connection[token];
    if (connection === null || connection === undefined) return; // a runner calling done twice: ignore the second
    const generation = running.generation[token]!;
    const requestId = running.requestId[token]!;
    const opcode = running.opcode[token]!;
    this.stats.requestDone((performance.now() - running.startMs[token]!) * 1000);
    running.release(token);
    if (connection.generation !== generation) {
      this.afterActivity(connection); // stale: only lets a graceful stop notice the finished task
      return;
    }
    connection.inFlight--;
    if (connection.isClosed) return;
    this.responses.appendFrame(connection, opcode, status, requestId, result, false);
    if (status === FrameStatus.BUSY && this.waitingAtLimit.length > 0) this.waitingAtLimit.wakeAll(this.wakeWaiting);
    if (connection.failure !== 0) {
      // The last answer owed before the connection-level error frame: send both now, then close.
      if (connection.inFlight === 0) this.sendFailure(connection);
      else if (!connection.isInData) this.toFlush.add(connection);
      return;
    }
    if (connection.isReadPaused) this.afterRoom(connection);
    if (!connection.isInData) this.toFlush.add(connection);
  }

  /** The STATS answer: the admin /stats snapshot as JSON (a few KiB; built only for STATS, off the PING/ECHO path). */
  private statsPayload(): Uint8Array {
    return textEncoder.encode(JSON.stringify(snapshot(this.context)));
  }

  /**
   * Framing lost: reading stops for good; the requests already accepted finish (bounded by pool.task_timeout_ms) and
   * their answers go out in order, then the connection-level error frame (request id 0), then the connection closes.
   */
  private failConnection(connection: ConnectionState, status: number): void {
    this.stats.inc(Counter.errorsProtocol);
    if (status === FrameStatus.TOO_LARGE) this.stats.inc(Counter.requestsTooLarge);
    if (connection.isClosed) return;
    connection.failure = status;
    pauseReading(connection);
    if (connection.inFlight === 0) this.sendFailure(connection);
    else this.writer.flushBatch(connection); // the inline answers of the frames before the bad one
  }

  /** Writes the connection-level error frame after everything owed, then closes once it is written. */
  private sendFailure(connection: ConnectionState): void {
    const message = connection.failure === FrameStatus.TOO_LARGE ? this.tooLargeMessage : this.badFrameMessage;
    this.responses.appendFrame(connection, 0, connection.failure, 0, message, true);
    this.writer.flushBatch(connection);
    if (connection.isClosed) return;
    connection.closeWhenFlushed = true;
    this.afterActivity(connection);
  }
}

function tooLargeMessage(maxFrameBytes: number): Uint8Array {
  return textEncoder.encode(
    `frame too large: the length field may be at most ${maxFrameBytes} (limits.max_request_bytes)`,
  );
}
