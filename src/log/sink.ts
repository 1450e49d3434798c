// A log destination that never blocks the event loop: lines are batched in memory and written by a log writer thread;
// when more than a bound waits (a slow disk, a pipe nobody reads), new lines are dropped and counted.
//
// A file gets a writer thread of its own, so a destination that stops taking lines (a FIFO nobody reads, a hung
// network file system) holds back only itself: the server log still reaches its file while the access log is stuck.
// stdout and stderr share one writer per JS thread: they are often one pipe (2>&1), where two writers could
// interleave the pieces of batches larger than the pipe's atomic size.
import { closeSync, constants, openSync } from "node:fs";
import { LOG_WRITER_URL } from "../entry-points.ts";
import type { FromWriter, ToWriter } from "./writer-messages.ts";

export interface LogSinkOptions {
  /** Bytes waiting to be written (batched or with the writer) past which new lines are dropped. */
  readonly maxBufferedBytes: number;
  /** Longest time a line waits in the batch before it goes to the writer. */
  readonly flushDelayMs: number;
  /** Counts lines dropped (called each time some are). */
  readonly onDropped?: (lines: number) => void;
  /** Called once the sink takes lines again after dropping some, with how many it dropped meanwhile. */
  readonly onRecovered?: (lines: number) => void;
  /** A write failed (ENOSPC, EIO, EPIPE): that batch is dropped; called once per distinct message. */
  readonly onWriteError?: (message: string) => void;
}

/** Batched characters that send a batch to the writer at once. */
const BATCH_CHARS = 64 * 1024;
/** Acknowledged batches kept at the head of the in-flight lists before they are cut off. */
const COMPACT_AFTER_BATCHES = 1024;
/** Longest time close waits for the writer to take the last lines (a pipe nobody reads would hold it forever). */
export const CLOSE_WAIT_MS = 2000;

const encoder = new TextEncoder();

/** A log writer thread: the shared one for stdout and stderr, or a file sink's own. */
class WriterThread {
  private readonly worker: Worker;
  private readonly sinks = new Map<number, LogSink>();
  private nextSinkId = 1;
  /** Messages sent and not yet answered: the worker keeps the process alive only while there are some. */
  private outstanding = 0;

  constructor() {
    this.worker = new Worker(LOG_WRITER_URL.href);
    this.worker.unref();
    this.worker.onmessage = (event: MessageEvent<FromWriter>) => {
      if (--this.outstanding === 0) this.worker.unref();
      const message = event.data;
      const sink = this.sinks.get(message.sink);
      if (sink === undefined) return;
      if (message.kind === "written") sink.acknowledged(message.error);
      else {
        this.sinks.delete(message.sink);
        sink.closedByWriter();
      }
    };
  }

  register(sink: LogSink): number {
    const id = this.nextSinkId++;
    this.sinks.set(id, sink);
    return id;
  }

  unregister(id: number): void {
    this.sinks.delete(id);
  }

  send(message: ToWriter): void {
    if (this.outstanding++ === 0) this.worker.ref();
    if (message.kind === "write") this.worker.postMessage(message, [message.bytes.buffer as ArrayBuffer]);
    else this.worker.postMessage(message);
  }

  /** Stops the thread (a file sink closed); `then` runs once it has stopped (it may be inside a write until then). */
  terminate(then: () => void): void {
    this.worker.addEventListener("close", then, { once: true });
    this.worker.terminate();
  }
}

/** The writer thread of this JS thread (main or an I/O thread) for stdout and stderr, started with the first line. */
let stdioWriter: WriterThread | null = null;
function sharedStdioWriter(): WriterThread {
  stdioWriter ??= new WriterThread();
  return stdioWriter;
}

/**
 * Opens a log file for appending without ever waiting: O_NONBLOCK makes a FIFO with no reader an error (ENXIO) at
 * once instead of an open that blocks the event loop until some process reads it, and lets the writer thread wait
 * out a full FIFO itself. Regular files ignore the flag.
 */
function openForAppend(path: string): number {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK, 0o666);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENXIO") throw error;
    const reason = new Error(`${path} is a FIFO that no process has open for reading: start its reader first`);
    (reason as NodeJS.ErrnoException).code = "ENXIO";
    throw reason;
  }
}

/** Where a sink writes: a file opened for appending, or the process's stdout or stderr. */
export type LogTarget = { readonly file: string } | { readonly stream: "stdout" | "stderr" };

/** Lines written to one descriptor through the writer thread, at most maxBufferedBytes waiting. */
export class LogSink {
  private readonly options: LogSinkOptions;
  private maxBufferedBytes: number;
  private readonly fd: number;
  /** The descriptor is a file this sink opened (closed with it); stdout and stderr are not. */
  private readonly ownsFd: boolean;
  /** Started with the first batch: the sink's own (a file) or the JS thread's stdio writer. */
  private writerThread: WriterThread | null = null;
  private id = 0;
  private pending = "";
  private pendingLines = 0;
  /** Batches with the writer, oldest first: their bytes and lines. */
  private readonly inFlightBytes: number[] = [];
  private readonly inFlightLines: number[] = [];
  private inFlightTotalBytes = 0;
  private inFlightHead = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly dispatchSoon = () => {
    this.timer = null;
    this.dispatch();
  };
  /** Batches sent and acknowledged so far; flush waits for the first to reach the second's value at its call. */
  private sent = 0;
  private acknowledgedCount = 0;
  private waiters: Array<{ until: number; resolve: () => void }> = [];
  private droppedSinceRecovery = 0;
  private lastError: string | null = null;
  private closing: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;

  /** Opens `target` (a file for appending: throws ENOENT, EACCES... when it cannot be opened). */
  constructor(target: LogTarget, options: LogSinkOptions) {
    this.options = options;
    this.maxBufferedBytes = options.maxBufferedBytes;
    if ("file" in target) {
      this.fd = openForAppend(target.file);
      this.ownsFd = true;
    } else {
      this.fd = target.stream === "stdout" ? 1 : 2;
      this.ownsFd = false;
    }
  }

  /** close() was called: write() takes nothing from then on. */
  get isClosed(): boolean {
    return this.closing !== null;
  }

  /** Characters batched or with the writer now (the bound applies to this). */
  get bufferedBytes(): number {
    return this.pending.length + this.inFlightTotalBytes;
  }

  /**
   * Takes `text` (`lines` complete lines) unless that would pass the bound: then drops it, counts it, and returns
   * false. After close it takes nothing and returns false (the owner writes such a late line itself). `urgent` sends the batch at once (errors should reach the disk before a crash that may follow them).
   */
  write(text: string, lines: number, urgent: boolean): boolean {
    if (this.closing !== null) return false;
    if (this.pending.length + text.length + this.inFlightTotalBytes > this.maxBufferedBytes) {
      this.droppedSinceRecovery += lines;
      this.options.onDropped?.(lines);
      return false;
    }
    if (this.droppedSinceRecovery > 0) {
      const dropped = this.droppedSinceRecovery;
      this.droppedSinceRecovery = 0;
      this.options.onRecovered?.(dropped);
    }
    this.pending += text;
    this.pendingLines += lines;
    if (urgent || this.pending.length >= BATCH_CHARS) this.dispatch();
    else if (this.timer === null) this.timer = setTimeout(this.dispatchSoon, this.options.flushDelayMs);
    return true;
  }

  /** From now on, lines are dropped past `bytes` waiting (a configuration reload). */
  setMaxBufferedBytes(bytes: number): void {
    this.maxBufferedBytes = bytes;
  }

  /** Sends the batch to the writer and waits until everything taken so far is written (or failed). */
  flush(): Promise<void> {
    this.dispatch();
    if (this.acknowledgedCount >= this.sent) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ until: this.sent, resolve }));
  }

  /**
   * Writes what is batched, then closes the file (stdout and stderr stay open). Waits at most `waitMs` for the
   * writer: lines it has not taken by then are left to it (a stuck pipe) and the sink is closed for new lines.
   */
  close(waitMs = CLOSE_WAIT_MS): Promise<void> {
    this.closing ??= (async () => {
      this.dispatch();
      if (this.ownsFd && this.acknowledgedCount === this.sent) {
        // Nothing is with the writer: close the file here, and stop the writer if it ever started.
        closeQuietly(this.fd);
        this.writerThread?.terminate(() => {});
        return;
      }
      let isClosed = false;
      const done = this.ownsFd
        ? new Promise<void>((resolve) => {
            this.resolveClosed = () => {
              isClosed = true;
              resolve();
            };
            this.writer().send({ kind: "close", sink: this.ensureId(), fd: this.fd });
          })
        : this.flush();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
      });
      await Promise.race([done, gaveUp]);
      clearTimeout(timer);
      if (!this.ownsFd) {
        if (this.id !== 0) this.writer().unregister(this.id);
        return;
      }
      // The file's own writer is done with it, or stuck in a destination that takes nothing: stop it, and close the
      // descriptor once it has stopped (closed earlier, its number could be reused by a socket the writer then hits).
      const fd = this.fd;
      this.writer().terminate(() => {
        if (!isClosed) closeQuietly(fd);
      });
    })();
    return this.closing;
  }

  /** The writer finished the oldest batch (error: why it could not). */
  acknowledged(error: string | null): void {
    const head = this.inFlightHead++;
    this.inFlightTotalBytes -= this.inFlightBytes[head]!;
    const lines = this.inFlightLines[head]!;
    if (this.inFlightHead === this.inFlightBytes.length) {
      this.inFlightBytes.length = 0;
      this.inFlightLines.length = 0;
      this.inFlightHead = 0;
    } else if (this.inFlightHead >= COMPACT_AFTER_BATCHES) {
      // A writer that is never quite done (steady traffic) must not grow these lists for ever.
      this.inFlightBytes.splice(0, this.inFlightHead);
      this.inFlightLines.splice(0, this.inFlightHead);
      this.inFlightHead = 0;
    }
    this.acknowledgedCount++;
    if (error !== null) {
      this.options.onDropped?.(lines);
      if (error !== this.lastError) this.options.onWriteError?.(error);
    }
    this.lastError = error;
    if (this.waiters.length > 0) {
      const done = this.acknowledgedCount;
      this.waiters = this.waiters.filter((waiter) => {
        if (waiter.until > done) return true;
        waiter.resolve();
        return false;
      });
    }
  }

  /** The writer closed this sink's file (after every write before it). */
  closedByWriter(): void {
    this.resolveClosed?.();
    this.resolveClosed = null;
  }

  private writer(): WriterThread {
    this.writerThread ??= this.ownsFd ? new WriterThread() : sharedStdioWriter();
    return this.writerThread;
  }

  private ensureId(): number {
    if (this.id === 0) this.id = this.writer().register(this);
    return this.id;
  }

  private dispatch(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending === "") return;
    const bytes = encoder.encode(this.pending);
    this.inFlightBytes.push(bytes.length);
    this.inFlightLines.push(this.pendingLines);
    this.inFlightTotalBytes += bytes.length;
    this.pending = "";
    this.pendingLines = 0;
    this.sent++;
    this.writer().send({ kind: "write", sink: this.ensureId(), fd: this.fd, bytes });
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}
