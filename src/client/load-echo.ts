// Raw TCP echo for the load tester: each message carries its sequence number; the echoed bytes are checked.
import type { LoadOptions } from "./options.ts";
import { Outcome, type LoadProtocol, type ResponseCodec, type ResponseSink } from "./protocol.ts";

/** Bytes at the start of a message that hold its sequence number (big-endian), when the message is that long. */
const STAMP_BYTES = 4;

/** Message k of a connection: a fixed byte pattern with k (mod 2^32) in its first 4 bytes. */
export function echoProtocol(options: LoadOptions): LoadProtocol {
  const sizeBytes = options.sizeBytes;
  const template = Buffer.allocUnsafe(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) template[i] = (i * 31 + 7) & 0xff;
  return {
    template,
    stamped: sizeBytes >= STAMP_BYTES,
    ordered: true,
    stamp(target, offset, requestId) {
      if (sizeBytes < STAMP_BYTES) return;
      target[offset] = requestId >>> 24;
      target[offset + 1] = (requestId >>> 16) & 0xff;
      target[offset + 2] = (requestId >>> 8) & 0xff;
      target[offset + 3] = requestId & 0xff;
    },
    newCodec: () => new EchoCodec(template),
  };
}

/** Counts `size` echoed bytes as one response and compares them with what was sent (memcmp for the body). */
export class EchoCodec implements ResponseCodec {
  readonly closeRequested = false;
  /** Position within the message being received. */
  private offset = 0;
  /** Sequence number of the message being received; the engine numbers requests the same way from 0. */
  private sequence = 0;
  private messageBad = false;

  constructor(private readonly template: Buffer) {}

  reset(): void {
    this.offset = 0;
    this.sequence = 0;
    this.messageBad = false;
  }

  feed(chunk: Buffer, sink: ResponseSink): boolean {
    const template = this.template;
    const sizeBytes = template.length;
    const stamped = sizeBytes >= STAMP_BYTES;
    const length = chunk.length;
    let pos = 0;
    while (pos < length) {
      let offset = this.offset;
      // stamp bytes one by one
      while (stamped && offset < STAMP_BYTES && pos < length) {
        const expected = (this.sequence >>> (24 - offset * 8)) & 0xff;
        if (chunk[pos] !== expected) this.messageBad = true;
        offset++;
        pos++;
      }
      const take = Math.min(sizeBytes - offset, length - pos);
      if (take > 0) {
        if (chunk.compare(template, offset, offset + take, pos, pos + take) !== 0) this.messageBad = true;
        offset += take;
        pos += take;
      }
      if (offset === sizeBytes) {
        sink.completeNext(this.messageBad ? Outcome.MISMATCH : Outcome.OK, 0);
        this.messageBad = false;
        this.sequence = (this.sequence + 1) >>> 0;
        offset = 0;
      }
      this.offset = offset;
    }
    return true;
  }

  finishOnClose(): void {
    this.reset();
  }
}
