// One keep-alive HTTP/1.1 connection to an upstream server: the socket, its response parser, the exchange it is
// carrying now, and the write side's backpressure.
import type { Socket, SocketHandler } from "bun";
import type { ConnectionPool, Poolable } from "./pool.ts";
import { ResponseParser, type ResponseEvents } from "./response-parser.ts";
import type { UpstreamServer } from "./server.ts";
import type { Timed, TimeoutSweep } from "./timeouts.ts";

/** Why a connection was lost in the middle of an exchange. */
export const Lost = {
  /** The server closed the connection (or reset it) before the response was complete. */
  CLOSED: 0,
  /** read_timeout_s passed with no byte moving either way. */
  TIMEOUT: 1,
  /** The bytes received are not an HTTP/1.1 response. */
  BAD_RESPONSE: 2,
} as const;
export type LostReason = (typeof Lost)[keyof typeof Lost];

/** The request/response carried by a connection (see http-exchange.ts); the connection reports to it. */
export interface Exchange extends ResponseEvents {
  /** All response bytes of one socket read were parsed (the events for them have fired). */
  onParsed(): void;
  /** Everything written has reached the socket (after write() returned false). */
  onWritable(): void;
  /** The connection is gone before the response completed; `detail` says why (an error code, a parse error). */
  onLost(reason: LostReason, detail: string): void;
}

/** Why a connection could not be opened. */
export class ConnectFailure extends Error {
  /** "timeout", or the system's error code ("ECONNREFUSED", "ENOTFOUND"...). */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = "ConnectFailure";
    this.code = code;
  }
}

export class UpstreamConnection implements Poolable, ResponseEvents, Timed {
  readonly server: UpstreamServer;
  private readonly pool: ConnectionPool<UpstreamConnection>;
  private readonly sweep: TimeoutSweep;
  lastActivityMs = 0;
  timeoutMs = Number.POSITIVE_INFINITY;
  sweepIndex = -1;
  private readonly parser: ResponseParser;
  private socket: Socket<UpstreamConnection> | null = null;
  private exchange: Exchange | null = null;
  idleIndex = -1;
  /** Responses completed on this connection: above 0 means the server may have closed it while it was idle. */
  responses = 0;
  /** Response bytes received for the current exchange (0 when the server never answered). */
  receivedBytes = 0;
  isClosed = false;
  /** Bytes write() could not hand to the socket yet; sent on drain. */
  private unwritten: Uint8Array | null = null;
  /** The socket error seen before the close, if any ("ECONNRESET"). */
  private errorCode = "";
  /** Connect timed out before the socket opened: the socket is closed as soon as it does. */
  private isAbandoned = false;
  /**
   * Inside parser.execute: Bun runs a socket's close handler synchronously within end()/terminate(), which parser
   * callbacks can reach (a response with Connection: close releases the connection), and the parser must not be
   * finished or freed under its own execute.
   */
  private isParsing = false;
  /** pauseReading(true) is in force (the client of the current exchange is behind). */
  private isReadingPaused = false;

  private constructor(server: UpstreamServer, pool: ConnectionPool<UpstreamConnection>, sweep: TimeoutSweep) {
    this.server = server;
    this.pool = pool;
    this.sweep = sweep;
    this.parser = new ResponseParser(this);
  }

  /**
   * Opens a connection to `server` within `timeoutMs`; rejects with a ConnectFailure. The connection counts in
   * server.connections from now until it closes.
   */
  static open(
    server: UpstreamServer,
    pool: ConnectionPool<UpstreamConnection>,
    sweep: TimeoutSweep,
    timeoutMs: number,
  ): Promise<UpstreamConnection> {
    const connection = new UpstreamConnection(server, pool, sweep);
    server.connections += 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        connection.isAbandoned = true;
        reject(new ConnectFailure("timeout", `connect to ${server.address} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      Bun.connect<UpstreamConnection>({
        hostname: server.host,
        port: server.port,
        data: connection,
        socket: HANDLERS,
      }).then(
        (socket) => {
          clearTimeout(timer);
          if (connection.isAbandoned) {
            socket.terminate();
            return;
          }
          connection.socket = socket;
          socket.setNoDelay(true);
          connection.lastActivityMs = connection.sweep.nowMs;
          connection.sweep.track(connection);
          resolve(connection);
        },
        (error: unknown) => {
          clearTimeout(timer);
          connection.markClosed();
          if (connection.isAbandoned) return;
          const code = (error as { code?: string }).code ?? "ECONNREFUSED";
          reject(new ConnectFailure(code, `cannot connect to ${server.address}: ${code}`));
        },
      );
    });
  }

  /** Starts an exchange: its events go to `exchange`; no byte may move for `readTimeoutSeconds` (0 = no limit). */
  begin(exchange: Exchange, readTimeoutSeconds: number): void {
    this.exchange = exchange;
    this.receivedBytes = 0;
    this.timeoutMs = readTimeoutSeconds === 0 ? Number.POSITIVE_INFINITY : readTimeoutSeconds * 1000;
    this.lastActivityMs = this.sweep.nowMs;
  }

  /**
   * Writes request bytes (a string must be ASCII). True when the socket took them all; false when some wait for the socket to drain
   * (exchange.onWritable fires then; write nothing more before it).
   */
  write(data: Uint8Array | string): boolean {
    const socket = this.socket;
    if (socket === null || this.isClosed) return false;
    this.lastActivityMs = this.sweep.nowMs;
    const written = socket.write(data);
    // A string is ASCII (requestHead hands non-ASCII heads over as latin1 bytes): one byte per character.
    const total = typeof data === "string" ? data.length : data.byteLength;
    if (written === total) return true;
    if (written < 0) return false; // closing: the close event reports it
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    this.unwritten = bytes.subarray(written);
    return false;
  }

  /** Stops or restarts reading responses (the client is slower than the server); the read timeout is off meanwhile. */
  pauseReading(isPaused: boolean, readTimeoutSeconds: number): void {
    const socket = this.socket;
    if (socket === null || this.isClosed) return;
    this.lastActivityMs = this.sweep.nowMs;
    this.isReadingPaused = isPaused;
    if (isPaused) {
      socket.pause();
      this.timeoutMs = Number.POSITIVE_INFINITY;
    } else {
      socket.resume();
      this.timeoutMs = readTimeoutSeconds === 0 ? Number.POSITIVE_INFINITY : readTimeoutSeconds * 1000;
    }
  }

  /**
   * The exchange is over: with `reusable` (the response and the request were complete and both sides keep the
   * connection alive) it goes back to the pool, otherwise it is closed.
   */
  release(reusable: boolean): void {
    this.exchange = null;
    if (this.isClosed) return;
    this.responses += 1;
    if (this.isReadingPaused) {
      // The read that paused the server (the client behind) also completed the response: the next exchange on this
      // connection must be read (a paused pooled connection would leave its response unread until read_timeout_s).
      this.isReadingPaused = false;
      this.socket?.resume();
    }
    if (!reusable || this.unwritten !== null || !this.pool.put(this)) this.close();
  }

  /** Ends the exchange and drops the connection at once (the client went away mid-response). */
  abort(): void {
    this.exchange = null;
    if (!this.isClosed) this.socket?.terminate();
  }

  isReusable(): boolean {
    return !this.isClosed && this.socket !== null && this.socket.readyState === 1;
  }

  startIdle(idleTimeoutSeconds: number): void {
    this.timeoutMs = idleTimeoutSeconds * 1000;
    this.lastActivityMs = this.sweep.nowMs;
  }

  close(): void {
    if (this.isClosed) return;
    this.socket?.end();
  }

  // Response parser events, passed to the exchange.

  onHead(status: number, statusText: string, headers: string[], keepAlive: boolean, upgrade: boolean): boolean {
    const exchange = this.exchange;
    if (exchange === null) return true;
    return exchange.onHead(status, statusText, headers, keepAlive, upgrade);
  }

  onBody(chunk: Uint8Array): void {
    this.exchange?.onBody(chunk);
  }

  onComplete(): void {
    this.exchange?.onComplete();
  }

  // Socket events (see HANDLERS).

  handleData(chunk: Uint8Array): void {
    const exchange = this.exchange;
    if (exchange === null) {
      // Bytes nobody asked for (an idle connection): the server is confused; never reuse it.
      this.socket?.terminate();
      return;
    }
    this.receivedBytes += chunk.byteLength;
    this.lastActivityMs = this.sweep.nowMs;
    this.isParsing = true;
    const problem = this.parser.execute(chunk);
    this.isParsing = false;
    if (this.isClosed) {
      this.parser.close();
      return;
    }
    if (problem !== null) {
      this.lose(Lost.BAD_RESPONSE, problem);
      this.socket?.terminate();
      return;
    }
    // The response may have completed (and the exchange moved on) during execute.
    if (this.exchange === exchange) exchange.onParsed();
  }

  handleDrain(): void {
    const unwritten = this.unwritten;
    if (unwritten === null) return;
    this.lastActivityMs = this.sweep.nowMs;
    const written = this.socket!.write(unwritten);
    if (written < 0) return;
    if (written < unwritten.byteLength) {
      this.unwritten = unwritten.subarray(written);
      return;
    }
    this.unwritten = null;
    this.exchange?.onWritable();
  }

  /** The sweep found the connection idle too long: a response overdue (read_timeout_s), or an idle pooled one. */
  onIdleTimeout(): void {
    if (this.exchange !== null) this.lose(Lost.TIMEOUT, `no byte for ${this.server.address} within read_timeout_s`);
    this.socket?.terminate();
  }

  handleError(error: Error): void {
    this.errorCode = (error as { code?: string }).code ?? error.message;
  }

  /** `error`: why the connection ended, when it did not end cleanly (Bun reports a reset here, not to `error`). */
  handleClose(error: Error | undefined): void {
    if (this.isClosed) return;
    if (error !== undefined && this.errorCode === "")
      this.errorCode = (error as { code?: string }).code ?? error.message;
    const exchange = this.exchange;
    if (exchange !== null && this.receivedBytes > 0 && !this.isParsing) {
      // A body that runs until the connection closes is complete now (unless it was reset); anything else is cut short.
      const problem = this.parser.finish(this.errorCode !== "");
      if (problem !== null && this.exchange === exchange) this.lose(Lost.BAD_RESPONSE, problem);
    }
    if (this.exchange !== null) this.lose(Lost.CLOSED, this.errorCode || "closed by the server");
    this.markClosed();
  }

  private lose(reason: LostReason, detail: string): void {
    const exchange = this.exchange;
    this.exchange = null;
    exchange?.onLost(reason, detail);
  }

  private markClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.sweep.untrack(this);
    this.server.connections -= 1;
    this.pool.remove(this);
    this.unwritten = null;
    if (!this.isParsing) this.parser.close(); // else handleData closes it once execute returns
  }
}

/** One handler object for every upstream connection: the connection is the socket's data. */
const HANDLERS: SocketHandler<UpstreamConnection> = {
  data: (socket, chunk) => socket.data.handleData(chunk),
  drain: (socket) => socket.data.handleDrain(),
  error: (socket, error) => socket.data.handleError(error),
  close: (socket, error) => socket.data.handleClose(error),
  connectError: () => {}, // the connect promise rejects; UpstreamConnection.open reports it
};
