// HPS/1 dispatch: decode frames, answer PING/ECHO/STATS inline, hand runner opcodes to the OpRunner, batch the responses.
import type { ServerContext } from "../context.ts";
import { copyRange } from "../memory/copy.ts";
import type { Admission } from "../net/admission.ts";
import type { OpDone, OpRunner } from "../pool/op-runner.ts";
import { snapshot } from "../stats/snapshot.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { type ConnectionState, pauseReading, resumeReading } from "./connection.ts";
import { EndOfTickBatch } from "./end-of-tick.ts";
import {
  EMPTY_PAYLOAD,
  FRAME_HEADER_BYTES,
  FrameStatus,
  Opcode,
  writeFrameHeader,
  type FrameRangeHandler,
} from "./frame.ts";
import type { WriteQueue } from "./write-queue.ts";

/** Payloads at least this large are written as their own view after the batched header instead of being copied. */
const LARGE_PAYLOAD_BYTES = 64 * 1024;
/** The list of connections waiting at their in-flight limit is compacted when it reaches this length (or twice the live ones). */
const MIN_COMPACT_ENTRIES = 64;
/** A batch is written out early once it holds this much, so one huge pipelined burst does not grow it without bound. */
const BATCH_FLUSH_BYTES = 256 * 1024;

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

  /** The connection whose chunk is being decoded (onFrame is one function for all connections, not a closure per call). */
  private current: ConnectionState | null = null;
  /** When the current data event began (performance.now()): every frame of the chunk arrived then; also the rate limiter's clock. */
  private eventStartMs = 0;
  /** Frames answered inline in this event whose responses have not been written yet, so their latency is not recorded yet. */
  private unrecordedFrames = 0;

  /** Requests on the runner, indexed by token; an index is reused only after its `done`. */
  private readonly entryConnection: (ConnectionState | null)[] = [];
  private readonly entryGeneration: number[] = [];
  private readonly entryRequestId: number[] = [];
  private readonly entryOpcode: number[] = [];
  private readonly entryStartMs: number[] = [];
  private readonly freeEntries: number[] = [];
  private runningTotal = 0;

  /** Connections with responses from the runner waiting to be written at the end of this tick. */
  private readonly toFlush: EndOfTickBatch;
  /** Paused connections whose decoder holds frames and that dropped below max_in_flight: decoded at the end of this tick. */
  private readonly toResume: EndOfTickBatch;
  /** Connections that stopped reading at max_in_flight (woken by a busy answer: see isAtInFlightLimit). */
  private readonly waitingAtLimit: ConnectionState[] = [];
  private readonly waitingGenerations: number[] = [];
  private compactWaitingAt = MIN_COMPACT_ENTRIES;

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
    this.onFrame = (opcode, _status, requestId, bytes, payloadStart, payloadBytes) => {
      this.handleFrame(opcode, requestId, bytes, payloadStart, payloadBytes);
      // At max_in_flight runner requests (inline answers are in the batch already), or with more output waiting than
      // the high-water mark, decode no further: the decoder keeps the rest of the chunk until there is room again
      // (settleReading, continueHeld), so one chunk cannot make the server hold more than one frame's answer past it.
      const connection = this.current!;
      if (this.isAtInFlightLimit(connection) || connection.queuedBytes + connection.batchBytes > this.writer.highWater)
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
    return this.runningTotal;
  }

  /** One data event: decode complete frames up to max_in_flight, answer what is inline, write the batch, pause at the limit. */
  onData(connection: ConnectionState, chunk: Uint8Array): void {
    // Framing was lost (reading stopped, but a chunk may have been read already): nothing after it means anything,
    // and it is not counted again.
    if (connection.failure !== 0) return;
    this.eventStartMs = performance.now();
    this.current = connection;
    const status = connection.decoder!.pushRanges(chunk, this.onFrame);
    this.current = null;
    if (status !== FrameStatus.OK) {
      this.failConnection(connection, status);
      this.recordInline();
      return;
    }
    if (!connection.isClosed) this.writer.flushBatch(connection);
    this.recordInline();
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
      this.eventStartMs = performance.now();
      this.current = connection;
      const status = decoder.resume(this.onFrame);
      this.current = null;
      if (status !== FrameStatus.OK) {
        this.failConnection(connection, status);
        this.recordInline();
        return;
      }
      if (!connection.isClosed) this.writer.flushBatch(connection);
      this.recordInline();
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
   * At the shutdown deadline: every request of `connection` still running is answered now with status 7 "server
   * shutting down" (its late result, if any, is dropped), then the batch is written. Returns the requests answered.
   */
  answerRunningAtShutdown(connection: ConnectionState): number {
    if (connection.isClosed || connection.inFlight === 0) return 0;
    let answered = 0;
    const generation = connection.generation;
    for (let token = 0; token < this.entryConnection.length; token++) {
      if (this.entryConnection[token] !== connection || this.entryGeneration[token] !== generation) continue;
      // Its done, when it comes, sees a generation no connection has and only frees the entry.
      this.entryGeneration[token] = -1;
      connection.inFlight--;
      answered++;
      this.appendFrame(
        connection,
        this.entryOpcode[token]!,
        FrameStatus.TIMEOUT,
        this.entryRequestId[token]!,
        this.shuttingDownMessage,
        true,
      );
    }
    if (connection.failure !== 0 && connection.inFlight === 0) this.sendFailure(connection);
    else this.writer.flushBatch(connection);
    return answered;
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
   * Lists a connection that stopped reading at its in-flight limit, once. Entries of connections closed since stay
   * until the list is compacted, which happens when it has doubled: it holds at most twice the open connections.
   */
  private addWaitingAtLimit(connection: ConnectionState): void {
    if (connection.isWaitingAtLimit) return;
    const waiting = this.waitingAtLimit;
    const generations = this.waitingGenerations;
    if (waiting.length >= this.compactWaitingAt) {
      let kept = 0;
      for (let i = 0; i < waiting.length; i++) {
        const listed = waiting[i]!;
        if (listed.generation !== generations[i] || !listed.isWaitingAtLimit) continue;
        waiting[kept] = listed;
        generations[kept++] = generations[i]!;
      }
      waiting.length = kept;
      generations.length = kept;
      this.compactWaitingAt = Math.max(MIN_COMPACT_ENTRIES, 2 * kept);
    }
    connection.isWaitingAtLimit = true;
    waiting.push(connection);
    generations.push(connection.generation);
  }

  /** The runner answered busy: connections waiting at their in-flight limit read on now (their frames get busy too). */
  private wakeWaitingAtLimit(): void {
    const waiting = this.waitingAtLimit;
    const generations = this.waitingGenerations;
    for (let i = 0; i < waiting.length; i++) {
      const connection = waiting[i]!;
      // Skipped: closed and reused since (the reset cleared its flag).
      if (connection.generation !== generations[i] || !connection.isWaitingAtLimit) continue;
      connection.isWaitingAtLimit = false;
      this.toResume.add(connection);
    }
    waiting.length = 0;
    generations.length = 0;
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
      else if (connection.failure === 0 && !connection.isOutputFull) this.addWaitingAtLimit(connection);
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
      const waitMs = this.admission.takeToken(connection.remoteAddress, this.eventStartMs);
      if (waitMs > 0) {
        this.unrecordedFrames++;
        this.appendFrame(
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
        this.unrecordedFrames++;
        this.appendFrame(connection, opcode, FrameStatus.OK, requestId, EMPTY_PAYLOAD, true);
        return;
      case Opcode.ECHO:
        this.unrecordedFrames++;
        this.appendRange(
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
        this.unrecordedFrames++;
        this.appendFrame(connection, opcode, FrameStatus.OK, requestId, this.statsPayload(), true);
        return;
    }
    if (this.runner.handles(opcode)) {
      if (connection.inFlight >= this.maxInFlight) {
        // Read past the limit because the runner was saturated: answered busy without adding to what is out.
        this.unrecordedFrames++;
        this.stats.inc(Counter.poolRejected);
        this.appendFrame(connection, opcode, FrameStatus.BUSY, requestId, this.inFlightBusyMessage, true);
        return;
      }
      if (this.runner.runRange !== undefined) {
        // The runner copies the range before returning: no view of the chunk, nothing to keep.
        this.runner.runRange(
          opcode,
          bytes,
          payloadStart,
          payloadBytes,
          this.openEntry(connection, opcode, requestId),
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
    this.unrecordedFrames++;
    this.appendFrame(
      connection,
      opcode,
      FrameStatus.UNKNOWN_OPCODE,
      requestId,
      textEncoder.encode(`unknown opcode 0x${opcode.toString(16).padStart(2, "0")}`),
      true,
    );
  }

  /**
   * Records the latency of the inline frames whose responses were just written: from the start of their data event
   * (when all of them arrived) to now. Responses are batched, so every frame of a chunk waits for the write that
   * carries it; that wait is its latency, and one clock read covers every frame in the write.
   */
  private recordInline(): void {
    const frames = this.unrecordedFrames;
    if (frames === 0) return;
    this.unrecordedFrames = 0;
    const micros = (performance.now() - this.eventStartMs) * 1000;
    for (let i = 0; i < frames; i++) this.stats.requestDone(micros);
  }

  private dispatch(connection: ConnectionState, opcode: number, requestId: number, payload: Uint8Array): void {
    this.runner.run(opcode, payload, this.openEntry(connection, opcode, requestId), this.onDone);
  }

  /** Records a request about to go to the runner; returns its token. */
  private openEntry(connection: ConnectionState, opcode: number, requestId: number): number {
    const token = this.freeEntries.length > 0 ? this.freeEntries.pop()! : this.entryConnection.length;
    this.entryConnection[token] = connection;
    this.entryGeneration[token] = connection.generation;
    this.entryRequestId[token] = requestId;
    this.entryOpcode[token] = opcode;
    this.entryStartMs[token] = performance.now();
    connection.inFlight++;
    this.runningTotal++;
    return token;
  }

  private handleDone(token: number, status: number, result: Uint8Array): void {
    const connection = this.entryConnection[token];
    if (connection === null || connection === undefined) return; // a runner calling done twice: ignore the second
    const generation = this.entryGeneration[token]!;
    const requestId = this.entryRequestId[token]!;
    const opcode = this.entryOpcode[token]!;
    this.stats.requestDone((performance.now() - this.entryStartMs[token]!) * 1000);
    this.entryConnection[token] = null;
    this.freeEntries.push(token);
    this.runningTotal--;
    if (connection.generation !== generation) {
      this.afterActivity(connection); // stale: only lets a graceful stop notice the finished task
      return;
    }
    connection.inFlight--;
    if (connection.isClosed) return;
    this.appendFrame(connection, opcode, status, requestId, result, false);
    if (status === FrameStatus.BUSY && this.waitingAtLimit.length > 0) this.wakeWaitingAtLimit();
    if (connection.failure !== 0) {
      // The last answer owed before the connection-level error frame: send both now, then close.
      if (connection.inFlight === 0) this.sendFailure(connection);
      else if (!connection.isInData) this.toFlush.add(connection);
      return;
    }
    if (connection.isReadPaused) this.afterRoom(connection);
    if (!connection.isInData) this.toFlush.add(connection);
  }

  /** Header into the batch; small payloads copied after it, large ones written as their own view. */
  private appendFrame(
    connection: ConnectionState,
    opcode: number,
    status: number,
    requestId: number,
    payload: Uint8Array,
    isStable: boolean,
  ): void {
    this.appendRange(connection, opcode, status, requestId, payload, 0, payload.length, isStable);
  }

  /** appendFrame for a payload given as bytes[payloadStart, payloadStart + payloadBytes). */
  private appendRange(
    connection: ConnectionState,
    opcode: number,
    status: number,
    requestId: number,
    bytes: Uint8Array,
    payloadStart: number,
    payloadBytes: number,
    isStable: boolean,
  ): void {
    if (payloadBytes >= LARGE_PAYLOAD_BYTES) {
      // reserve first: it may replace connection.batch, which must be read after it.
      const headerOffset = connection.reserve(FRAME_HEADER_BYTES);
      writeFrameHeader(connection.batch, headerOffset, payloadBytes, opcode, status, requestId);
      const payload =
        payloadStart === 0 && payloadBytes === bytes.length
          ? bytes
          : bytes.subarray(payloadStart, payloadStart + payloadBytes);
      if (this.writer.flushBatch(connection)) this.writer.send(connection, payload, isStable);
      this.recordInline();
      return;
    }
    const offset = connection.reserve(FRAME_HEADER_BYTES + payloadBytes);
    const batch = connection.batch;
    writeFrameHeader(batch, offset, payloadBytes, opcode, status, requestId);
    const target = offset + FRAME_HEADER_BYTES;
    copyRange(bytes, payloadStart, payloadBytes, batch, target);
    if (connection.batchBytes >= BATCH_FLUSH_BYTES) {
      this.writer.flushBatch(connection);
      this.recordInline();
    }
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
    this.appendFrame(connection, 0, connection.failure, 0, message, true);
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
