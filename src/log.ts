// Levelled logger: one line per event (text or JSON) with a timestamp, to stderr or a file, written off the event loop.
import { appendFileSync } from "node:fs";
import { LogSink, type LogTarget } from "./log/sink.ts";

export type LogLevel = "error" | "warn" | "info" | "debug";
export type LogFormat = "text" | "json";
const LEVEL_RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
const LEVEL_TEXT: Record<LogLevel, string> = { error: "ERROR", warn: "WARN ", info: "INFO ", debug: "DEBUG" };

/** Longest time a line waits before it goes to the writer thread (errors go at once). */
const FLUSH_DELAY_MS = 50;

export interface LoggerOptions {
  level: LogLevel;
  /** Path of the log file; empty for stderr. */
  file: string;
  /** text: `2026-11-26T01:13:39.123Z INFO  message`; json: `{"time":...,"level":"info","msg":...}` per line. */
  format?: LogFormat;
  /** Bytes waiting to be written past which lines are dropped and counted (log.max_buffered_bytes). */
  maxBufferedBytes?: number;
  /** Writes nothing and opens nothing (Logger.silent). */
  silent?: boolean;
}

/** Used when no bound is given (tools and tests that build a Logger by hand). */
const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** A log destination opened by Logger.prepareTarget and not yet in use: commit switches to it, abort closes it. */
export interface PreparedLogTarget {
  commit(): Promise<void>;
  abort(): void;
}

export class Logger {
  private rank: number;
  private format: LogFormat;
  private maxBufferedBytes: number;
  /** Null for a silent logger (writes nothing, opens nothing). */
  private sink: LogSink | null;
  /** Path of the log file; "" for stderr. */
  private path: string;
  private droppedCounter: ((lines: number) => void) | null = null;

  /** Throws (ENOENT, EACCES, ...) when the log file cannot be opened for appending. */
  constructor(options: LoggerOptions) {
    this.rank = options.silent ? -1 : LEVEL_RANK[options.level];
    this.format = options.format ?? "text";
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.path = options.file;
    this.sink = options.silent ? null : this.openSink(options.file);
  }

  /** A logger that writes nothing (no level is enabled, no file is opened): for tests and tools. */
  static silent(): Logger {
    return new Logger({ level: "error", file: "", silent: true });
  }

  /** Lines dropped because the destination could not keep up are counted with this (the server's statistics). */
  countDroppedWith(count: (lines: number) => void): void {
    this.droppedCounter = count;
  }

  /** Closes and reopens the log file by its path (after logrotate moved it away); stderr needs nothing. */
  async reopen(): Promise<void> {
    if (this.path === "" || this.sink === null) return;
    await this.prepareTarget(this.path).commit();
  }

  /**
   * Opens `file` ("" = stderr) for appending without writing to it yet (a configuration reload's first phase);
   * throws (ENOENT, EACCES, ...) when it cannot be opened, changing nothing. Lines logged before commit go to the
   * current destination; commit flushes and closes it (unless it is stderr) and logs to the new one from then on.
   */
  prepareTarget(file: string): PreparedLogTarget {
    const sink = this.openSink(file);
    let settled = false;
    return {
      // Never rejects: once the new destination is in place, the old one is closed in the background of the
      // caller's reload; lines it cannot take in time are counted as dropped, not waited for.
      commit: async () => {
        if (settled) return;
        settled = true;
        const old = this.sink;
        this.path = file;
        this.sink = sink;
        await old?.close();
      },
      abort: () => {
        if (settled) return;
        settled = true;
        void sink.close();
      },
    };
  }

  /** From now on, writes `level` and more severe (a configuration reload). */
  setLevel(level: LogLevel): void {
    if (this.sink !== null) this.rank = LEVEL_RANK[level];
  }

  /** From now on, writes lines in `format` (a configuration reload). */
  setFormat(format: LogFormat): void {
    this.format = format;
  }

  /** From now on, drops lines past `bytes` waiting to be written (a configuration reload). */
  setMaxBufferedBytes(bytes: number): void {
    this.maxBufferedBytes = bytes;
    this.sink?.setMaxBufferedBytes(bytes);
  }

  isEnabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] <= this.rank;
  }

  error(message: string): void {
    this.write("error", message, null);
  }

  warn(message: string): void {
    this.write("warn", message, null);
  }

  info(message: string): void {
    this.write("info", message, null);
  }

  debug(message: string): void {
    this.write("debug", message, null);
  }

  /** Writes a block of lines (a report) under one timestamp: indented lines in text, a `lines` array in JSON. */
  block(level: LogLevel, title: string, lines: readonly string[]): void {
    this.write(level, title, lines);
  }

  /** Waits until every line logged so far is written. */
  async flush(): Promise<void> {
    await this.sink?.flush();
  }

  async close(): Promise<void> {
    await this.sink?.close();
  }

  private write(level: LogLevel, message: string, lines: readonly string[] | null): void {
    if (LEVEL_RANK[level] > this.rank || this.sink === null) return;
    const time = new Date().toISOString();
    let text: string;
    if (this.format === "json") {
      const extra = lines === null ? "" : `,"lines":${JSON.stringify(lines)}`;
      text = `{"time":"${time}","level":"${level}","msg":${JSON.stringify(message)}${extra}}\n`;
    } else {
      const body = lines === null ? message : [message, ...lines.map((line) => `  ${line}`)].join("\n");
      text = `${time} ${LEVEL_TEXT[level]} ${body}\n`;
    }
    // Errors go to the writer at once: they must reach the disk even when a crash follows them.
    if (!this.sink.isClosed) this.sink.write(text, 1, level === "error");
    else this.writeLate(text);
  }

  /** A line logged after close (something still running at shutdown): appended directly, nothing kept open. */
  private writeLate(text: string): void {
    try {
      if (this.path !== "") appendFileSync(this.path, text);
      else process.stderr.write(text);
    } catch {
      // The file is gone or unwritable: there is nowhere better to put the line.
    }
  }

  private openSink(file: string): LogSink {
    const target: LogTarget = file === "" ? { stream: "stderr" } : { file };
    const sink: LogSink = new LogSink(target, {
      maxBufferedBytes: this.maxBufferedBytes,
      flushDelayMs: FLUSH_DELAY_MS,
      onDropped: (lines) => this.droppedCounter?.(lines),
      onRecovered: (lines) =>
        this.warn(
          `log: ${lines} line${lines === 1 ? " was" : "s were"} dropped: more than ${this.maxBufferedBytes} bytes were waiting to be written to ${file === "" ? "stderr" : file} (log.max_buffered_bytes)`,
        ),
      onWriteError: (message) => {
        // A destination replaced since (a reload or reopen moved the log off a full disk) is named in the new one;
        // the current destination failing can only be told on stderr.
        if (sink !== this.sink) this.error(`log: lines written before the switch may be lost: ${message}`);
        else process.stderr.write(`hps: cannot write the log to ${file === "" ? "stderr" : file}: ${message}\n`);
      },
    });
    return sink;
  }
}
