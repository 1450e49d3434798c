// HPS/1 for the load tester: frames with per-request ids; responses matched by id in any order and checked.
import { FRAME_HEADER_BYTES, FrameDecoder, FrameStatus, Opcode, writeFrameHeader } from "../tcp/frame.ts";
import type { LoadOptions } from "./options.ts";
import { Outcome, type LoadProtocol, type ResponseCodec, type ResponseSink } from "./protocol.ts";

/** Responses larger than this (length field) lose the framing; STATS answers are the largest expected. */
const MAX_RESPONSE_FRAME_BYTES = 16 * 1024 * 1024;

export function hpsProtocol(options: LoadOptions): LoadProtocol {
  const payload = new Uint8Array(options.sizeBytes);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 131 + 17) & 0xff;
  const template = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(template, 0, payload.length, options.opcode, FrameStatus.OK, 0);
  template.set(payload, FRAME_HEADER_BYTES);
  const opcode = options.opcode;
  const maxFrameBytes = Math.max(MAX_RESPONSE_FRAME_BYTES, payload.length + 64);
  return {
    template,
    stamped: true,
    ordered: false,
    stamp(target, offset, requestId) {
      target[offset + 8] = requestId >>> 24;
      target[offset + 9] = (requestId >>> 16) & 0xff;
      target[offset + 10] = (requestId >>> 8) & 0xff;
      target[offset + 11] = requestId & 0xff;
    },
    newCodec: () => new HpsCodec(opcode, Buffer.from(payload), maxFrameBytes),
  };
}

/**
 * Decodes response frames and matches them by request id. A success must carry the request's opcode;
 * ECHO must return the payload and PING nothing. A frame with id 0 is a connection-level error.
 */
export class HpsCodec implements ResponseCodec {
  readonly closeRequested = false;
  private readonly decoder: FrameDecoder;
  private sink: ResponseSink | null = null;
  private readonly onFrame = (
    opcode: number,
    status: number,
    requestId: number,
    bytes: Uint8Array,
    payloadStart: number,
    payloadBytes: number,
  ): void => {
    const sink = this.sink!;
    if (requestId === 0) {
      sink.protocolError();
      return;
    }
    if (status !== FrameStatus.OK) {
      sink.completeId(requestId, Outcome.NON_OK, status);
      return;
    }
    sink.completeId(
      requestId,
      this.payloadMatches(opcode, bytes, payloadStart, payloadBytes) ? Outcome.OK : Outcome.MISMATCH,
      status,
    );
  };

  constructor(
    private readonly opcode: number,
    private readonly payload: Buffer,
    maxFrameBytes: number,
  ) {
    this.decoder = new FrameDecoder(maxFrameBytes);
  }

  private payloadMatches(opcode: number, bytes: Uint8Array, payloadStart: number, payloadBytes: number): boolean {
    if (opcode !== this.opcode) return false;
    if (opcode === Opcode.PING) return payloadBytes === 0;
    if (opcode === Opcode.ECHO)
      return (
        payloadBytes === this.payload.length &&
        this.payload.compare(bytes, payloadStart, payloadStart + payloadBytes) === 0
      );
    return true;
  }

  feed(chunk: Buffer, sink: ResponseSink): boolean {
    this.sink = sink;
    const status = this.decoder.pushRanges(chunk, this.onFrame);
    this.sink = null;
    if (status !== FrameStatus.OK) {
      sink.protocolError();
      return false;
    }
    return true;
  }

  finishOnClose(): void {
    this.reset();
  }

  reset(): void {
    this.decoder.reset();
  }
}
