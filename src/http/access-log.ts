// Access log in nginx's Combined Log Format, buffered: one write per batch, flushed on stop.
import { appendFileSync, closeSync, openSync } from "node:fs";
import type { FileSink } from "bun";

/** Longest time a line waits in the buffer. */
const FLUSH_DELAY_MS = 100;
/** Buffered characters that trigger a write at once. */
const FLUSH_CHARS = 64 * 1024;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** Characters nginx writes as \xHH in logged request lines and headers. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control bytes are exactly what must be escaped.
const NEEDS_ESCAPE = /[\x00-\x1f"\\\x7f-\uffff]/;
const encoder = new TextEncoder();

/** Escapes a value the way nginx does for the access log: `"`, `\`, control and non-ASCII bytes become \xHH. */
export function escapeLogValue(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  let out = "";
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code >= 0x20 && code < 0x7f && char !== '"' && char !== "\\") {
      out += char;
      continue;
    }
    const bytes = code <= 0xff ? [code] : encoder.encode(char);
    for (const byte of bytes) out += `\\x${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** `26/Nov/2026:01:13:39 +0000` (nginx's $time_local) for a time in ms. */
export function formatLogTime(ms: number): string {
  const date = new Date(ms);
  const offsetMinutes = -date.getTimezoneOffset();
  const sign = offsetMinutes < 0 ? "-" : "+";
  const absolute = Math.abs(offsetMinutes);
  const pad = (n: number) => (n < 10 ? `0${n}` : `${n}`);
  return `${pad(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${sign}${pad(Math.floor(absolute / 60))}${pad(absolute % 60)}`;
}

export interface AccessLogOptions {
  /** File to append to; empty for stdout. */
  readonly file: string;
}

/** Writes one Combined Log Format line per request into a buffer that is written in batches. */
export class AccessLog {
  private sink: FileSink;
  private readonly ownsSink: boolean;
  private readonly path: string;
  /** Descriptor of the log file (Bun's sink does not close a descriptor it was given); -1 for stdout. */
  private fd: number;
  private pending = "";
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly flushSoon = () => {
    this.timer = null;
    this.writePending();
  };
  private timeSecond = -1;
  private timeText = "";
  /** Set by close: a request that outlived its log (a reload replaced it) still gets its line, appended directly. */
  private closed = false;

  constructor(options: AccessLogOptions) {
    this.ownsSink = options.file !== "";
    this.path = options.file;
    // Appends, as nginx does: an existing log is never truncated.
    this.fd = this.ownsSink ? openSync(options.file, "a") : -1;
    this.sink = this.ownsSink ? Bun.file(this.fd).writer() : Bun.stdout.writer();
  }

  /**
   * Logs one request: `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`.
   * `requestLine` is `METHOD target HTTP/1.1`; missing headers are written as `-`.
   */
  write(
    remoteAddress: string,
    requestLine: string,
    status: number,
    bodyBytes: number,
    referer: string | null,
    userAgent: string | null,
    nowMs: number,
  ): void {
    const second = Math.floor(nowMs / 1000);
    if (second !== this.timeSecond) {
      this.timeSecond = second;
      this.timeText = formatLogTime(nowMs);
    }
    this.pending += `${remoteAddress} - - [${this.timeText}] "${escapeLogValue(requestLine)}" ${status} ${bodyBytes} "${referer === null ? "-" : escapeLogValue(referer)}" "${userAgent === null ? "-" : escapeLogValue(userAgent)}"\n`;
    if (this.closed) this.writeLate();
    else if (this.pending.length >= FLUSH_CHARS) this.writePending();
    else if (this.timer === null) this.timer = setTimeout(this.flushSoon, FLUSH_DELAY_MS);
  }

  /** Writes what is buffered and waits for it to reach the file. */
  async flush(): Promise<void> {
    this.writePending();
    await this.sink.flush();
  }

  /**
   * Reopens the log file by its path, appending (SIGHUP after logrotate moved it away): lines logged before go to
   * the old file, later ones to the new. Throws when the path cannot be opened (the old file is kept then).
   * stdout needs nothing.
   */
  async reopen(): Promise<void> {
    if (!this.ownsSink) return;
    const nextFd = openSync(this.path, "a");
    this.writePending();
    const [oldSink, oldFd] = [this.sink, this.fd];
    this.fd = nextFd;
    this.sink = Bun.file(nextFd).writer();
    await oldSink.flush();
    await oldSink.end();
    closeSync(oldFd);
  }

  /** Flushes and closes the file (stdout stays open). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true; // lines logged from here on are appended directly (writeLate)
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
    if (this.ownsSink) {
      await this.sink.end();
      closeSync(this.fd);
    }
  }

  /** After close (rare: a request that outlived a reload's grace period): one append per line, nothing kept open. */
  private writeLate(): void {
    const lines = this.pending;
    this.pending = "";
    try {
      if (this.ownsSink) appendFileSync(this.path, lines);
      else process.stdout.write(lines);
    } catch {
      // The file is gone or unwritable: the line cannot be kept anywhere better than the request it describes.
    }
  }

  private writePending(): void {
    if (this.pending === "") return;
    this.sink.write(this.pending);
    this.sink.flush();
    this.pending = "";
  }
}
