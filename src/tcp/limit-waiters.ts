// HPS/1 connections that stopped reading at custom.max_in_flight while the runner could still take tasks. When the
// runner becomes saturated (it answers busy), they read on: the frames they hold are then answered busy at once
// instead of when one of their own tasks ends.
import type { ConnectionState } from "./connection.ts";

/** The list is compacted when it reaches this length (or twice the connections still listed, if more). */
const MIN_COMPACT_ENTRIES = 64;

export class LimitWaiters {
  private readonly connections: ConnectionState[] = [];
  private readonly generations: number[] = [];
  private compactAt = MIN_COMPACT_ENTRIES;

  get length(): number {
    return this.connections.length;
  }

  /**
   * Lists a connection once (its flag). Entries of connections that closed since, or read on by themselves, stay
   * until the list is compacted, which happens when it has doubled: it holds at most twice the waiting connections.
   */
  add(connection: ConnectionState): void {
    if (connection.isWaitingAtLimit) return;
    if (this.connections.length >= this.compactAt) this.compact();
    connection.isWaitingAtLimit = true;
    this.connections.push(connection);
    this.generations.push(connection.generation);
  }

  /** Hands every connection still waiting to `wake` and empties the list. */
  wakeAll(wake: (connection: ConnectionState) => void): void {
    const connections = this.connections;
    const generations = this.generations;
    for (let i = 0; i < connections.length; i++) {
      const connection = connections[i]!;
      // Skipped: closed and reused since (the reset cleared its flag).
      if (connection.generation !== generations[i] || !connection.isWaitingAtLimit) continue;
      connection.isWaitingAtLimit = false;
      wake(connection);
    }
    connections.length = 0;
    generations.length = 0;
  }

  private compact(): void {
    const connections = this.connections;
    const generations = this.generations;
    let kept = 0;
    for (let i = 0; i < connections.length; i++) {
      const connection = connections[i]!;
      if (connection.generation !== generations[i] || !connection.isWaitingAtLimit) continue;
      connections[kept] = connection;
      generations[kept++] = generations[i]!;
    }
    connections.length = kept;
    generations.length = kept;
    this.compactAt = Math.max(MIN_COMPACT_ENTRIES, 2 * kept);
  }
}
