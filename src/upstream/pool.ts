// Keep-alive connections to one upstream server: idle ones kept for reuse (newest first), up to a bound.
import type { UpstreamServer } from "./server.ts";

/** What the pool needs of a connection. */
export interface Poolable {
  /** Position in the pool's idle list; -1 while the connection is busy (or not pooled). */
  idleIndex: number;
  /** Whether the connection can carry another request (open, nothing unread). */
  isReusable(): boolean;
  /** Starts idling: arms the idle timeout (keepalive_timeout_s). */
  startIdle(idleTimeoutSeconds: number): void;
  /** Closes the connection (its close removes it from the pool). */
  close(): void;
}

export class ConnectionPool<C extends Poolable> {
  private readonly idle: C[] = [];
  private readonly server: UpstreamServer;
  private keepaliveConnections: number;
  private keepaliveTimeoutSeconds: number;
  private isStopped = false;

  constructor(server: UpstreamServer, keepaliveConnections: number, keepaliveTimeoutSeconds: number) {
    this.server = server;
    this.keepaliveConnections = keepaliveConnections;
    this.keepaliveTimeoutSeconds = keepaliveTimeoutSeconds;
  }

  /** A reload changed keepalive_connections or keepalive_timeout_s; idle connections past the new bound are closed. */
  configure(keepaliveConnections: number, keepaliveTimeoutSeconds: number): void {
    this.keepaliveConnections = keepaliveConnections;
    this.keepaliveTimeoutSeconds = keepaliveTimeoutSeconds;
    while (this.idle.length > keepaliveConnections) this.takeLast()!.close();
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** The most recently used idle connection that can still carry a request, or null (connect a new one). */
  take(): C | null {
    for (;;) {
      const connection = this.takeLast();
      if (connection === null) return null;
      if (connection.isReusable()) return connection;
      connection.close();
    }
  }

  /** Keeps a connection whose exchange is done for reuse; false when the pool has no room (the caller closes it). */
  put(connection: C): boolean {
    if (this.isStopped || this.server.isRemoved || this.idle.length >= this.keepaliveConnections) return false;
    connection.idleIndex = this.idle.length;
    this.idle.push(connection);
    this.server.idleConnections += 1;
    connection.startIdle(this.keepaliveTimeoutSeconds);
    return true;
  }

  /** An idle connection closed (the server closed it, or it idled out): it leaves the pool. */
  remove(connection: C): void {
    const index = connection.idleIndex;
    if (index < 0) return;
    const idle = this.idle;
    const last = idle.pop()!;
    if (last !== connection) {
      idle[index] = last;
      last.idleIndex = index;
    }
    connection.idleIndex = -1;
    this.server.idleConnections -= 1;
  }

  /** Closes every idle connection; connections busy now are closed when their exchange ends (put refuses them). */
  stop(): void {
    this.isStopped = true;
    this.closeIdle();
  }

  /** Closes every idle connection (a removed server, a stop). */
  closeIdle(): void {
    for (let connection = this.takeLast(); connection !== null; connection = this.takeLast()) connection.close();
  }

  private takeLast(): C | null {
    const connection = this.idle.pop();
    if (connection === undefined) return null;
    connection.idleIndex = -1;
    this.server.idleConnections -= 1;
    return connection;
  }
}
