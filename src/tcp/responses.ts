// HPS/1 responses of one listener: frames built into the connection's batch buffer (a large payload is written as
// its own view after its header), written together at the end of the event, and the latency of inline answers,
// measured to the write that carries them.
import { copyRange } from "../memory/copy.ts";
import type { Stats } from "../stats/stats.ts";
import type { ConnectionState } from "./connection.ts";
import { FRAME_HEADER_BYTES, writeFrameHeader } from "./frame.ts";
import type { WriteQueue } from "./write-queue.ts";

/** Payloads at least this large are written as their own view after the batched header instead of being copied. */
const LARGE_PAYLOAD_BYTES = 64 * 1024;
/** A batch is written out early once it holds this much, so one huge pipelined burst does not grow it without bound. */
const BATCH_FLUSH_BYTES = 256 * 1024;

export class ResponseWriter {
  /** When the current data event began (performance.now()): every frame of its chunk arrived then. */
  eventStartMs = 0;
  /** Frames answered inline in this event whose responses have not been written yet (their latency is not known yet). */
  unrecordedFrames = 0;
  private readonly stats: Stats;
  private readonly writer: WriteQueue;

  constructor(stats: Stats, writer: WriteQueue) {
    this.stats = stats;
    this.writer = writer;
  }

  /** Header into the batch; small payloads copied after it, large ones written as their own view. */
  appendFrame(
    connection: ConnectionState,
    opcode: number,
    status: number,
    requestId: number,
    payload: Uint8Array,
    isStable: boolean,
  ): void {
    this.appendRange(connection, opcode, status, requestId, payload, 0, payload.length, isStable);
  }

  /**
   * appendFrame for a payload given as bytes[payloadStart, payloadStart + payloadBytes). `isStable`: those bytes stay
   * unchanged after this call, so what the kernel does not take at once may be kept as a view (else it is copied).
   */
  appendRange(
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
    copyRange(bytes, payloadStart, payloadBytes, batch, offset + FRAME_HEADER_BYTES);
    if (connection.batchBytes >= BATCH_FLUSH_BYTES) this.flush(connection);
  }

  /** Writes the connection's batch now and records the latency of the inline answers it carried. */
  flush(connection: ConnectionState): void {
    this.writer.flushBatch(connection);
    this.recordInline();
  }

  /**
   * Records the latency of the inline frames whose responses were just written: from the start of their data event
   * (when all of them arrived) to now. Responses are batched, so every frame of a chunk waits for the write that
   * carries it; that wait is its latency, and one clock read covers every frame in the write.
   */
  recordInline(): void {
    const frames = this.unrecordedFrames;
    if (frames === 0) return;
    this.unrecordedFrames = 0;
    const micros = (performance.now() - this.eventStartMs) * 1000;
    for (let i = 0; i < frames; i++) this.stats.requestDone(micros);
  }
}
