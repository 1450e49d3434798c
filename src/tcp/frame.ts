// HPS/1 codec: the 12-byte frame header, a one-shot encoder and a streaming decoder that never concatenates chunks.

export const FRAME_HEADER_BYTES = 12;
export const PROTOCOL_VERSION = 1;
/** Bytes of the header counted by the length field (version, opcode, status, request id). */
const LENGTH_COVERED_HEADER_BYTES = 8;
/** The length field itself. */
const LENGTH_FIELD_BYTES = 4;

export const Opcode = { PING: 0x00, ECHO: 0x01, HASH: 0x02, STATS: 0x03 } as const;
export const FrameStatus = {
  OK: 0,
  UNKNOWN_OPCODE: 1,
  TOO_LARGE: 2,
  BAD_FRAME: 3,
  BUSY: 4,
  RATE_LIMITED: 5,
  INTERNAL: 6,
  TIMEOUT: 7,
} as const;

/** Shared empty payload: frames without payload get this view instead of a new one. */
export const EMPTY_PAYLOAD: Uint8Array = new Uint8Array(0);

/** A decoder keeps partial frames in its own buffer; one larger than this is dropped on reset so idle connections stay small. */
const KEPT_PENDING_BYTES = 64 * 1024;
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
export function encodeFrame(opcode: number, status: number, requestId: number, payload: Uint8Array = EMPTY_PAYLOAD): Uint8Array {
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
export type FrameRangeHandler = (opcode: number, status: number, requestId: number, bytes: Uint8Array, payloadStart: number, payloadBytes: number) => void;

/** Streaming decoder: feed chunks; calls onFrame for every complete frame (payload is a view valid only during the call). */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  /** Partial frame carried between chunks; grows by doubling up to the largest allowed frame, then is reused. */
  private pending: Uint8Array = EMPTY_PAYLOAD;
  private pendingBytes = 0;
  /** Total bytes (length field + length) of the frame in `pending`, once its header is complete; 0 before. */
  private pendingFrameBytes = 0;
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
    this.viewHandler!(opcode, status, requestId, payloadBytes === 0 ? EMPTY_PAYLOAD : bytes.subarray(payloadStart, payloadStart + payloadBytes));

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Returns FrameStatus.OK, or TOO_LARGE / BAD_FRAME when the framing is lost (the caller answers with a connection-level error frame and closes). */
  push(chunk: Uint8Array, onFrame: FrameHandler): number {
    if (this.failure !== FrameStatus.OK) return this.failure;
    let offset = 0;
    const chunkBytes = chunk.length;
    if (this.pendingBytes > 0) {
      // At most one frame per chunk completes in the pending buffer: the adapter's extra call is paid once.
      this.viewHandler = onFrame;
      offset = this.continuePending(chunk, this.toView);
      this.viewHandler = null;
      if (offset < 0) return this.failure;
      if (this.pendingBytes > 0) return FrameStatus.OK;
    }
    // The loop of pushRanges, with a view per payload (kept apart so each call site stays monomorphic).
    const maxFrameBytes = this.maxFrameBytes;
    while (chunkBytes - offset >= FRAME_HEADER_BYTES) {
      const length = readUint32(chunk, offset);
      if (length < LENGTH_COVERED_HEADER_BYTES || chunk[offset + 4] !== PROTOCOL_VERSION) return this.fail(FrameStatus.BAD_FRAME);
      if (length > maxFrameBytes) return this.fail(FrameStatus.TOO_LARGE);
      const frameEnd = offset + LENGTH_FIELD_BYTES + length;
      if (frameEnd > chunkBytes) break;
      const payload = length === LENGTH_COVERED_HEADER_BYTES ? EMPTY_PAYLOAD : chunk.subarray(offset + FRAME_HEADER_BYTES, frameEnd);
      onFrame(chunk[offset + 5]!, (chunk[offset + 6]! << 8) | chunk[offset + 7]!, readUint32(chunk, offset + 8), payload);
      offset = frameEnd;
    }
    if (offset < chunkBytes) this.startPending(chunk, offset);
    return FrameStatus.OK;
  }

  /** As push, with each payload given as a range of a buffer instead of a view (the fast path: servers, load tester). */
  pushRanges(chunk: Uint8Array, onFrame: FrameRangeHandler): number {
    if (this.failure !== FrameStatus.OK) return this.failure;
    let offset = 0;
    const chunkBytes = chunk.length;
    if (this.pendingBytes > 0) {
      offset = this.continuePending(chunk, onFrame);
      if (offset < 0) return this.failure;
      if (this.pendingBytes > 0) return FrameStatus.OK;
    }
    const maxFrameBytes = this.maxFrameBytes;
    while (chunkBytes - offset >= FRAME_HEADER_BYTES) {
      const length = readUint32(chunk, offset);
      if (length < LENGTH_COVERED_HEADER_BYTES || chunk[offset + 4] !== PROTOCOL_VERSION) return this.fail(FrameStatus.BAD_FRAME);
      if (length > maxFrameBytes) return this.fail(FrameStatus.TOO_LARGE);
      const frameEnd = offset + LENGTH_FIELD_BYTES + length;
      if (frameEnd > chunkBytes) break;
      onFrame(chunk[offset + 5]!, (chunk[offset + 6]! << 8) | chunk[offset + 7]!, readUint32(chunk, offset + 8), chunk, offset + FRAME_HEADER_BYTES, length - LENGTH_COVERED_HEADER_BYTES);
      offset = frameEnd;
    }
    if (offset < chunkBytes) this.startPending(chunk, offset);
    return FrameStatus.OK;
  }

  /** Forgets any partial frame and a lost framing, for reuse on a new connection. */
  reset(): void {
    this.pendingBytes = 0;
    this.pendingFrameBytes = 0;
    this.failure = FrameStatus.OK;
    this.payloadIsBuffered = false;
    if (this.pending.length > KEPT_PENDING_BYTES) this.pending = EMPTY_PAYLOAD;
  }

  /** Bytes of an incomplete frame held now. */
  bufferedBytes(): number {
    return this.pendingBytes;
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
    return status;
  }

  /** Copies the unfinished tail of `chunk` into the pending buffer, sized from its header when the header is complete. */
  private startPending(chunk: Uint8Array, offset: number): void {
    const tailBytes = chunk.length - offset;
    if (tailBytes >= FRAME_HEADER_BYTES) {
      // The header was checked by the loop in push before it stopped for lack of payload.
      this.pendingFrameBytes = LENGTH_FIELD_BYTES + readUint32(chunk, offset);
      this.ensurePending(this.pendingFrameBytes);
    } else {
      this.pendingFrameBytes = 0;
      this.ensurePending(FRAME_HEADER_BYTES);
    }
    this.pending.set(tailBytes === chunk.length ? chunk : chunk.subarray(offset), 0);
    this.pendingBytes = tailBytes;
  }

  /** Feeds the start of `chunk` into the pending frame; returns how many bytes it took, or -1 when the header is bad. */
  private continuePending(chunk: Uint8Array, onFrame: FrameRangeHandler): number {
    let offset = 0;
    if (this.pendingFrameBytes === 0) {
      const headerTake = Math.min(FRAME_HEADER_BYTES - this.pendingBytes, chunk.length);
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
      this.ensurePending(this.pendingFrameBytes);
    }
    const take = Math.min(this.pendingFrameBytes - this.pendingBytes, chunk.length - offset);
    if (take > 0) {
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
    onFrame(pending[5]!, (pending[6]! << 8) | pending[7]!, readUint32(pending, 8), pending, FRAME_HEADER_BYTES, frameBytes - FRAME_HEADER_BYTES);
    this.payloadIsBuffered = false;
    return offset;
  }

  /** Keeps the existing bytes; grows by doubling (capped at the largest frame) when `bytes` do not fit. */
  private ensurePending(bytes: number): void {
    if (this.pending.length >= bytes) return;
    const largestFrameBytes = LENGTH_FIELD_BYTES + this.maxFrameBytes;
    let capacity = Math.max(this.pending.length * 2, INITIAL_PENDING_BYTES);
    while (capacity < bytes) capacity *= 2;
    const grown = new Uint8Array(Math.min(capacity, Math.max(largestFrameBytes, bytes)));
    if (this.pendingBytes > 0) grown.set(this.pending.subarray(0, this.pendingBytes), 0);
    this.pending = grown;
  }
}
