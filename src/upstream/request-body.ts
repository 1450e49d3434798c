// A proxied request's body on its way to the server: bytes read in advance (small bodies) go with the head in one
// write; a stream is relayed as it arrives, chunked when its length is unknown, waiting whenever the socket is full.
import type { UpstreamConnection } from "./http-connection.ts";

/** What the relay needs from the exchange it sends for. */
export interface BodySink {
  /** Whether the exchange still sends on `connection` (false once it moved on, ended or was answered). */
  isSendingOn(connection: UpstreamConnection): boolean;
  /** Resolves once the connection has taken what it was last given. */
  writable(): Promise<void>;
  /** The whole body reached the socket. */
  bodySent(): void;
  /** The body cannot be sent: 413 (over limits.max_request_bytes) or 400 (the client's body broke off). */
  bodyFailed(status: number): void;
}

const LAST_CHUNK = "0\r\n\r\n";

/**
 * Relays `body` on `connection` (its head already written), at most `maxBodyBytes` (limits.max_request_bytes; the
 * client's Content-Length was checked against it before, a chunked body is counted here).
 */
export async function relayRequestBody(
  connection: UpstreamConnection,
  body: ReadableStream<Uint8Array>,
  isChunked: boolean,
  maxBodyBytes: number,
  sink: BodySink,
): Promise<void> {
  let reader: ReturnType<typeof body.getReader>;
  try {
    reader = body.getReader();
  } catch {
    sink.bodyFailed(400);
    return;
  }
  let sentBytes = 0;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (!sink.isSendingOn(connection)) {
        void reader.cancel().catch(() => {});
        return;
      }
      if (chunk.done) break;
      const bytes = chunk.value;
      if (bytes.byteLength === 0) continue;
      sentBytes += bytes.byteLength;
      if (sentBytes > maxBodyBytes) {
        void reader.cancel().catch(() => {});
        sink.bodyFailed(413);
        return;
      }
      if (!connection.write(isChunked ? chunkOf(bytes) : bytes)) await sink.writable();
      if (!sink.isSendingOn(connection)) return;
    }
    if (isChunked && !connection.write(LAST_CHUNK)) await sink.writable();
    if (sink.isSendingOn(connection)) sink.bodySent();
  } catch {
    // The client's body failed (it went away mid-upload): the server gets no more; nothing is owed.
    sink.bodyFailed(400);
  }
}

/** One chunk of chunked transfer coding: size line, data, CRLF (one buffer, so one write). */
function chunkOf(bytes: Uint8Array): Uint8Array {
  const sizeLine = `${bytes.byteLength.toString(16)}\r\n`;
  const out = Buffer.allocUnsafe(sizeLine.length + bytes.byteLength + 2);
  out.write(sizeLine, 0, "latin1");
  out.set(bytes, sizeLine.length);
  out[out.length - 2] = 0x0d;
  out[out.length - 1] = 0x0a;
  return out;
}

/** The head and a small body in one buffer, so they go out in one write. */
export function joinHead(head: string | Uint8Array, body: Uint8Array): Uint8Array {
  const headBytes = typeof head === "string" ? Buffer.from(head, "latin1") : head;
  const out = Buffer.allocUnsafe(headBytes.byteLength + body.byteLength);
  out.set(headBytes, 0);
  out.set(body, headBytes.byteLength);
  return out;
}
