// Levelled logger: one line per event with an ISO timestamp, to stderr or a file, flushed on close.
import type { FileSink } from "bun";

export type LogLevel = "error" | "warn" | "info" | "debug";
const LEVEL_RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  level: LogLevel;
  /** Path of the log file; empty for stderr. */
  file: string;
}

export class Logger {
  private readonly rank: number;
  private readonly sink: FileSink;
  private readonly ownsSink: boolean;

  constructor(options: LoggerOptions) {
    this.rank = LEVEL_RANK[options.level];
    this.ownsSink = options.file !== "";
    this.sink = this.ownsSink ? Bun.file(options.file).writer() : Bun.stderr.writer();
  }

  /** A logger that writes nothing: for tests and tools that do not want output. */
  static silent(): Logger {
    return new Logger({ level: "error", file: "/dev/null" });
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
    if (this.ownsSink) await this.sink.end();
  }

  private write(level: LogLevel, message: string): void {
    if (LEVEL_RANK[level] > this.rank) return;
    this.sink.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`);
    // Errors must survive a crash that follows them; other lines are batched by the sink.
    if (level === "error" || !this.ownsSink) this.sink.flush();
  }
}
