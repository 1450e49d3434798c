// Connections to handle once each at the end of this tick: one microtask for the whole batch, not one per connection.
import type { ConnectionState } from "./connection.ts";

/**
 * Connections to handle once each at the end of this tick (one microtask for the whole batch). `flag` marks a listed
 * connection so it is listed once; an entry whose connection closed, or was closed and reused, is skipped (its flag
 * is cleared by the reset on reuse).
 */
export class EndOfTickBatch {
  private readonly connections: ConnectionState[] = [];
  private readonly generations: number[] = [];
  private isQueued = false;
  private readonly flag: "isResumeScheduled" | "isFlushScheduled";
  private readonly handle: (connection: ConnectionState) => void;
  private readonly runAll = (): void => this.run();

  constructor(flag: "isResumeScheduled" | "isFlushScheduled", handle: (connection: ConnectionState) => void) {
    this.flag = flag;
    this.handle = handle;
  }

  add(connection: ConnectionState): void {
    if (connection[this.flag]) return;
    connection[this.flag] = true;
    this.connections.push(connection);
    this.generations.push(connection.generation);
    if (!this.isQueued) {
      this.isQueued = true;
      queueMicrotask(this.runAll);
    }
  }

  private run(): void {
    this.isQueued = false;
    const connections = this.connections;
    const generations = this.generations;
    // Bounded: a connection is listed at most once until its entry is handled (its flag).
    for (let i = 0; i < connections.length; i++) {
      const connection = connections[i]!;
      if (connection.generation !== generations[i] || connection.isClosed) continue;
      connection[this.flag] = false;
      this.handle(connection);
    }
    connections.length = 0;
    generations.length = 0;
  }
}
