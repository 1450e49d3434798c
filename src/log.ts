// Levelled logger: one line per event with an ISO timestamp, to stderr or a file, flushed on close.
import type { FileSink } from "bun";
import { closeSync, openSync } from "node:fs";

export type LogLevel = "error" | "warn" | "info" | "debug";
const LEVEL_RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  level: LogLevel;
  /** Path of the log file; empty for stderr. */
  file: string;
}

export class Logger {
  private rank: number;
  private sink: FileSink;
  private readonly ownsSink: boolean;
  private readonly path: string;
  /** The log file's descriptor, opened for appending; null for stderr. */
  private fd: number | null;

  /** Throws (ENOENT, EACCES, ...) when the log file cannot be opened for appending. */
  constructor(options: LoggerOptions) {
    this.rank = LEVEL_RANK[options.level];
    this.ownsSink = options.file !== "";
    this.path = options.file;
    // A path-based FileSink writes from offset 0 over an existing file; an O_APPEND descriptor appends.
    this.fd = this.ownsSink ? openSync(options.file, "a") : null;
    this.sink = this.fd !== null ? Bun.file(this.fd).writer() : Bun.stderr.writer();
  }

  /** Closes and reopens the log file by its path (after logrotate moved it away); stderr needs nothing. */
  async reopen(): Promise<void> {
    if (this.fd === null) return;
    const next = openSync(this.path, "a");
    const [oldSink, oldFd] = [this.sink, this.fd];
    this.fd = next;
    this.sink = Bun.file(next).writer();
    await oldSink.flush();
    await oldSink.end();
    closeQuietly(oldFd);
  }

  /** A logger that writes nothing (no level is enabled, no file is opened): for tests and tools. */
  static silent(): Logger {
    const logger = new Logger({ level: "error", file: "" });
    logger.rank = -1;
    return logger;
  }

  /** From now on, writes `level` and more severe (a configuration reload). */
  setLevel(level: LogLevel): void {
    this.rank = LEVEL_RANK[level];
  }

  isEnabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] <= this.rank;
  }

  error(message: string): void {
    this.write("error", message);
  }

  warn(message: string): void {
    this.write("warn", message);
  }

  info(message: string): void {
    this.write("info", message);
  }

  debug(message: string): void {
    this.write("debug", message);
  }

  /** Writes a block of lines (a report) under one timestamp. */
  block(level: LogLevel, title: string, lines: readonly string[]): void {
    if (!this.isEnabled(level)) return;
    this.write(level, [title, ...lines.map((line) => `  ${line}`)].join("\n"));
  }

  async flush(): Promise<void> {
    await this.sink.flush();
  }

  async close(): Promise<void> {
    await this.sink.flush();
    if (this.fd === null) return;
    await this.sink.end();
    closeQuietly(this.fd);
  }

  private write(level: LogLevel, message: string): void {
    if (LEVEL_RANK[level] > this.rank) return;
    this.sink.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`);
    // Errors must survive a crash that follows them; other lines are batched by the sink.
    if (level === "error" || !this.ownsSink) this.sink.flush();
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed by its sink.
  }
}
