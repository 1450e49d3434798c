// One HTTP request as the handler carries it from its admission to its access log line.
import type { ConnectionState } from "./keepalive.ts";
import { pathStartOf } from "./request-rules.ts";
import { QUERY_NOT_SCANNED } from "./static.ts";

/**
 * One request between its admission and its access log line. The synchronous path fills the handler's one object;
 * a request that waits for its body gets a copy of its own.
 */
export class Exchange {
  request: Request | null = null;
  /** The request target before `?`, as sent (or as Bun routed it). */
  rawPath = "/";
  /** Index of the path in request.url; -1 when Bun routed the request and the URL was not scanned. */
  pathStart = -1;
  /** Index of `?` in request.url (-1 for none), or QUERY_NOT_SCANNED. */
  queryStart = QUERY_NOT_SCANNED;
  /** The client address admission and the access log use ("-" when not needed or not known). */
  clientAddress = "-";
  /** The connection as the keep-alive counter tracks it, when it tracks connections. */
  connection: ConnectionState | null = null;
  /** The answer closes the connection (it carries Connection: close). */
  closeConnection = false;
  /** A lower bound for the bytes of the request's head (see requestHeadBytesLowerBound). */
  headBytes = 0;
  /** Request body bytes the server read (a Content-Length body within the limit, or a chunked body read here). */
  bodyBytesRead = 0;
  startedMs = 0;

  /**
   * Starts on `request`: `routedPath` is the raw path when Bun routed it, null when it must be read from the URL,
   * which is then scanned once (the path start serves the path, the access log's target and the query).
   */
  begin(request: Request, routedPath: string | null, startedMs: number): void {
    this.request = request;
    this.startedMs = startedMs;
    this.connection = null;
    this.closeConnection = false;
    this.bodyBytesRead = 0;
    this.clientAddress = "-";
    if (routedPath !== null) {
      this.rawPath = routedPath;
      this.pathStart = -1;
      this.queryStart = QUERY_NOT_SCANNED;
      return;
    }
    const url = request.url;
    const pathStart = pathStartOf(url);
    this.pathStart = pathStart;
    if (pathStart < 0) {
      this.rawPath = "/";
      this.queryStart = -1;
    } else {
      const queryStart = url.indexOf("?", pathStart);
      this.queryStart = queryStart;
      this.rawPath = queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
    }
  }

  /** Bytes of the target as far as it was read: all of it when the URL was scanned, else the routed path. */
  targetBytes(): number {
    return this.pathStart >= 0 ? this.request!.url.length - this.pathStart : this.rawPath.length;
  }

  /** The request target (path and query), as the access log writes it. */
  target(): string {
    const url = this.request!.url;
    const pathStart = this.pathStart >= 0 ? this.pathStart : pathStartOf(url);
    return pathStart < 0 ? "/" : url.slice(pathStart);
  }

  copy(): Exchange {
    const copy = new Exchange();
    copy.request = this.request;
    copy.rawPath = this.rawPath;
    copy.pathStart = this.pathStart;
    copy.queryStart = this.queryStart;
    copy.clientAddress = this.clientAddress;
    copy.connection = this.connection;
    copy.closeConnection = this.closeConnection;
    copy.headBytes = this.headBytes;
    copy.bodyBytesRead = this.bodyBytesRead;
    copy.startedMs = this.startedMs;
    return copy;
  }
}
