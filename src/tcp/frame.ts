// HPS/1 codec: the 12-byte frame header, a one-shot encoder and a streaming decoder that never concatenates chunks.
import { FrameStatus, Opcode } from "../protocol/hps1.ts";

export const FRAME_HEADER_BYTES = 12;
export const PROTOCOL_VERSION = 1;
/** Bytes of the header counted by the length field (version, opcode, status, request id). */
const LENGTH_COVERED_HEADER_BYTES = 8;
/** The length field itself. */
const LENGTH_FIELD_BYTES = 4;

/** The status codes and opcodes are defined once in src/protocol/hps1.ts (the pool uses them without src/tcp). */
export { FrameStatus, Opcode };

/** Shared empty payload: frames without payload get this view instead of a new one. */
export const EMPTY_PAYLOAD: Uint8Array = new Uint8Array(0);

/** A decoder keeps partial frames in its own buffer; one larger than this is dropped on reset so idle connections stay small. */
const KEPT_PENDING_BYTES = 64 * 1024;
/** First size of the buffer; it then doubles as bytes arrive (never sized from a length field alone). */
const INITIAL_PENDING_BYTES = 256;

/** Writes a 12-byte header at `offset` of `target`. */
export function writeFrameHeader(
  target: Uint8Array,
  offset: number,
  payloadBytes: number,
  opcode: number,
  status: number,
  requestId: number,
): void {
  const length = payloadBytes + LENGTH_COVERED_HEADER_BYTES;
  target[offset] = length >>> 24;
  target[offset + 1] = length >>> 16;
  target[offset + 2] = length >>> 8;
  target[offset + 3] = length;
  target[offset + 4] = PROTOCOL_VERSION;
  target[offset + 5] = opcode;
  target[offset + 6] = status >>> 8;
  target[offset + 7] = status;
  target[offset + 8] = requestId >>> 24;
  target[offset + 9] = requestId >>> 16;
  target[offset + 10] = requestId >>> 8;
  target[offset + 11] = requestId;
}

/** Header + payload in one new buffer (for clients and tests; the server avoids it on hot paths). */
export function encodeFrame(
  opcode: number,
  status: number,
  requestId: number,
  payload: Uint8Array = EMPTY_PAYLOAD,
): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(frame, 0, payload.length, opcode, status, requestId);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

/** Gets each decoded frame with its payload as a view (valid only during the call). */
export type FrameHandler = (opcode: number, status: number, requestId: number, payload: Uint8Array) => void;

/**
 * Gets each decoded frame with its payload as a range: `bytes[payloadStart, payloadStart + payloadBytes)`, valid
 * only during the call. No view object is made per frame, which is most of a small frame's decoding cost.
 */
export type FrameRangeHandler = (
  opcode: number,
  status: number,
  requestId: number,
  bytes: Uint8Array,
  payloadStart: number,
  payloadBytes: number,
) => void;

/**
 * Streaming decoder: feed chunks; calls onFrame for every complete frame (payload is a view valid only during the call).
 * A handler may call `stop()` to end decoding after its frame: the rest of the chunk is kept (one copy) and decoded
 * by `resume`, so a caller can bound the work a single chunk starts (backpressure).
 */
export class FrameDecoder {
  /** limits.max_request_bytes when this decoder was made (a reload gives new connections a decoder with the new one). */
  readonly maxFrameBytes: number;
  /**
   * Partial frame carried between chunks, at [0, pendingBytes); or, after stop(), the undecoded bytes at
   * [heldStart, heldEnd). Grows by doubling as bytes arrive (capped at the frame being completed), then is reused.
   */
  private pending: Uint8Array = EMPTY_PAYLOAD;
  private pendingBytes = 0;
  /** Total bytes (length field + length) of the frame in `pending`, once its header is complete; 0 before. */
  private pendingFrameBytes = 0;
  /** Undecoded bytes kept by stop(), waiting for resume; heldStart === heldEnd when none. Never set together with pendingBytes. */
  private heldStart = 0;
  private heldEnd = 0;
  /** Set by stop() from inside onFrame; the decoding loop ends after that frame. */
  private isStopRequested = false;
  /** Sticky: once framing is lost every later push returns the same status. */
  private failure: number = FrameStatus.OK;
  /**
   * True while onFrame runs with a payload that lives in the decoder's own buffer (overwritten by later chunks);
   * false when the payload is a view into the chunk passed to push. Callers that keep a payload past onFrame copy it only when true.
   */
  payloadIsBuffered = false;
  /** push's handler while a frame completes in the pending buffer (continuePending speaks ranges; toView makes the view). */
  private viewHandler: FrameHandler | null = null;
  private readonly toView: FrameRangeHandler = (opcode, status, requestId, bytes, payloadStart, payloadBytes) =>
    this.viewHandler!(
      opcode,
      status,
      requestId,
      payloadBytes === 0 ? EMPTY_PAYLOAD : bytes.subarray(payloadStart, payloadStart + payloadBytes),
    );

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Returns FrameStatus.OK, or TOO_LARGE / BAD_FRAME when the framing is lost (the caller answers with a connection-level error frame and closes). */
  push(chunk: Uint8Array, onFrame: FrameHandler): number {
    if (this.failure !== FrameStatus.OK) return this.failure;
    if (this.heldEnd > this.heldStart) return this.appendHeld(chunk);
    let offset = 0;
    const chunkBytes = chunk.length;
    if (this.pendingBytes > 0) {
      // At most one frame per chunk completes in the pending buffer: the adapter's extra call is paid once.
      this.viewHandler = onFrame;
      offset = this.continuePending(chunk, this.toView);
      this.viewHandler = null;
      if (offset < 0) return this.failure;
      if (this.isStopRequested) return this.hold(chunk, offset);
      if (this.pendingBytes > 0) return FrameStatus.OK;
    }
    // The loop of pushRanges, with a view per payload. Kept apart on purpose: with push as an adapter over pushRanges,
    // a process that uses both makes pushRanges' onFrame call site polymorphic (about twice as slow a chunk in
    // bench/micro/frame.bench.ts).
    while (chunkBytes - offset >= FRAME_HEADER_BYTES) {
      const length = readUint32(chunk, offset);
      const verdict = this.checkHeader(length, chunk[offset + 4]!);
      if (verdict !== FrameStatus.OK) return this.fail(verdict);
      const frameEnd = offset + LENGTH_FIELD_BYTES + length;
      if (frameEnd > chunkBytes) break;
      const payload =
        length === LENGTH_COVERED_HEADER_BYTES ? EMPTY_PAYLOAD : chunk.subarray(offset + FRAME_HEADER_BYTES, frameEnd);
      onFrame(
        chunk[offset + 5]!,
        (chunk[offset + 6]! << 8) | chunk[offset + 7]!,
        readUint32(chunk, offset + 8),
        payload,
      );
      offset = frameEnd;
      if (this.isStopRequested) return this.hold(chunk, offset);
    }
    if (offset < chunkBytes) this.startPending(chunk, offset);
    return FrameStatus.OK;
  }

  /** As push, with each payload given as a range of a buffer instead of a view (the fast path: servers, load tester). */
  pushRanges(chunk: Uint8Array, onFrame: FrameRangeHandler): number {
    if (this.failure !== FrameStatus.OK) return this.failure;
    if (this.heldEnd > this.heldStart) return this.appendHeld(chunk);
    let offset = 0;
    const chunkBytes = chunk.length;
    if (this.pendingBytes > 0) {
      offset = this.continuePending(chunk, onFrame);
      if (offset < 0) return this.failure;
      if (this.isStopRequested) return this.hold(chunk, offset);
      if (this.pendingBytes > 0) return FrameStatus.OK;
    }
    while (chunkBytes - offset >= FRAME_HEADER_BYTES) {
      const length = readUint32(chunk, offset);
      const verdict = this.checkHeader(length, chunk[offset + 4]!);
      if (verdict !== FrameStatus.OK) return this.fail(verdict);
      const frameEnd = offset + LENGTH_FIELD_BYTES + length;
      if (frameEnd > chunkBytes) break;
      onFrame(
        chunk[offset + 5]!,
        (chunk[offset + 6]! << 8) | chunk[offset + 7]!,
        readUint32(chunk, offset + 8),
        chunk,
        offset + FRAME_HEADER_BYTES,
        length - LENGTH_COVERED_HEADER_BYTES,
      );
      offset = frameEnd;
      if (this.isStopRequested) return this.hold(chunk, offset);
    }
    if (offset < chunkBytes) this.startPending(chunk, offset);
    return FrameStatus.OK;
  }

  /**
   * Called from onFrame: decoding ends after this frame. The undecoded rest of the chunk is copied once into the
   * decoder's buffer; `resume` decodes it. Until then push and pushRanges only append chunks to it (the caller is
   * expected to stop reading, so that stays bounded).
   */
  stop(): void {
    this.isStopRequested = true;
  }

  /**
   * Decodes the bytes kept by stop(), as pushRanges would (payloads live in the decoder's buffer: payloadIsBuffered
   * is true), until they are used up or onFrame stops again. An unfinished frame at their end stays pending for the
   * next push. Returns FrameStatus.OK, or TOO_LARGE / BAD_FRAME when the framing is lost.
   */
  resume(onFrame: FrameRangeHandler): number {
    if (this.failure !== FrameStatus.OK) return this.failure;
    const end = this.heldEnd;
    let offset = this.heldStart;
    if (offset === end) return FrameStatus.OK;
    const bytes = this.pending;
    this.payloadIsBuffered = true;
    while (end - offset >= FRAME_HEADER_BYTES) {
      const length = readUint32(bytes, offset);
      const verdict = this.checkHeader(length, bytes[offset + 4]!);
      if (verdict !== FrameStatus.OK) return this.fail(verdict);
      const frameEnd = offset + LENGTH_FIELD_BYTES + length;
      if (frameEnd > end) break;
      onFrame(
        bytes[offset + 5]!,
        (bytes[offset + 6]! << 8) | bytes[offset + 7]!,
        readUint32(bytes, offset + 8),
        bytes,
        offset + FRAME_HEADER_BYTES,
        length - LENGTH_COVERED_HEADER_BYTES,
      );
      offset = frameEnd;
      if (this.isStopRequested) {
        this.isStopRequested = false;
        this.payloadIsBuffered = false;
        this.heldStart = offset === end ? 0 : offset;
        this.heldEnd = offset === end ? 0 : end;
        return FrameStatus.OK;
      }
    }
    this.payloadIsBuffered = false;
    this.heldStart = 0;
    this.heldEnd = 0;
    const restBytes = end - offset;
    if (restBytes > 0) {
      // The unfinished last frame becomes the pending frame (its header, when complete, was checked above).
      bytes.copyWithin(0, offset, end);
      this.pendingBytes = restBytes;
      this.pendingFrameBytes = restBytes >= FRAME_HEADER_BYTES ? LENGTH_FIELD_BYTES + readUint32(bytes, 0) : 0;
    }
    return FrameStatus.OK;
  }

  /** Bytes kept by stop() and not decoded yet. */
  heldBytes(): number {
    return this.heldEnd - this.heldStart;
  }

  /** Forgets any partial frame, held bytes and a lost framing, for reuse on a new connection; drops a large buffer. */
  reset(): void {
    this.pendingBytes = 0;
    this.pendingFrameBytes = 0;
    this.heldStart = 0;
    this.heldEnd = 0;
    this.isStopRequested = false;
    this.failure = FrameStatus.OK;
    this.payloadIsBuffered = false;
    if (this.pending.length > KEPT_PENDING_BYTES) this.pending = EMPTY_PAYLOAD;
  }

  /** Bytes received and not decoded yet: an incomplete frame, plus what stop() kept. */
  bufferedBytes(): number {
    return this.pendingBytes + this.heldEnd - this.heldStart;
  }

  /** Memory the decoder's buffer takes now (for gauges): grows only with bytes that really arrived. */
  capacityBytes(): number {
    return this.pending.length;
  }

  private checkHeader(length: number, version: number): number {
    if (length < LENGTH_COVERED_HEADER_BYTES || version !== PROTOCOL_VERSION) return FrameStatus.BAD_FRAME;
    if (length > this.maxFrameBytes) return FrameStatus.TOO_LARGE;
    return FrameStatus.OK;
  }

  private fail(status: number): number {
    this.failure = status;
    this.pendingBytes = 0;
    this.pendingFrameBytes = 0;
    this.heldStart = 0;
    this.heldEnd = 0;
    this.isStopRequested = false;
    this.payloadIsBuffered = false;
    return status;
  }

  /** After stop(): keeps chunk[offset, end) for resume (one copy, whatever number of frames it holds). */
  private hold(chunk: Uint8Array, offset: number): number {
    this.isStopRequested = false;
    const restBytes = chunk.length - offset;
    if (restBytes === 0) return FrameStatus.OK;
    // Nothing is pending here (a frame just completed), so the buffer's contents need not be kept.
    if (this.pending.length < restBytes) this.pending = new Uint8Array(restBytes);
    this.pending.set(chunk.subarray(offset), 0);
    this.heldStart = 0;
    this.heldEnd = restBytes;
    return FrameStatus.OK;
  }

  /** A chunk that arrived while bytes are held: appended to them (decoded by resume, in order). */
  private appendHeld(chunk: Uint8Array): number {
    const heldBytes = this.heldEnd - this.heldStart;
    if (this.heldEnd + chunk.length > this.pending.length) {
      const neededBytes = heldBytes + chunk.length;
      let target = this.pending;
      if (neededBytes > target.length) {
        let capacity = target.length * 2;
        while (capacity < neededBytes) capacity *= 2;
        target = new Uint8Array(capacity);
      }
      target.set(this.pending.subarray(this.heldStart, this.heldEnd), 0);
      this.pending = target;
      this.heldStart = 0;
      this.heldEnd = heldBytes;
    }
    this.pending.set(chunk, this.heldEnd);
    this.heldEnd += chunk.length;
    return FrameStatus.OK;
  }

  /** Copies the unfinished tail of `chunk` into the pending buffer (room for the bytes present only, not the whole frame). */
  private startPending(chunk: Uint8Array, offset: number): void {
    const tailBytes = chunk.length - offset;
    // A complete header was checked by the loop in push before it stopped for lack of payload.
    this.pendingFrameBytes = tailBytes >= FRAME_HEADER_BYTES ? LENGTH_FIELD_BYTES + readUint32(chunk, offset) : 0;
    this.ensurePending(tailBytes);
    this.pending.set(tailBytes === chunk.length ? chunk : chunk.subarray(offset), 0);
    this.pendingBytes = tailBytes;
  }

  /** Feeds the start of `chunk` into the pending frame; returns how many bytes it took, or -1 when the header is bad. */
  private continuePending(chunk: Uint8Array, onFrame: FrameRangeHandler): number {
    let offset = 0;
    if (this.pendingFrameBytes === 0) {
      const headerTake = Math.min(FRAME_HEADER_BYTES - this.pendingBytes, chunk.length);
      this.ensurePending(this.pendingBytes + headerTake);
      this.pending.set(headerTake === chunk.length ? chunk : chunk.subarray(0, headerTake), this.pendingBytes);
      this.pendingBytes += headerTake;
      offset = headerTake;
      if (this.pendingBytes < FRAME_HEADER_BYTES) return offset;
      const length = readUint32(this.pending, 0);
      const check = this.checkHeader(length, this.pending[4]!);
      if (check !== FrameStatus.OK) {
        this.fail(check);
        return -1;
      }
      this.pendingFrameBytes = LENGTH_FIELD_BYTES + length;
    }
    const take = Math.min(this.pendingFrameBytes - this.pendingBytes, chunk.length - offset);
    if (take > 0) {
      this.ensurePending(this.pendingBytes + take);
      this.pending.set(chunk.subarray(offset, offset + take), this.pendingBytes);
      this.pendingBytes += take;
      offset += take;
    }
    if (this.pendingBytes < this.pendingFrameBytes) return offset;
    const pending = this.pending;
    const frameBytes = this.pendingFrameBytes;
    this.pendingBytes = 0;
    this.pendingFrameBytes = 0;
    this.payloadIsBuffered = true;
    onFrame(
      pending[5]!,
      (pending[6]! << 8) | pending[7]!,
      readUint32(pending, 8),
      pending,
      FRAME_HEADER_BYTES,
      frameBytes - FRAME_HEADER_BYTES,
    );
    this.payloadIsBuffered = false;
    return offset;
  }

  /**
   * Room for `bytes` received bytes of the pending frame, keeping those already there. Grows by doubling, capped at
   * the frame's size once its header is known: memory follows the bytes that arrived, not what a length field claims.
   */
  private ensurePending(bytes: number): void {
    if (this.pending.length >= bytes) return;
    const capBytes = this.pendingFrameBytes > 0 ? this.pendingFrameBytes : LENGTH_FIELD_BYTES + this.maxFrameBytes;
    let capacity = Math.max(this.pending.length * 2, INITIAL_PENDING_BYTES);
    while (capacity < bytes) capacity *= 2;
    const grown = new Uint8Array(Math.min(capacity, Math.max(capBytes, bytes)));
    if (this.pendingBytes > 0) grown.set(this.pending.subarray(0, this.pendingBytes), 0);
    this.pending = grown;
  }
}
