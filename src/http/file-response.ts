// The response for one representation of a file: preconditions (304/412), ranges (206, multipart, 416), or the whole.
import type { Config } from "../config/schema.ts";
import {
  PRECONDITION_PASS,
  RANGE_UNSATISFIABLE,
  evaluatePreconditions,
  ifRangeMatches,
  parseRange,
  type ByteRange,
  type PreconditionHeaders,
} from "./conditional.ts";
import type { Representation } from "./file-cache.ts";
import { readOrNull } from "./representation.ts";
import { errorAnswer, type ResponseSummary } from "./status.ts";

/** Bytes read from a file slice per stream chunk (multipart ranges of a file served from disk). */
const STREAM_CHUNK_BYTES = 1024 * 1024;
const encoder = new TextEncoder();
const VARY: Record<string, string> = { Vary: "Accept-Encoding" };

/** Answers GET/HEAD for a chosen representation; one per site (it holds the multipart boundary and scratch state). */
export class FileResponder {
  private readonly maxRanges: number;
  private readonly sendfile: boolean;
  private readonly boundary = `hps-${crypto.randomUUID().replaceAll("-", "")}`;
  /** The request's precondition headers, read into this one object per request. */
  private readonly conditions: PreconditionHeaders = {
    ifMatch: null,
    ifUnmodifiedSince: null,
    ifNoneMatch: null,
    ifModifiedSince: null,
  };

  constructor(settings: Pick<Config["http"], "max_ranges" | "sendfile">) {
    this.maxRanges = settings.max_ranges;
    this.sendfile = settings.sendfile;
  }

  /** The answer to a GET (or HEAD: same headers, no body) for `representation`, reported into `summary`. */
  respond(headers: Headers, representation: Representation, isHead: boolean, summary: ResponseSummary): Response {
    const conditions = this.conditions;
    conditions.ifMatch = headers.get("if-match");
    conditions.ifUnmodifiedSince = headers.get("if-unmodified-since");
    conditions.ifNoneMatch = headers.get("if-none-match");
    conditions.ifModifiedSince = headers.get("if-modified-since");
    const range = headers.get("range");
    if (
      conditions.ifMatch !== null ||
      conditions.ifUnmodifiedSince !== null ||
      conditions.ifNoneMatch !== null ||
      conditions.ifModifiedSince !== null
    ) {
      const verdict = evaluatePreconditions(conditions, representation.etag, representation.lastModifiedSeconds);
      if (verdict === 304) {
        summary.set(304, 0);
        return cloneResponse(representation.notModifiedResponse);
      }
      // 412 varies with Accept-Encoding like the 200 and 304 (each representation has its own ETag).
      if (verdict !== PRECONDITION_PASS)
        return errorAnswer(summary, verdict, isHead, representation.negotiates ? VARY : undefined);
    }
    if (range !== null) {
      const ifRange = headers.get("if-range");
      if (ifRange === null || ifRangeMatches(ifRange, representation.etag, representation.lastModifiedSeconds)) {
        const ranges = parseRange(range, representation.size, this.maxRanges);
        if (ranges === RANGE_UNSATISFIABLE) {
          const extra: Record<string, string> = {
            "Content-Range": `bytes */${representation.size}`,
            "Accept-Ranges": "bytes",
          };
          if (representation.negotiates) extra.Vary = "Accept-Encoding"; // each representation has its own size
          return errorAnswer(summary, 416, isHead, extra);
        }
        if (typeof ranges !== "number") return this.partial(representation, ranges, isHead, summary);
      }
    }
    const prebuilt = representation.fullResponse;
    if (prebuilt !== null) {
      summary.set(200, isHead ? 0 : representation.size);
      return cloneResponse(prebuilt);
    }
    const body = this.sendfile ? Bun.file(representation.filePath) : readOrNull(representation.filePath);
    if (body === null) return errorAnswer(summary, 404, isHead); // removed since its metadata was cached
    summary.set(200, isHead ? 0 : representation.size);
    return new Response(body, representation.fullInit);
  }

  /** 206 with one range, or multipart/byteranges for several. */
  private partial(
    representation: Representation,
    ranges: ByteRange[],
    isHead: boolean,
    summary: ResponseSummary,
  ): Response {
    const headers = new Headers(representation.headers);
    if (ranges.length === 1) {
      const { start, end } = ranges[0]!;
      headers.set("Content-Range", `bytes ${start}-${end}/${representation.size}`);
      summary.set(206, isHead ? 0 : end - start + 1);
      const body =
        representation.body !== null
          ? representation.body.subarray(start, end + 1)
          : Bun.file(representation.filePath).slice(start, end + 1);
      return new Response(body, { status: 206, headers });
    }
    const contentType = headers.get("Content-Type")!;
    headers.set("Content-Type", `multipart/byteranges; boundary=${this.boundary}`);
    const parts: (Uint8Array | Blob)[] = [];
    let total = 0;
    const file = representation.body === null ? Bun.file(representation.filePath) : null;
    for (const { start, end } of ranges) {
      const head = encoder.encode(
        `\r\n--${this.boundary}\r\nContent-Type: ${contentType}\r\nContent-Range: bytes ${start}-${end}/${representation.size}\r\n\r\n`,
      );
      parts.push(head);
      parts.push(file === null ? representation.body!.subarray(start, end + 1) : file.slice(start, end + 1));
      total += head.length + end - start + 1;
    }
    const tail = encoder.encode(`\r\n--${this.boundary}--\r\n`);
    parts.push(tail);
    total += tail.length;
    summary.set(206, isHead ? 0 : total);
    if (file === null) return new Response(concatBytes(parts as Uint8Array[], total), { status: 206, headers });
    // A Blob made of file slices comes out empty in Bun 1.4.5, so file-backed parts are streamed chunk by chunk.
    headers.set("Content-Length", String(total));
    return new Response(isHead ? null : streamParts(parts), { status: 206, headers });
  }
}

/** The parts laid end to end in one buffer of `total` bytes. */
function concatBytes(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A stream of byte parts and file slices, reading each slice in bounded chunks as the client takes them. */
function streamParts(parts: readonly (Uint8Array | Blob)[]): ReadableStream<Uint8Array> {
  let index = 0;
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      const part = parts[index];
      if (part === undefined) {
        controller.close();
        return;
      }
      if (part instanceof Uint8Array) {
        index++;
        controller.enqueue(part as Uint8Array<ArrayBuffer>); // part headers from TextEncoder: never shared memory
        return;
      }
      const end = Math.min(offset + STREAM_CHUNK_BYTES, part.size);
      controller.enqueue(await part.slice(offset, end).bytes());
      offset = end;
      if (offset >= part.size) {
        index++;
        offset = 0;
      }
    },
  });
}

/** Response.clone(); bun-types declares its result as undici's Response, which is the same object at run time. */
function cloneResponse(response: Response): Response {
  return response.clone() as unknown as Response;
}
