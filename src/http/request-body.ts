// Request bodies: the length a request declares, and bodies of unknown length (Transfer-Encoding) read and discarded
// up to the size limit.

/**
 * The body length a request's Content-Length declares, as Bun's Headers give it: one number, or a field the client
 * repeated with equal values (Bun refuses unequal ones), joined as "4, 4" (RFC 9110 §8.6 lets it stand for one).
 */
export function declaredBodyBytes(contentLength: string): number {
  const comma = contentLength.indexOf(",");
  return Number(comma < 0 ? contentLength : contentLength.slice(0, comma));
}

/** Verdicts of readBodyWithin. */
export const BODY_WITHIN_LIMIT = 0;
export const BODY_TOO_LARGE = 1;
export const BODY_UNREADABLE = 2;

/**
 * Reads a request body and discards it, stopping as soon as it exceeds `maxBytes`; the bytes read are added to
 * `count.bodyBytesRead`. Never throws.
 */
export async function readBodyWithin(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  count: { bodyBytesRead: number },
): Promise<number> {
  const reader = body.getReader();
  let totalBytes = 0;
  try {
    // Each round consumes a chunk of the body; the loop ends at its end, over the limit, or on an error.
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return BODY_WITHIN_LIMIT;
      totalBytes += chunk.value.byteLength;
      count.bodyBytesRead += chunk.value.byteLength;
      if (totalBytes > maxBytes) {
        reader.cancel().catch(() => {}); // the rest is never read; the connection is closed after the 413
        return BODY_TOO_LARGE;
      }
    }
  } catch {
    return BODY_UNREADABLE;
  }
}
