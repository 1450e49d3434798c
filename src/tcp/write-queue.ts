// The write path shared by echo and HPS/1: write at once when nothing waits, keep what the kernel did not take (in
// order), and bound it with flow control instead of a disconnect: above tcp.write_high_water_bytes the connection's
// socket is no longer read (so TCP slows the client), and reading resumes once a drain brings the output back under
// the low-water mark (half the high-water mark). A client that reads nothing is cut by the send timeout, not here.
import { Counter, type Stats } from "../stats/stats.ts";
import { type ConnectionState, pauseReading } from "./connection.ts";
import type { IdleClock } from "./echo.ts";

export class WriteQueue {
  private readonly stats: Stats;
  private readonly clock: IdleClock;
  /** tcp.write_high_water_bytes; a configuration reload sets it (every connection's next write sees it). */
  private highWaterBytes: number;
  private lowWaterBytes: number;
  /** Most bytes one connection had waiting at once (gauge; checked only when bytes are queued, off the fast path). */
  peakQueuedBytes = 0;

  constructor(stats: Stats, clock: IdleClock, highWaterBytes: number) {
    this.stats = stats;
    this.clock = clock;
    this.highWaterBytes = highWaterBytes;
    this.lowWaterBytes = highWaterBytes >>> 1;
  }

  /** The high-water mark in bytes (HPS/1 stops decoding a chunk once its output passes it). */
  get highWater(): number {
    return this.highWaterBytes;
  }

  setHighWater(bytes: number): void {
    this.highWaterBytes = bytes;
    this.lowWaterBytes = bytes >>> 1;
  }

  /**
   * Sends `view`. `isStable`: the bytes stay unchanged after this call (a chunk from a data event), so a queued
   * remainder can be a view; otherwise the remainder is copied. Returns false when the connection is closed.
   */
  send(connection: ConnectionState, view: Uint8Array, isStable: boolean): boolean {
    const socket = connection.socket;
    if (socket === null || connection.isClosed) return false;
    if (connection.queuedBytes === 0) {
      const taken = socket.write(view);
      if (taken === view.length) {
        this.stats.add(Counter.bytesWritten, taken);
        return true;
      }
      if (taken < 0) return false;
      this.stats.add(Counter.bytesWritten, taken);
      connection.lastWriteTick = this.clock.tick;
      const rest = view.subarray(taken);
      connection.pushQueued(isStable ? rest : rest.slice());
    } else {
      connection.pushQueued(isStable ? view : view.slice());
    }
    this.checkHighWater(connection);
    return true;
  }

  /** Writes the connection's batch buffer (responses built in this event) and empties it. */
  flushBatch(connection: ConnectionState): boolean {
    const bytes = connection.batchBytes;
    if (bytes === 0) return true;
    connection.batchBytes = 0;
    const socket = connection.socket;
    if (socket === null || connection.isClosed) return false;
    const batch = connection.batch;
    if (connection.queuedBytes === 0) {
      const taken = socket.write(batch, 0, bytes);
      if (taken === bytes) {
        this.stats.add(Counter.bytesWritten, taken);
        return true;
      }
      if (taken < 0) return false;
      this.stats.add(Counter.bytesWritten, taken);
      connection.lastWriteTick = this.clock.tick;
      connection.pushQueued(batch.slice(taken, bytes));
    } else {
      connection.pushQueued(batch.slice(0, bytes));
    }
    this.checkHighWater(connection);
    return true;
  }

  /**
   * On drain: writes what is queued, in order. Returns true when this drain brought a connection whose output was
   * full back under the low-water mark: the caller may read it again.
   */
  drain(connection: ConnectionState): boolean {
    const socket = connection.socket;
    if (socket === null || connection.isClosed) return false;
    const written = connection.writeQueued(socket);
    if (written > 0) {
      this.stats.add(Counter.bytesWritten, written);
      connection.lastWriteTick = this.clock.tick;
    }
    if (!connection.isOutputFull || connection.queuedBytes > this.lowWaterBytes) return false;
    connection.isOutputFull = false;
    return true;
  }

  private checkHighWater(connection: ConnectionState): void {
    const queuedBytes = connection.queuedBytes;
    if (queuedBytes > this.peakQueuedBytes) this.peakQueuedBytes = queuedBytes;
    if (connection.isOutputFull || queuedBytes <= this.highWaterBytes) return;
    connection.isOutputFull = true;
    pauseReading(connection);
  }
}
