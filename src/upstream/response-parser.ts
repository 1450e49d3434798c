// HTTP/1.1 response parser for upstream connections (RFC 9112): status line, header fields, and the body framed by
// Content-Length, chunked coding or the connection's close; response after response on one connection.
//
// Measured against Bun's native llhttp binding (native-parser.ts, bench/micro/upstream.bench.ts): this one makes no
// native-to-JavaScript calls per event and hands large pieces of body on as views of the received chunk (or the chunk
// itself) instead of copies; it is checked against llhttp response for response in
// test/upstream/response-parser.test.ts. It is strict where framing is at stake (RFC 9112 §6.3): conflicting
// Content-Length values, a malformed chunk size, a folded or malformed header line, or a head over MAX_HEAD_BYTES are
// errors, and the connection is not reused.

import { equalsIgnoringCase } from "./ascii.ts";

/** What the parser reports. */
export interface ResponseEvents {
  /**
   * The status line and headers are in. `headers` alternates names and values (latin1 strings, as sent). Return
   * true when the response has no body whatever its headers say (the answer to HEAD).
   */
  onHead(status: number, statusText: string, headers: string[], keepAlive: boolean, upgrade: boolean): boolean;
  /**
   * A piece of the body (chunked framing removed): the received chunk itself when it is all body, else a view of it
   * or, for a small piece, a copy (see bodyPiece). Never changed by the parser afterwards.
   */
  onBody(chunk: Uint8Array): void;
  /** The response is complete. */
  onComplete(): void;
}

/** Why bytes are not an acceptable response (a sentence for the log); null when they are. */
export type ParseError = string | null;

/** Longest status line and header section accepted (nginx's large_client_header_buffers is 4 × 8 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Bytes decoded first when looking for the end of a head. */
const HEAD_PROBE_BYTES = 8192;
/** Longest chunk-size line (with extensions) accepted. */
const MAX_CHUNK_LINE_BYTES = 4096;
/** Hex digits in a chunk size: 13 keep it exact (2^52). */
const MAX_CHUNK_SIZE_DIGITS = 13;

const CR = 13;
const LF = 10;

const State = {
  /** Waiting for (the rest of) a status line and header section. */
  HEAD: 0,
  /** Content-Length body: `remaining` bytes to come. */
  LENGTH: 1,
  /** Chunked: reading a chunk-size line. */
  CHUNK_SIZE: 2,
  /** Chunked: `remaining` bytes of chunk data to come. */
  CHUNK_DATA: 3,
  /** Chunked: the CRLF after chunk data. */
  CHUNK_DATA_END: 4,
  /** Chunked: trailer fields after the last chunk, until an empty line. */
  TRAILERS: 5,
  /** Body delimited by the connection's close. */
  UNTIL_CLOSE: 6,
  /** A 101 response: what follows belongs to another protocol. */
  UPGRADED: 7,
  /** An error was reported; nothing more is parsed. */
  FAILED: 8,
} as const;

/** Header lines from lastIndex on: token ":" value, CRLF between lines (the head's final CRLF CRLF is cut off). */
const FIELD_LINES = /(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\0\r\n]*(?:\r\n(?=.)|$))*/sy;

/** Says what is wrong with the header line at `at` (where FIELD_LINES stopped). */
function describeFieldLine(head: string, at: number): string {
  let lineStart = head.lastIndexOf("\r\n", at - 1);
  lineStart = lineStart < 0 ? 0 : lineStart + 2;
  const first = head.charCodeAt(lineStart);
  if (first === 32 || first === 9) return "a folded header line (obs-fold)";
  const lineEnd = head.indexOf("\r\n", lineStart);
  const line = head.slice(lineStart, lineEnd < 0 ? head.length : lineEnd);
  const colon = line.indexOf(":");
  if (colon < 0) return "a header line without a colon";
  if (/[\0\r\n]/.test(line)) return "a header value with a NUL, CR or LF";
  return `a malformed header name: ${JSON.stringify(line.slice(0, Math.min(colon, 40)))}`;
}

export class ResponseParser {
  private readonly events: ResponseEvents;
  private state: number = State.HEAD;
  /** Bytes still to come in the current length-delimited body or chunk. */
  private remaining = 0;
  /** An incomplete head or chunk-size/trailer line carried over from earlier chunks (latin1 text). */
  private pending = "";
  private isClosed = false;

  constructor(events: ResponseEvents) {
    this.events = events;
  }

  /** Parses the bytes received; the events fire during the call. Returns null, or why the bytes are not HTTP. */
  execute(data: Uint8Array): ParseError {
    let offset = 0;
    const length = data.byteLength;
    while (offset < length && !this.isClosed) {
      switch (this.state) {
        case State.HEAD: {
          const next = this.readHead(data, offset);
          if (typeof next === "string") return this.fail(next);
          if (next < 0) return null; // the head continues in the next chunk
          offset = next;
          break;
        }
        case State.LENGTH: {
          const take = Math.min(this.remaining, length - offset);
          this.remaining -= take;
          this.events.onBody(bodyPiece(data, offset, offset + take));
          offset += take;
          if (this.remaining === 0) this.complete();
          break;
        }
        case State.CHUNK_DATA: {
          const take = Math.min(this.remaining, length - offset);
          this.remaining -= take;
          this.events.onBody(bodyPiece(data, offset, offset + take));
          offset += take;
          if (this.remaining === 0) this.state = State.CHUNK_DATA_END;
          break;
        }
        case State.CHUNK_SIZE:
        case State.CHUNK_DATA_END:
        case State.TRAILERS: {
          const next = this.readChunkLine(data, offset);
          if (typeof next === "string") return this.fail(next);
          if (next < 0) return null;
          offset = next;
          break;
        }
        case State.UNTIL_CLOSE:
          this.events.onBody(bodyPiece(data, offset, length));
          return null;
        case State.UPGRADED:
          return null; // not ours to read (the proxy never asks for an upgrade on a pooled connection)
        default:
          return "bytes after a malformed response";
      }
    }
    return null;
  }

  /**
   * The connection ended: completes a body that runs until close, or says why the response is cut short. `isReset`:
   * it ended with an error (a reset), which tells that a body running until close did not reach its end.
   */
  finish(isReset = false): ParseError {
    if (this.isClosed) return null;
    switch (this.state) {
      case State.UNTIL_CLOSE:
        if (isReset) return "the connection was reset before the end of a body that runs until close";
        this.complete();
        return null;
      case State.HEAD:
        return this.pending === "" ? null : "the connection closed in the middle of a response head";
      case State.UPGRADED:
      case State.FAILED:
        return null;
      default:
        return "the connection closed before the response body was complete";
    }
  }

  /** Stops parsing for good (what is left of an execute call is ignored). */
  close(): void {
    this.isClosed = true;
  }

  /**
   * Reads a head from data[offset...] (after what is pending). Returns the offset just after it once it is complete
   * and reported, -1 when more bytes are needed (kept pending), or an error. Only the head's bytes are decoded.
   */
  private readHead(data: Uint8Array, offset: number): number | string {
    let start = offset;
    if (this.pending === "") {
      // Stray line breaks before a response are tolerated (RFC 9112 §2.2).
      while (start < data.byteLength && (data[start] === CR || data[start] === LF)) start++;
      if (start === data.byteLength) return -1;
      if (data[start] !== 0x48 /* H */) return "not an HTTP/1.x response";
    }
    // The head is searched for in text: most heads fit in the first HEAD_PROBE_BYTES, so a large first chunk of body
    // is not decoded just to find where the head ends.
    const probeEnd = Math.min(data.byteLength, start + HEAD_PROBE_BYTES);
    let text = latin1(data, start, probeEnd);
    let end = this.headEnd(text);
    if (end < 0 && probeEnd < data.byteLength) {
      text = latin1(data, start);
      end = this.headEnd(text);
    }
    if (end < 0) {
      this.pending += text;
      if (this.pending.length > MAX_HEAD_BYTES) return `a response head over ${MAX_HEAD_BYTES} bytes`;
      if (!this.pending.startsWith("HTTP/1.".slice(0, this.pending.length))) return "not an HTTP/1.x response";
      return -1;
    }
    // `end` counts from `start` and lies just after CRLF CRLF; it is below 4 when the terminator began in what was
    // pending.
    const head = end >= 4 ? this.pending + text.slice(0, end - 4) : this.pending.slice(0, end - 4);
    this.pending = "";
    if (head.length > MAX_HEAD_BYTES) return `a response head over ${MAX_HEAD_BYTES} bytes`;
    const problem = this.parseHead(head);
    if (problem !== null) return problem;
    return start + end;
  }

  /**
   * Where CRLF CRLF ends in `text` (the decoded bytes after what is pending), counting a terminator that began in
   * the pending bytes; -1 when there is none yet.
   */
  private headEnd(text: string): number {
    const pending = this.pending;
    if (pending.length > 0) {
      const carried = pending.slice(-3);
      const at = (carried + text.slice(0, 3)).indexOf("\r\n\r\n");
      if (at >= 0) return at + 4 - carried.length;
    }
    const at = text.indexOf("\r\n\r\n");
    return at < 0 ? -1 : at + 4;
  }

  /** Parses a complete head (without its final CRLF CRLF), reports it and sets up the body. */
  private parseHead(head: string): string | null {
    const lineEnd = head.indexOf("\r\n");
    const lineLength = lineEnd < 0 ? head.length : lineEnd;
    // status-line = HTTP-version SP status-code SP [ reason-phrase ], read in place (no slice unless a reason phrase
    // other than "OK" needs one).
    const minor = head.charCodeAt(7) - 48;
    const status = statusCode(head);
    if (
      lineLength < 12 ||
      !head.startsWith("HTTP/1.") ||
      (minor !== 0 && minor !== 1) ||
      head.charCodeAt(8) !== 32 ||
      status < 0 ||
      (lineLength > 12 && head.charCodeAt(12) !== 32)
    ) {
      return `not an HTTP/1.x status line: ${JSON.stringify(head.slice(0, Math.min(lineLength, 40)))}`;
    }
    const statusText =
      lineLength <= 13
        ? ""
        : lineLength === 15 && head.charCodeAt(13) === 79 /* O */ && head.charCodeAt(14) === 75 /* K */
          ? "OK"
          : head.slice(13, lineLength);
    const headers: string[] = [];
    let contentLength = -1;
    let isChunked = false;
    let hasTransferEncoding = false;
    let connectionClose = false;
    let connectionKeepAlive = false;
    let connectionUpgrade = false;
    let at = lineEnd < 0 ? head.length : lineEnd + 2;
    // Every header line checked at once (one compiled regex run): a token name, a colon, no NUL or bare CR/LF.
    FIELD_LINES.lastIndex = at;
    FIELD_LINES.test(head);
    if (FIELD_LINES.lastIndex !== head.length) return describeFieldLine(head, FIELD_LINES.lastIndex);
    while (at < head.length) {
      let next = head.indexOf("\r\n", at);
      if (next < 0) next = head.length;
      const colon = head.indexOf(":", at);
      const name = head.slice(at, colon);
      const value = owsTrimmedSlice(head, colon + 1, next);
      headers.push(name, value);
      switch (name.length) {
        case 14:
          if (equalsIgnoringCase(name, "content-length")) {
            const parsed = parseContentLength(value);
            if (parsed < 0) return `an invalid Content-Length: ${JSON.stringify(value.slice(0, 40))}`;
            if (contentLength >= 0 && contentLength !== parsed) return "conflicting Content-Length values";
            contentLength = parsed;
          }
          break;
        case 17:
          if (equalsIgnoringCase(name, "transfer-encoding")) {
            hasTransferEncoding = true;
            // Only the final coding decides the framing (RFC 9112 §6.3): chunked last, or read until close.
            const codings = value.toLowerCase().split(",");
            isChunked = codings[codings.length - 1]!.trim() === "chunked";
          }
          break;
        case 10:
          if (equalsIgnoringCase(name, "connection")) {
            if (equalsIgnoringCase(value, "keep-alive")) {
              connectionKeepAlive = true;
              break;
            }
            for (const option of value.toLowerCase().split(",")) {
              const token = option.trim();
              if (token === "close") connectionClose = true;
              else if (token === "keep-alive") connectionKeepAlive = true;
              else if (token === "upgrade") connectionUpgrade = true;
            }
          }
          break;
      }
      at = next + 2;
    }
    const isUpgrade = status === 101 && connectionUpgrade;
    // With Transfer-Encoding, Content-Length is ignored and the connection must not be reused (RFC 9112 §6.1).
    let keepAlive = minor === 1 ? !connectionClose : connectionKeepAlive && !connectionClose;
    if (hasTransferEncoding && contentLength >= 0) keepAlive = false;
    if (hasTransferEncoding && !isChunked) keepAlive = false;
    if (contentLength < 0 && !hasTransferEncoding) keepAlive = keepAlive && !hasBodyByStatus(status);
    const skipBody = this.events.onHead(status, statusText, headers, keepAlive, isUpgrade);
    if (this.isClosed) return null;
    if (isUpgrade) {
      this.state = State.UPGRADED;
      this.events.onComplete();
      return null;
    }
    if (skipBody || !hasBodyByStatus(status)) {
      this.complete();
      return null;
    }
    if (hasTransferEncoding) {
      this.state = isChunked ? State.CHUNK_SIZE : State.UNTIL_CLOSE;
    } else if (contentLength >= 0) {
      if (contentLength === 0) this.complete();
      else {
        this.state = State.LENGTH;
        this.remaining = contentLength;
      }
    } else {
      this.state = State.UNTIL_CLOSE;
    }
    return null;
  }

  /**
   * Reads one line of chunked framing (a chunk size, the CRLF after data, or a trailer line) from data[offset...].
   * Returns the offset after it, -1 when the line continues in the next chunk, or an error.
   */
  private readChunkLine(data: Uint8Array, offset: number): number | string {
    let end = offset;
    const length = data.byteLength;
    while (end < length && data[end] !== LF) end++;
    if (end === length) {
      this.pending += latin1(data, offset);
      if (this.pending.length > MAX_CHUNK_LINE_BYTES) return "a chunk-size or trailer line too long";
      return -1;
    }
    let line = this.pending + latin1(data, offset, end);
    this.pending = "";
    if (line.charCodeAt(line.length - 1) !== CR) return "chunked framing with a bare LF";
    line = line.slice(0, -1);
    const next = end + 1;
    switch (this.state) {
      case State.CHUNK_DATA_END:
        if (line !== "") return "chunk data longer than its size";
        this.state = State.CHUNK_SIZE;
        return next;
      case State.TRAILERS:
        if (line === "") this.complete();
        return next;
      default: {
        const semicolon = line.indexOf(";");
        const digits = trimOws(semicolon < 0 ? line : line.slice(0, semicolon));
        if (digits.length === 0 || digits.length > MAX_CHUNK_SIZE_DIGITS || !/^[0-9a-fA-F]+$/.test(digits)) {
          return `an invalid chunk size: ${JSON.stringify(line.slice(0, 40))}`;
        }
        const size = Number.parseInt(digits, 16);
        if (size === 0) this.state = State.TRAILERS;
        else {
          this.state = State.CHUNK_DATA;
          this.remaining = size;
        }
        return next;
      }
    }
  }

  private complete(): void {
    this.state = State.HEAD;
    this.remaining = 0;
    this.events.onComplete();
  }

  private fail(reason: string): string {
    this.state = State.FAILED;
    this.pending = "";
    return reason;
  }
}

/**
 * The three digits at 9..11 of a status line as a number, or -1 when they are not a status code: RFC 9110 §15's 100 to
 * 599 (a status Bun's Response cannot carry is not passed on, nor guessed at).
 */
function statusCode(head: string): number {
  const hundreds = head.charCodeAt(9) - 48;
  const tens = head.charCodeAt(10) - 48;
  const units = head.charCodeAt(11) - 48;
  // (NaN past the end of the string compares false, as a non-digit.)
  if (!(hundreds >= 1 && hundreds <= 5 && tens >= 0 && tens <= 9 && units >= 0 && units <= 9)) return -1;
  return hundreds * 100 + tens * 10 + units;
}

/**
 * Pieces of body up to this many bytes are copied out of the received chunk instead of viewed: a view of a fresh
 * socket buffer makes JavaScriptCore move the buffer's bytes out of the garbage-collected heap first, which costs more
 * than copying a small piece (docs/performance.md, "Reverse proxy").
 */
export const BODY_COPY_MAX_BYTES = 2048;

/** data[start, end) as onBody hands it on: the chunk itself, a copy of a small piece, or a view of a larger one. */
function bodyPiece(data: Uint8Array, start: number, end: number): Uint8Array {
  if (start === 0 && end === data.byteLength) return data;
  const length = end - start;
  if (length > BODY_COPY_MAX_BYTES) return data.subarray(start, end);
  const copy = new Uint8Array(length);
  copyBytes.call(data, copy, 0, start, end);
  return copy;
}

/** Buffer's native copy, which takes any Uint8Array as its source (Bun's socket chunks are Buffers). */
const copyBytes = Buffer.prototype.copy as (
  this: Uint8Array,
  target: Uint8Array,
  targetStart: number,
  sourceStart: number,
  sourceEnd: number,
) => number;

/** 1xx, 204 and 304 responses never have a body (RFC 9110 §6.4.1); the answer to HEAD is decided by the caller. */
function hasBodyByStatus(status: number): boolean {
  return status >= 200 && status !== 204 && status !== 304;
}

/** Content-Length as a number: digits only (a list of equal values is one value); -1 when invalid. */
function parseContentLength(value: string): number {
  if (/^\d{1,15}$/.test(value)) return Number(value);
  // "5, 5" (a field repeated by an intermediary) is the same length, RFC 9110 §8.6.
  const parts = value.split(",").map((part) => part.trim());
  if (parts.length < 2 || !parts.every((part) => /^\d{1,15}$/.test(part) && part === parts[0])) return -1;
  return Number(parts[0]);
}

/** text.slice(start, end) without optional whitespace (spaces, tabs) at either end: one slice, no copy to trim. */
function owsTrimmedSlice(text: string, start: number, end: number): string {
  let from = start;
  let to = end;
  while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++;
  while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to--;
  return text.slice(from, to);
}

function trimOws(text: string): string {
  const length = text.length;
  // The usual shape, one space after the colon and none at the end, without a loop.
  if (length > 1 && text.charCodeAt(0) === 32) {
    const second = text.charCodeAt(1);
    const last = text.charCodeAt(length - 1);
    if (second !== 32 && second !== 9 && last !== 32 && last !== 9) return text.slice(1);
  }
  let start = 0;
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === 32 || text.charCodeAt(start) === 9)) start++;
  while (end > start && (text.charCodeAt(end - 1) === 32 || text.charCodeAt(end - 1) === 9)) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** Buffer's latin1Slice: Bun has it on every Buffer (socket reads are Buffers) but its types leave it out. */
type Latin1Sliceable = Uint8Array & { latin1Slice?: (start: number, end: number) => string };

/** Bytes as a latin1 string (one char per byte). */
function latin1(data: Uint8Array, start: number, end = data.byteLength): string {
  const slice = (data as Latin1Sliceable).latin1Slice;
  if (slice !== undefined) return slice.call(data, start, end);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1", start, end);
}
