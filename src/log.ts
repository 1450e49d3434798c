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

/** A log destination opened by Logger.prepareTarget and not yet in use: commit switches to it, abort closes it. */
export interface PreparedLogTarget {
  commit(): Promise<void>;
  abort(): void;
}

export class Logger {
  private rank: number;
  private sink: FileSink;
  /** Path of the log file; "" for stderr. */
  private path: string;
  /** The log file's descriptor, opened for appending; null for stderr. */
  private fd: number | null;

  /** Throws (ENOENT, EACCES, ...) when the log file cannot be opened for appending. */
  constructor(options: LoggerOptions) {
    this.rank = LEVEL_RANK[options.level];
    this.path = options.file;
    this.fd = openAppending(options.file);
    this.sink = sinkFor(this.fd);
  }

  /** Closes and reopens the log file by its path (after logrotate moved it away); stderr needs nothing. */
  async reopen(): Promise<void> {
    if (this.fd === null) return;
    await this.prepareTarget(this.path).commit();
  }

  /**
   * Opens `file` ("" = stderr) for appending without writing to it yet (a configuration reload's first phase);
   * throws (ENOENT, EACCES, ...) when it cannot be opened, changing nothing. Lines logged before commit go to the
   * current destination; commit flushes and closes it (unless it is stderr) and logs to the new one from then on.
   */
  prepareTarget(file: string): PreparedLogTarget {
    const fd = openAppending(file);
    let settled = false;
    return {
      // Never rejects: once the new destination is in place, a failure to flush the old one (a full disk, the reason
      // to move the log) must not leave the caller's reload half done; the old descriptor is closed either way.
      commit: async () => {
        if (settled) return;
        settled = true;
        const [oldSink, oldFd] = [this.sink, this.fd];
        this.path = file;
        this.fd = fd;
        this.sink = sinkFor(fd);
        try {
          await oldSink.flush();
          if (oldFd !== null) await oldSink.end();
        } catch (error) {
          this.error(`log: lines written before the switch may be lost: ${(error as Error).message}`);
        } finally {
          if (oldFd !== null) closeQuietly(oldFd);
        }
      },
      abort: () => {
        if (settled) return;
        settled = true;
        if (fd !== null) closeQuietly(fd);
      },
    };
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
    if (level === "error" || this.fd === null) this.sink.flush();
  }
}

/** An O_APPEND descriptor for `file`, or null for stderr (""). A path-based FileSink would write from offset 0 over an existing file. */
function openAppending(file: string): number | null {
  return file === "" ? null : openSync(file, "a");
}

function sinkFor(fd: number | null): FileSink {
  return fd !== null ? Bun.file(fd).writer() : Bun.stderr.writer();
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed by its sink.
  }
}
