// HTTP/1.1 for the load tester: one pre-serialized request and an incremental, allocation-free response parser.
import type { LoadOptions, LoadTarget } from "./options.ts";
import { Outcome, type LoadProtocol, type ResponseCodec, type ResponseSink } from "./protocol.ts";

/** A response head longer than this loses the framing (counted as a mismatch). */
const MAX_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");
const HTTP_1 = Buffer.from("HTTP/1.");
const NAME_CONTENT_LENGTH = Buffer.from("content-length");
const NAME_TRANSFER_ENCODING = Buffer.from("transfer-encoding");
const NAME_CONNECTION = Buffer.from("connection");
const WORD_CHUNKED = Buffer.from("chunked");
const WORD_CLOSE = Buffer.from("close");

const CR = 13;
const LF = 10;
const SPACE = 32;
const TAB = 9;
const COLON = 58;

// Parser states.
const HEAD = 0;
const BODY = 1;
const CHUNK_SIZE = 2;
const CHUNK_DATA = 3;
const CHUNK_END = 4;
const TRAILER = 5;
const UNTIL_CLOSE = 6;

/** The request line, Host, the extra headers and the body, as bytes. */
export function buildHttpRequest(
  target: LoadTarget,
  method: string,
  headers: readonly [string, string][],
  body: string,
): Uint8Array {
  const bodyBytes = Buffer.from(body);
  const hostHeader =
    target.port === 80 ? target.host : `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`;
  let head = `${method} ${target.path} HTTP/1.1\r\n`;
  if (!headers.some(([name]) => name.toLowerCase() === "host")) head += `Host: ${hostHeader}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  if (bodyBytes.length > 0 || method === "POST" || method === "PUT") head += `Content-Length: ${bodyBytes.length}\r\n`;
  head += "\r\n";
  return Buffer.concat([Buffer.from(head), bodyBytes]);
}

export function httpProtocol(options: LoadOptions): LoadProtocol {
  const template = buildHttpRequest(options.target, options.method, options.headers, options.body);
  const bodyless = options.method === "HEAD";
  return {
    template,
    stamped: false,
    ordered: true,
    stamp() {},
    newCodec: () => new HttpResponseCodec(bodyless),
  };
}

/** True when buf[start, start+lower.length) equals `lower` ignoring ASCII case. */
function equalsLower(buf: Uint8Array, start: number, end: number, lower: Uint8Array): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if ((buf[start + i]! | 0x20) !== lower[i]) return false;
  return true;
}

/** True when `lower` occurs in buf[start, end) ignoring ASCII case. */
function containsLower(buf: Uint8Array, start: number, end: number, lower: Uint8Array): boolean {
  const last = end - lower.length;
  outer: for (let i = start; i <= last; i++) {
    for (let j = 0; j < lower.length; j++) if ((buf[i + j]! | 0x20) !== lower[j]) continue outer;
    return true;
  }
  return false;
}

/**
 * Parses responses as they arrive: status line, Content-Length or chunked bodies, keep-alive.
 * Bodies are skipped by counting, never copied or decoded; a head split across chunks is the only copy.
 */
export class HttpResponseCodec implements ResponseCodec {
  closeRequested = false;
  private state = HEAD;
  private readonly headBuffer = Buffer.allocUnsafe(MAX_HEAD_BYTES);
  private headBytes = 0;
  private remainingBytes = 0;
  private status = 0;
  private chunkDigits = 0;
  private inChunkExtension = false;
  private lineBytes = 0;
  private sawChunkCr = false;

  constructor(private readonly bodyless: boolean) {}

  reset(): void {
    this.state = HEAD;
    this.headBytes = 0;
    this.closeRequested = false;
  }

  feed(chunk: Buffer, sink: ResponseSink): boolean {
    const length = chunk.length;
    let pos = 0;
    while (pos < length) {
      switch (this.state) {
        case HEAD: {
          if (this.headBytes === 0) {
            const at = chunk.indexOf(HEAD_END, pos);
            if (at >= 0) {
              if (!this.parseHead(chunk, pos, at + 4, sink)) return this.lost(sink);
              pos = at + 4;
              break;
            }
          }
          const before = this.headBytes;
          const take = Math.min(length - pos, MAX_HEAD_BYTES - before);
          this.headBuffer.set(chunk.subarray(pos, pos + take), before);
          this.headBytes = before + take;
          const at = this.headBuffer.indexOf(HEAD_END, before > 3 ? before - 3 : 0);
          if (at < 0 || at + 4 > this.headBytes) {
            if (this.headBytes === MAX_HEAD_BYTES) return this.lost(sink);
            pos += take;
            break;
          }
          const headEnd = at + 4;
          this.headBytes = 0;
          if (!this.parseHead(this.headBuffer, 0, headEnd, sink)) return this.lost(sink);
          pos += headEnd - before;
          break;
        }
        case BODY: {
          const take = Math.min(this.remainingBytes, length - pos);
          this.remainingBytes -= take;
          pos += take;
          if (this.remainingBytes === 0) this.complete(sink);
          break;
        }
        case CHUNK_SIZE: {
          const byte = chunk[pos++]!;
          if (byte === LF) {
            if (this.chunkDigits === 0) return this.lost(sink);
            if (this.remainingBytes === 0) {
              this.state = TRAILER;
              this.lineBytes = 0;
            } else {
              this.state = CHUNK_DATA;
            }
          } else if (byte === CR) {
            // the LF follows
          } else if (this.inChunkExtension) {
            // chunk extensions are ignored
          } else if (byte === 59 /* ; */ || byte === SPACE || byte === TAB) {
            this.inChunkExtension = true;
          } else {
            const digit =
              byte >= 48 && byte <= 57
                ? byte - 48
                : (byte | 0x20) >= 97 && (byte | 0x20) <= 102
                  ? (byte | 0x20) - 87
                  : -1;
            if (digit < 0 || this.chunkDigits >= 12) return this.lost(sink);
            this.remainingBytes = this.remainingBytes * 16 + digit;
            this.chunkDigits++;
          }
          break;
        }
        case CHUNK_DATA: {
          const take = Math.min(this.remainingBytes, length - pos);
          this.remainingBytes -= take;
          pos += take;
          if (this.remainingBytes === 0) {
            this.state = CHUNK_END;
            this.sawChunkCr = false;
          }
          break;
        }
        case CHUNK_END: {
          const byte = chunk[pos++]!;
          if (!this.sawChunkCr) {
            if (byte !== CR) return this.lost(sink);
            this.sawChunkCr = true;
          } else {
            if (byte !== LF) return this.lost(sink);
            this.startChunk();
          }
          break;
        }
        case TRAILER: {
          const byte = chunk[pos++]!;
          if (byte === LF) {
            if (this.lineBytes === 0) this.complete(sink);
            else this.lineBytes = 0;
          } else if (byte !== CR) {
            if (++this.lineBytes > MAX_HEAD_BYTES) return this.lost(sink);
          }
          break;
        }
        default:
          // UNTIL_CLOSE: everything up to the close is body
          pos = length;
      }
    }
    return true;
  }

  finishOnClose(sink: ResponseSink): void {
    if (this.state === UNTIL_CLOSE) this.complete(sink);
    this.reset();
  }

  private startChunk(): void {
    this.state = CHUNK_SIZE;
    this.remainingBytes = 0;
    this.chunkDigits = 0;
    this.inChunkExtension = false;
  }

  private complete(sink: ResponseSink): void {
    this.state = HEAD;
    const status = this.status;
    sink.completeNext(status >= 200 && status < 300 ? Outcome.OK : Outcome.NON_OK, status);
  }

  /** Framing is lost: the response in progress counts as a mismatch and the connection must close. */
  private lost(sink: ResponseSink): boolean {
    this.state = HEAD;
    this.headBytes = 0;
    sink.completeNext(Outcome.MISMATCH, -1);
    return false;
  }

  /** Reads status, Content-Length, Transfer-Encoding and Connection from head bytes [start, end). */
  private parseHead(buf: Uint8Array, start: number, end: number, sink: ResponseSink): boolean {
    if (end - start < 16) return false;
    for (let i = 0; i < HTTP_1.length; i++) if (buf[start + i] !== HTTP_1[i]) return false;
    if (buf[start + 8] !== SPACE) return false;
    const d0 = buf[start + 9]! - 48;
    const d1 = buf[start + 10]! - 48;
    const d2 = buf[start + 11]! - 48;
    if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return false;
    const status = d0 * 100 + d1 * 10 + d2;
    let contentLength = -1;
    let chunked = false;
    let untilClose = false;
    // header lines: from after the status line to the blank line
    let line = (buf as Buffer).indexOf(LF, start + 12) + 1;
    const headersEnd = end - 2;
    while (line > 0 && line < headersEnd) {
      let lineEnd = (buf as Buffer).indexOf(LF, line);
      if (lineEnd < 0 || lineEnd >= end) return false;
      const next = lineEnd + 1;
      if (buf[lineEnd - 1] === CR) lineEnd--;
      let colon = line;
      while (colon < lineEnd && buf[colon] !== COLON) colon++;
      if (colon === lineEnd || colon === line) return false;
      let valueStart = colon + 1;
      while (valueStart < lineEnd && (buf[valueStart] === SPACE || buf[valueStart] === TAB)) valueStart++;
      let valueEnd = lineEnd;
      while (valueEnd > valueStart && (buf[valueEnd - 1] === SPACE || buf[valueEnd - 1] === TAB)) valueEnd--;
      const nameLength = colon - line;
      if (nameLength === 14 && equalsLower(buf, line, colon, NAME_CONTENT_LENGTH)) {
        if (valueEnd === valueStart || valueEnd - valueStart > 15) return false;
        let value = 0;
        for (let i = valueStart; i < valueEnd; i++) {
          const digit = buf[i]! - 48;
          if (digit < 0 || digit > 9) return false;
          value = value * 10 + digit;
        }
        if (contentLength >= 0 && contentLength !== value) return false;
        contentLength = value;
      } else if (nameLength === 17 && equalsLower(buf, line, colon, NAME_TRANSFER_ENCODING)) {
        if (valueEnd - valueStart >= 7 && equalsLower(buf, valueEnd - 7, valueEnd, WORD_CHUNKED)) chunked = true;
        else untilClose = true;
      } else if (nameLength === 10 && equalsLower(buf, line, colon, NAME_CONNECTION)) {
        if (containsLower(buf, valueStart, valueEnd, WORD_CLOSE)) this.closeRequested = true;
      }
      line = next;
    }
    this.status = status;
    if (status < 200) {
      // 1xx: an interim response; the real one follows. 101 would switch protocols: not HTTP any more.
      return status !== 101;
    }
    if (this.bodyless || status === 204 || status === 304) {
      this.complete(sink);
    } else if (chunked) {
      this.startChunk();
    } else if (untilClose || contentLength < 0) {
      this.state = UNTIL_CLOSE;
    } else if (contentLength === 0) {
      this.complete(sink);
    } else {
      this.state = BODY;
      this.remainingBytes = contentLength;
    }
    return true;
  }
}
