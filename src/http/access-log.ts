// Access log: one line per HTTP request in nginx's Combined Log Format or as JSON, written off the event loop.
import { appendFileSync } from "node:fs";
import { LogSink, type LogTarget } from "../log/sink.ts";

/** Longest time a line waits before it goes to the writer thread. */
const FLUSH_DELAY_MS = 100;
/** Used when no bound is given (tests that build an AccessLog by hand). */
const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** Characters nginx writes as \xHH in logged request lines and headers. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control bytes are exactly what must be escaped.
const NEEDS_ESCAPE = /[\x00-\x1f"\\\x7f-\uffff]/;
const encoder = new TextEncoder();

export type AccessLogFormat = "combined" | "json";

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

/**
 * One request as the access log sees it. The HTTP handler fills one reused entry per request (nothing is allocated
 * for it) and passes it to AccessLog.write, which reads it before returning.
 */
export interface AccessEntry {
  /** Wall-clock time the request arrived, ms since the epoch. */
  timeMs: number;
  /** Client address (after PROXY protocol / X-Forwarded-For from a trusted proxy); "-" when unknown. */
  client: string;
  /** Request method; "-" when the request is unknown (an error outside the handler). */
  method: string;
  /** Request target as sent: path and query. */
  target: string;
  /** "HTTP/1.1", "HTTP/2" ... */
  protocol: string;
  status: number;
  /** Body bytes of the response. */
  bodyBytes: number;
  /** From the request's arrival to its response being handed to Bun (a streamed body may still be on its way). */
  durationMicros: number;
  referer: string | null;
  userAgent: string | null;
  /** The upstream server that answered a proxied request ("10.0.0.5:8080"); null when hps answered itself. */
  upstream: string | null;
  /** With upstream: the status it answered and how long it took to answer. */
  upstreamStatus: number;
  upstreamMicros: number;
}

/** A fresh entry (one per handler, reused for every request). */
export function newAccessEntry(): AccessEntry {
  return {
    timeMs: 0,
    client: "-",
    method: "-",
    target: "",
    protocol: "HTTP/1.1",
    status: 0,
    bodyBytes: 0,
    durationMicros: 0,
    referer: null,
    userAgent: null,
    upstream: null,
    upstreamStatus: 0,
    upstreamMicros: 0,
  };
}

export interface AccessLogOptions {
  /** File to append to; empty for stdout. */
  readonly file: string;
  readonly format?: AccessLogFormat;
  /** Bytes waiting to be written past which lines are dropped and counted (log.max_buffered_bytes). */
  readonly maxBufferedBytes?: number;
  /** Counts dropped lines (the server's statistics). */
  readonly onDropped?: (lines: number) => void;
  /** Told (once per episode) how many lines were dropped, when the log takes lines again (the server log). */
  readonly onRecovered?: (lines: number) => void;
  /** A write failed (disk full, file gone): told once per distinct message (the server log). */
  readonly onWriteError?: (message: string) => void;
}

/** Formats one line per request and hands it to a LogSink (batched, bounded, written by the writer thread). */
export class AccessLog {
  private sink: LogSink;
  private readonly path: string;
  private readonly format: AccessLogFormat;
  private readonly sinkOptions: ConstructorParameters<typeof LogSink>[1];
  private timeSecond = -1;
  private timeText = "";
  private isoMs = -1;
  private isoText = "";
  /** Set by close: a request that outlived its log (a reload replaced it) still gets its line, appended directly. */
  private closed = false;

  /** Throws (ENOENT, EACCES, ...) when the file cannot be opened for appending (an existing log is never truncated). */
  constructor(options: AccessLogOptions) {
    this.path = options.file;
    this.format = options.format ?? "combined";
    const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.sinkOptions = {
      maxBufferedBytes,
      flushDelayMs: FLUSH_DELAY_MS,
      ...(options.onDropped ? { onDropped: options.onDropped } : {}),
      ...(options.onRecovered ? { onRecovered: options.onRecovered } : {}),
      ...(options.onWriteError ? { onWriteError: options.onWriteError } : {}),
    };
    this.sink = new LogSink(this.target(), this.sinkOptions);
  }

  /** Logs one request; returns false when the line was dropped (the log is not keeping up; counted). */
  write(entry: AccessEntry): boolean {
    const line = this.format === "json" ? this.jsonLine(entry) : this.combinedLine(entry);
    if (this.closed) {
      this.writeLate(line);
      return true;
    }
    return this.sink.write(line, 1, false);
  }

  /** Waits until every line logged so far is written. */
  async flush(): Promise<void> {
    await this.sink.flush();
  }

  /**
   * Reopens the log file by its path, appending (SIGHUP after logrotate moved it away): lines logged before go to
   * the old file, later ones to the new. Throws when the path cannot be opened (the old file is kept then).
   * stdout needs nothing.
   */
  async reopen(): Promise<void> {
    if (this.path === "" || this.closed) return;
    const next = new LogSink(this.target(), this.sinkOptions);
    const old = this.sink;
    this.sink = next;
    await old.close();
  }

  /** Writes what is batched and closes the file (stdout stays open). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true; // lines logged from here on are appended directly (writeLate)
    await this.sink.close();
  }

  /**
   * `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`; a proxied
   * request adds the server that answered and the time its response head took, in seconds (as nginx's
   * `"$upstream_addr" $upstream_header_time`).
   */
  private combinedLine(entry: AccessEntry): string {
    const second = Math.floor(entry.timeMs / 1000);
    if (second !== this.timeSecond) {
      this.timeSecond = second;
      this.timeText = formatLogTime(entry.timeMs);
    }
    const request = entry.method === "-" ? "-" : escapeLogValue(`${entry.method} ${entry.target} ${entry.protocol}`);
    const referer = entry.referer === null ? "-" : escapeLogValue(entry.referer);
    const userAgent = entry.userAgent === null ? "-" : escapeLogValue(entry.userAgent);
    const upstream =
      entry.upstream === null ? "" : ` "${entry.upstream}" ${(entry.upstreamMicros / 1_000_000).toFixed(3)}`;
    return `${entry.client} - - [${this.timeText}] "${request}" ${entry.status} ${entry.bodyBytes} "${referer}" "${userAgent}"${upstream}\n`;
  }

  /** One JSON object per line; strings escaped by JSON.stringify, absent headers as null. */
  private jsonLine(entry: AccessEntry): string {
    const ms = Math.floor(entry.timeMs);
    if (ms !== this.isoMs) {
      this.isoMs = ms;
      this.isoText = new Date(ms).toISOString();
    }
    const known = entry.method !== "-";
    const upstream =
      entry.upstream === null
        ? ""
        : `,"upstream":${JSON.stringify(entry.upstream)},"upstream_status":${entry.upstreamStatus},"upstream_duration_us":${entry.upstreamMicros}`;
    return `{"time":"${this.isoText}","client":${JSON.stringify(entry.client)},"method":${known ? JSON.stringify(entry.method) : "null"},"path":${known ? JSON.stringify(entry.target) : "null"},"protocol":${known ? JSON.stringify(entry.protocol) : "null"},"status":${entry.status},"bytes":${entry.bodyBytes},"duration_us":${entry.durationMicros},"referer":${jsonOrNull(headerText(entry.referer))},"user_agent":${jsonOrNull(headerText(entry.userAgent))}${upstream}}\n`;
  }

  private target(): LogTarget {
    return this.path === "" ? { stream: "stdout" } : { file: this.path };
  }

  /** After close (rare: a request that outlived a reload's grace period): one append per line, nothing kept open. */
  private writeLate(line: string): void {
    try {
      if (this.path !== "") appendFileSync(this.path, line);
      else process.stdout.write(line);
    } catch {
      // The file is gone or unwritable: the line cannot be kept anywhere better than the request it describes.
    }
  }
}

function jsonOrNull(value: string | null): string {
  return value === null ? "null" : JSON.stringify(value);
}

/** A byte above 0x7F in a header value as Bun gives it. */
const NON_ASCII = /[\x80-\xff]/;

/**
 * A header value as text. Bun gives header values one character per byte (ISO-8859-1, as the Fetch standard's byte
 * strings are), so a user agent or referer sent in UTF-8, as clients do, would be logged as mojibake ("cafÃ©");
 * its bytes are read as UTF-8 instead, and bytes that are not UTF-8 become U+FFFD. ASCII, the usual case, is
 * returned as it is.
 */
function headerText(value: string | null): string | null {
  if (value === null || !NON_ASCII.test(value)) return value;
  return Buffer.from(value, "latin1").toString("utf8");
}
