// The http protocol: Bun.serve wiring — admission, methods, limits, static files, keep-alive, stats, access log.
import type { Server } from "bun";
import { changedParts } from "../config/reload.ts";
import type { Config } from "../config/schema.ts";
import {
  UNCHANGED,
  type Listener,
  type PreparedReconfigure,
  type ServerContext,
  type StopOptions,
} from "../context.ts";
import type { Logger } from "../log.ts";
import { Refusal, retryAfterSeconds, type Admission } from "../net/admission.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { AccessLog } from "./access-log.ts";
import { KeepAliveCounter, type ConnectionState } from "./keepalive.ts";
import { requireDirectory } from "./root.ts";
import { RouteTable, type RouteHandler, type StaticRouteSource } from "./routes.ts";
import { QUERY_NOT_SCANNED, StaticFiles, errorBodyBytes, errorResponse } from "./static.ts";

const ALLOW = "GET, HEAD, OPTIONS";
/** Idle connections are forgotten by the keep-alive counter after this when keepalive_timeout_s is 0 (never). */
const KEEPALIVE_FORGET_NEVER_MS = 300_000;
/** Longest time between sweeps of idle connections (they hold admission slots until swept). */
const SWEEP_MAX_INTERVAL_MS = 1000;
/**
 * How long responses are expected to take, for connection accounting (keepalive.ts): a response keeps its
 * connection busy until its body could have been sent at slowestClientBytesPerSecond (unless the server is seen
 * with no response in progress first), and the request signal of one of watchedBodyBytes or more is watched for
 * an abort (the client went away mid-response: its slot is freed at once). The watch costs ~1-3 us per response,
 * under 1 % of sending a MiB.
 */
const RESPONSE_TIMING = { slowestClientBytesPerSecond: 64 * 1024, watchedBodyBytes: 1024 * 1024 } as const;
/** Most cached paths given a native Bun route (the rest are served through fetch, just as correctly). */
const MAX_ROUTES = 4096;
/** Delay before new cached paths get their routes: a burst of new paths costs one server.reload. */
const ROUTES_RELOAD_DELAY_MS = 50;
/** How often a graceful stop looks at the requests still in flight. */
const DRAIN_POLL_MS = 10;

/**
 * Per-request logic, built once per configuration (see HttpSet); `fetch` is a bound method, so Bun.serve gets one
 * function until a reload swaps in another handler.
 *
 * Connections (see keepalive.ts): a peer (address, port) seen for the first time is a new connection. When
 * http.connection_limits is on, it is admitted there (admitConnection: allow/deny, max_connections,
 * max_connections_per_ip) and its slot is released when the connection is told to close, asks to close, goes away
 * during a long response, or has been idle past http.keepalive_timeout_s. Per request: allow/deny (admitRequest,
 * when the client address can change within a connection or connections are not admitted) and the rate limiter.
 */
class HttpHandler {
  private readonly stats: Stats;
  private readonly logger: Logger;
  private readonly site: StaticFiles;
  private readonly accessLog: AccessLog | null;
  /** Tracks connections when a keep-alive limit or connection limits need them; null otherwise. */
  private readonly connections: KeepAliveCounter | null;
  private readonly admission: Admission;
  /** http.connection_limits: new connections go through admitConnection. */
  private readonly countsConnections: boolean;
  /** net.allow / net.deny are set: checked per request unless the connection's admission already did. */
  private readonly hasAccessLists: boolean;
  private readonly rateLimited: boolean;
  private readonly rateLimitHeaders: boolean;
  private readonly readsForwardedFor: boolean;
  private readonly needsPeer: boolean;
  private readonly maxRequestBytes: number;
  private readonly optionsInit: ResponseInit = { status: 204, headers: { Allow: ALLOW } };
  /** Status and body bytes of the answer being built (set by answer() and the refusals; read by finish()). */
  private status = 200;
  private bodyBytes = 0;

  constructor(
    context: ServerContext,
    site: StaticFiles,
    accessLog: AccessLog | null,
    connections: KeepAliveCounter | null,
  ) {
    const { config } = context;
    this.stats = context.stats;
    this.logger = context.logger;
    this.site = site;
    this.accessLog = accessLog;
    this.connections = connections;
    this.admission = context.admission;
    this.countsConnections = config.http.connection_limits;
    this.hasAccessLists = config.net.allow.length > 0 || config.net.deny.length > 0;
    this.rateLimited = config.rate_limit.enabled;
    // From the configuration, not the admission: a reload builds this handler before it reconfigures the admission.
    this.rateLimitHeaders = config.rate_limit.enabled && config.rate_limit.headers;
    this.readsForwardedFor = config.net.trusted_proxies.length > 0;
    this.needsPeer = connections !== null || accessLog !== null || this.hasAccessLists || this.rateLimited;
    this.maxRequestBytes = config.limits.max_request_bytes;
  }

  /** Every request whose path has no route of its own. */
  readonly fetch = (request: Request, server: Server<undefined>): Response | Promise<Response> => {
    const startedMs = performance.now();
    try {
      return this.handle(request, server, null, startedMs);
    } catch (error) {
      return this.failed(request, server, error, startedMs);
    }
  };

  /**
   * The route handler of one cached path (made once per path, see RouteTable): Bun has matched the path
   * natively, so the URL is not parsed and the cache key is the same string every time.
   */
  routeHandler(rawPath: string): RouteHandler {
    return (request, server) => {
      const startedMs = performance.now();
      try {
        return this.handle(request, server, rawPath, startedMs);
      } catch (error) {
        return this.failed(request, server, error, startedMs);
      }
    };
  }

  /**
   * One request; `routedPath` is the raw path when Bun routed it here, null when it must be read from the URL.
   * Synchronous except for a request with a body of unknown length (Transfer-Encoding), which is read first.
   */
  private handle(
    request: Request,
    server: Server<undefined>,
    routedPath: string | null,
    startedMs: number,
  ): Response | Promise<Response> {
    // The URL is scanned once: the path start serves the path, the access log's target and the query.
    let rawPath: string;
    let pathStart = -1;
    let queryStart = QUERY_NOT_SCANNED;
    if (routedPath !== null) {
      rawPath = routedPath;
    } else {
      const url = request.url;
      pathStart = url.indexOf("/", 8); // after "http://" and at least one host character
      if (pathStart < 0) {
        rawPath = "/";
        queryStart = -1;
      } else {
        queryStart = url.indexOf("?", pathStart);
        rawPath = queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
      }
    }
    const method = request.method;
    const isHead = method === "HEAD";
    const headers = request.headers;

    // requestIP is the dearest call here (a getpeername system call per request): made once, and only when something needs the peer.
    const peer = this.needsPeer ? server.requestIP(request) : null;
    const clientAddress =
      peer === null
        ? "-"
        : this.readsForwardedFor
          ? this.admission.clientAddress(peer.address, headers.get("x-forwarded-for"))
          : peer.address;
    const connections = this.connections;
    let connection: ConnectionState | null = null;
    let closeConnection = false;
    let response: Response;
    // biome-ignore lint/suspicious/noConfusingLabels: one labelled block gives every refusal a single exit to finish() without a closure per request.
    answer: {
      let newConnection = false;
      if (connections !== null && peer !== null) {
        connection = connections.find(peer.address, peer.port, startedMs);
        if (connection === null) {
          newConnection = true;
          if (this.countsConnections) {
            const refusal = this.admission.admitConnection(clientAddress);
            if (refusal !== Refusal.NONE) {
              // No entry is kept: the connection is closed after this answer.
              closeConnection = true;
              response =
                refusal === Refusal.DENIED
                  ? this.refuse(403, isHead, CLOSE)
                  : this.refuse(503, isHead, RETRY_AFTER_CLOSE);
              break answer;
            }
          }
          connection = connections.open(peer.address, peer.port, clientAddress, this.countsConnections, startedMs);
        }
      }
      // allow/deny per request unless this connection's admission has just checked this very address.
      if (
        this.hasAccessLists &&
        !(newConnection && this.countsConnections) &&
        (!this.countsConnections || this.readsForwardedFor) &&
        this.admission.admitRequest(clientAddress) !== Refusal.NONE
      ) {
        response = this.refuse(403, isHead, undefined);
        break answer;
      }
      if (this.rateLimited) {
        const waitMs = this.admission.takeToken(clientAddress, startedMs);
        if (waitMs !== 0) {
          const limits = this.admission.rateLimitHeaders(clientAddress, startedMs);
          response = this.refuse(429, isHead, {
            "Retry-After": String(retryAfterSeconds(waitMs)),
            "RateLimit-Limit": String(limits.limit),
            "RateLimit-Remaining": String(limits.remaining),
            "RateLimit-Reset": String(limits.resetSeconds),
          });
          break answer;
        }
      }
      const contentLength = headers.get("content-length");
      if (contentLength !== null) {
        if (Number(contentLength) > this.maxRequestBytes) {
          // The body is never read; Connection: close makes Bun drop the connection instead of skipping the body.
          this.stats.inc(Counter.requestsTooLarge);
          closeConnection = true;
          response = this.refuse(413, isHead, CLOSE);
          break answer;
        }
      } else if (request.body !== null && headers.get("transfer-encoding") !== null) {
        // (request.body first: Bun gives GET and HEAD no body, whatever they send, and the getter is cheaper than a header lookup.)
        // A body of unknown length (Transfer-Encoding, chunked): read up to the limit before answering.
        return this.afterBody(request, server, rawPath, queryStart, pathStart, clientAddress, connection, startedMs);
      }
      response = this.answer(request, method, headers, rawPath, queryStart, clientAddress, startedMs);
    }
    return this.finish(request, response, clientAddress, connection, closeConnection, pathStart, startedMs);
  }

  /** A request with a body of unknown length: read it up to limits.max_request_bytes, then answer (413 when over). */
  private async afterBody(
    request: Request,
    server: Server<undefined>,
    rawPath: string,
    queryStart: number,
    pathStart: number,
    clientAddress: string,
    connection: ConnectionState | null,
    startedMs: number,
  ): Promise<Response> {
    try {
      const verdict = await readBodyWithin(request.body!, this.maxRequestBytes);
      if (verdict === BODY_WITHIN_LIMIT) {
        const response = this.answer(
          request,
          request.method,
          request.headers,
          rawPath,
          queryStart,
          clientAddress,
          startedMs,
        );
        return this.finish(request, response, clientAddress, connection, false, pathStart, startedMs);
      }
      // Too large, or the body could not be read (the client went away): the rest is not read; the connection is closed.
      if (verdict === BODY_TOO_LARGE) this.stats.inc(Counter.requestsTooLarge);
      const response = this.refuse(verdict === BODY_TOO_LARGE ? 413 : 400, request.method === "HEAD", CLOSE);
      return this.finish(request, response, clientAddress, connection, true, pathStart, startedMs);
    } catch (error) {
      return this.failed(request, server, error, startedMs);
    }
  }

  /** The answer to an admitted request (GET/HEAD: the site; OPTIONS: 204; others: 405); sets status and bodyBytes. */
  private answer(
    request: Request,
    method: string,
    headers: Headers,
    rawPath: string,
    queryStart: number,
    clientAddress: string,
    startedMs: number,
  ): Response {
    const isHead = method === "HEAD";
    let response: Response;
    if (method === "GET" || isHead) {
      const site = this.site;
      response = site.respond(request, headers, rawPath, queryStart, isHead, startedMs);
      this.status = site.status;
      this.bodyBytes = site.bodyBytes;
    } else if (method === "OPTIONS") {
      response = new Response(null, this.optionsInit);
      this.status = 204;
      this.bodyBytes = 0;
    } else {
      response = this.refuse(405, false, ALLOW_HEADERS);
    }
    if (this.rateLimitHeaders) {
      const limits = this.admission.rateLimitHeaders(clientAddress, startedMs);
      response.headers.set("RateLimit-Limit", String(limits.limit));
      response.headers.set("RateLimit-Remaining", String(limits.remaining));
      response.headers.set("RateLimit-Reset", String(limits.resetSeconds));
    }
    return response;
  }

  /** An error answer built here (a refusal, 405); sets status and bodyBytes. */
  private refuse(status: number, isHead: boolean, extra: Record<string, string> | undefined): Response {
    this.status = status;
    this.bodyBytes = isHead ? 0 : errorBodyBytes(status);
    return errorResponse(status, extra);
  }

  /** Connection bookkeeping, counters and the access log for the answer in `response` (status and bodyBytes set). */
  private finish(
    request: Request,
    response: Response,
    clientAddress: string,
    connection: ConnectionState | null,
    closeConnection: boolean,
    pathStart: number,
    startedMs: number,
  ): Response {
    const status = this.status;
    const bodyBytes = this.bodyBytes;
    if (connection !== null) {
      const connections = this.connections!;
      if (connections.countRequest(connection, startedMs)) {
        response.headers.set("Connection", "close");
        closeConnection = true;
      } else if (this.countsConnections && !closeConnection && asksToClose(request.headers.get("connection"))) {
        closeConnection = true; // Bun closes it after this response; its slot goes now
      }
      if (closeConnection) connections.forget(connection);
      else connections.responding(connection, bodyBytes, startedMs, request);
    }
    const stats = this.stats;
    stats.httpStatus(status);
    stats.add(Counter.bytesWritten, bodyBytes);
    if (this.accessLog !== null) {
      const url = request.url;
      const target = pathStart >= 0 ? url.slice(pathStart) : targetOf(url);
      const headers = request.headers;
      this.accessLog.write(
        clientAddress,
        `${request.method} ${target} HTTP/1.1`,
        status,
        bodyBytes,
        headers.get("referer"),
        headers.get("user-agent"),
        performance.timeOrigin + startedMs,
      );
    }
    stats.requestDone(Math.round((performance.now() - startedMs) * 1000));
    return response;
  }

  /**
   * A handler exception (a bug): 500 with a plain body, the error logged, never a stack trace to the client;
   * counted and logged like every answer.
   */
  private failed(request: Request, server: Server<undefined>, error: unknown, startedMs: number): Response {
    this.logger.error(
      `http: request handler failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    this.stats.inc(Counter.errorsSystem);
    let clientAddress = "-";
    if (this.accessLog !== null) {
      try {
        const peer = server.requestIP(request);
        if (peer !== null)
          clientAddress = this.readsForwardedFor
            ? this.admission.clientAddress(peer.address, request.headers.get("x-forwarded-for"))
            : peer.address;
      } catch {
        // The client address stays "-".
      }
    }
    const response = this.refuse(500, request.method === "HEAD", undefined);
    return this.finish(request, response, clientAddress, null, false, -1, startedMs);
  }

  /**
   * Bun.serve's error handler: only reached by an exception that escaped fetch's own handling (none is expected).
   * The request is unknown here: counted as a 500 with no duration, logged with "-" for what is not known.
   */
  readonly error = (error: Error): Response => {
    this.logger.error(`http: request failed outside the handler: ${error.stack ?? error.message}`);
    const stats = this.stats;
    stats.inc(Counter.errorsSystem);
    stats.httpStatus(500);
    stats.add(Counter.bytesWritten, errorBodyBytes(500));
    this.accessLog?.write("-", "-", 500, errorBodyBytes(500), null, null, Date.now());
    stats.requestDone(0);
    return errorResponse(500);
  };
}

/** The request target (path and query) from Bun's absolute request URL. */
function targetOf(url: string): string {
  const pathStart = url.indexOf("/", 8);
  return pathStart < 0 ? "/" : url.slice(pathStart);
}

const CLOSE: Record<string, string> = { Connection: "close" };
const RETRY_AFTER_CLOSE: Record<string, string> = { "Retry-After": "1", Connection: "close" };
const ALLOW_HEADERS: Record<string, string> = { Allow: ALLOW };

/** Verdicts of readBodyWithin. */
const BODY_WITHIN_LIMIT = 0;
const BODY_TOO_LARGE = 1;
const BODY_UNREADABLE = 2;

/** Reads a request body and discards it, stopping as soon as it exceeds `maxBytes`. Never throws. */
async function readBodyWithin(body: ReadableStream<Uint8Array>, maxBytes: number): Promise<number> {
  const reader = body.getReader();
  let totalBytes = 0;
  try {
    // Each round consumes a chunk of the body; the loop ends at its end, over the limit, or on an error.
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return BODY_WITHIN_LIMIT;
      totalBytes += chunk.value.byteLength;
      if (totalBytes > maxBytes) {
        reader.cancel().catch(() => {}); // the rest is never read; the connection is closed after the 413
        return BODY_TOO_LARGE;
      }
    }
  } catch {
    return BODY_UNREADABLE;
  }
}

/** Whether a request's Connection header carries the `close` option (RFC 9112 §9.6; a token list, any case). */
function asksToClose(connection: string | null): boolean {
  if (connection === null) return false;
  if (connection.length === 5) return connection.toLowerCase() === "close";
  return /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}

/**
 * Everything built from one configuration: the site and its caches, the access log, the connection counter, the
 * handler, the native routes and the sweep of idle connections. A reload builds a new set (taking over what its
 * settings leave as it was), swaps it in on the same Bun server and releases the old one.
 */
class HttpSet {
  readonly site: StaticFiles;
  readonly accessLog: AccessLog | null;
  readonly connections: KeepAliveCounter | null;
  readonly handler: HttpHandler;
  readonly context: ServerContext;
  private readonly forgetAfterMs: number;
  private routes: RouteTable | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  /** Cache hits and misses of the sets before this one: the httpCache counters never run backwards. */
  readonly earlierHits: number;
  readonly earlierMisses: number;

  /**
   * `previous`: the running set, when a reload builds this one. What the reload rules of the changed settings
   * (src/config/schema.ts) do not rebuild is taken over: the site and its cache (part "http-site"), the access log
   * (one log, never closed under a request; "http-access-log") and the connection counter (open connections stay
   * counted; "http-connections"). Throws, with nothing left open, when log.access_file cannot be opened.
   */
  constructor(context: ServerContext, previous: HttpSet | null) {
    const { config } = context;
    const http = config.http;
    this.context = context;
    const changed = previous === null ? null : changedParts(previous.context.config, config);
    const keepsSite = previous !== null && !changed!.has("http-site");
    this.site = keepsSite ? previous.site : new StaticFiles(http);
    const keepsLog = previous !== null && !changed!.has("http-access-log");
    this.accessLog = keepsLog
      ? previous.accessLog
      : config.log.access_log
        ? openAccessLog(config.log.access_file)
        : null;
    const idleTimeoutSeconds = http.keepalive_timeout_s;
    this.forgetAfterMs = idleTimeoutSeconds === 0 ? KEEPALIVE_FORGET_NEVER_MS : idleTimeoutSeconds * 1000;
    const countsConnections = http.connection_limits;
    const admission = context.admission;
    const keepsConnections = previous !== null && !changed!.has("http-connections");
    this.connections = keepsConnections
      ? previous.connections
      : http.max_keepalive_requests > 0 || countsConnections
        ? new KeepAliveCounter(
            http.max_keepalive_requests,
            this.forgetAfterMs,
            countsConnections ? (clientAddress) => admission.releaseConnection(clientAddress) : null,
            RESPONSE_TIMING,
          )
        : null;
    this.handler = new HttpHandler(context, this.site, this.accessLog, this.connections);
    // A site taken over keeps counting in its own counters; a new one starts from the previous totals.
    this.earlierHits = previous === null ? 0 : keepsSite ? previous.earlierHits : previous.cacheCounts().hits;
    this.earlierMisses = previous === null ? 0 : keepsSite ? previous.earlierMisses : previous.cacheCounts().misses;
  }

  /**
   * Starts what works on the server once this set's handler serves there: the sweep, route rebuilds (each a
   * server.reload with this set's handler) and the httpCache gauge.
   */
  attach(server: Server<undefined>): void {
    const { site, handler, connections } = this;
    const http = this.context.config.http;
    // Sweeps read pendingRequests (the responses still being sent) to end the busy time of long responses.
    if (connections !== null) {
      this.sweepTimer = setInterval(
        () => connections.sweep(performance.now(), server.pendingRequests),
        Math.min(this.forgetAfterMs, SWEEP_MAX_INTERVAL_MS),
      );
      this.sweepTimer.unref();
    }
    // Cached paths get native routes to the same handler (every behaviour is the same; only the URL is not parsed),
    // or with http.static_routes, for files held in memory with one representation, a static response (no JavaScript).
    const staticSource: StaticRouteSource | null = http.static_routes
      ? {
          response: (rawPath) => site.staticResponse(rawPath),
          isCurrent: (rawPath, response, nowMs) => site.isStaticCurrent(rawPath, response, nowMs),
          revalidateMs: http.cache_revalidate_ms,
        }
      : null;
    const routes = new RouteTable({
      makeHandler: (rawPath) => handler.routeHandler(rawPath),
      currentPaths: () => site.cachedPaths(),
      apply: (table) => void server.reload({ routes: table, fetch: handler.fetch, error: handler.error }),
      staticSource,
      maxRoutes: MAX_ROUTES,
      delayMs: ROUTES_RELOAD_DELAY_MS,
    });
    this.routes = routes;
    site.onCached((rawPath) => routes.added(rawPath));
    // A site taken over from the previous set has cached paths already: they get their native routes again now.
    for (const rawPath of site.cachedPaths()) {
      routes.added(rawPath);
      break; // one is enough: the rebuild it schedules routes every cached path
    }
    this.context.gauges.set("httpCache", () => ({
      ...this.site.gauges(),
      ...this.cacheCounts(),
      routes: routes.size,
      staticRoutes: routes.staticCount,
    }));
  }

  /** Cache hits and misses since the listener started, across reloads. */
  cacheCounts(): { hits: number; misses: number } {
    const gauges = this.site.gauges();
    return { hits: this.earlierHits + gauges.hits!, misses: this.earlierMisses + gauges.misses! };
  }

  /** No more route rebuilds (each would server.reload). */
  stopRoutes(): void {
    this.routes?.stop();
  }

  /**
   * After `successor` took over (or at stop, with null): no more route rebuilds or sweeps; the admission slots of its
   * connections released unless the successor counts them now; the caches dropped. Returns its access log's close
   * (null when the successor writes to it): a request still in flight that logs after it is appended directly.
   */
  release(successor: HttpSet | null): Promise<void> | null {
    this.stopRoutes();
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (successor?.connections !== this.connections) this.connections?.clear();
    if (successor?.site !== this.site) this.site.clear();
    return this.accessLog === null || successor?.accessLog === this.accessLog ? null : this.accessLog.close();
  }

  /** A set built for a reload that does not happen: closes what it opened that the running set does not share. */
  discard(running: HttpSet): void {
    if (this.accessLog !== null && this.accessLog !== running.accessLog) void this.accessLog.close();
  }
}

/** Opens log.access_file, naming the setting when it cannot be. */
function openAccessLog(file: string): AccessLog {
  try {
    return new AccessLog({ file });
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "EACCES" ? "permission denied" : (error as Error).message;
    throw new Error(
      `cannot open log.access_file "${file}" for appending (${reason}): fix the path or its permissions, or leave it empty for stdout`,
    );
  }
}

/** The notes a set's settings call for, at start and after a reload. */
function logNotes(logger: Logger, http: Config["http"]): void {
  if (http.static_routes) {
    logger.info(
      `http: static_routes on: cached files are answered by Bun without JavaScript and are not counted in request stats (gauge httpCache.staticRoutes: paths served so); Range is ignored for them; files rechecked every ${http.cache_revalidate_ms} ms`,
    );
  }
  if (!http.connection_limits) {
    logger.info(
      "http: limits.max_connections and limits.max_connections_per_ip are not applied to HTTP connections; set http.connection_limits = true to apply them",
    );
  }
}

/** Starts the public HTTP listener for `protocol = "http"`. */
export async function startHttp(context: ServerContext): Promise<Listener> {
  const { config, logger } = context;
  let current = new HttpSet(context, null);

  const server = Bun.serve({
    hostname: config.server.bind,
    port: config.server.port,
    reusePort: config.server.reuse_port,
    development: false,
    idleTimeout: config.http.keepalive_timeout_s,
    // Bodies are never kept: a Content-Length over limits.max_request_bytes gets a counted 413 from the handler, and a
    // body of unknown length is read up to the limit there. Bun's own limit would answer 413 before any JavaScript runs, uncounted.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    routes: {},
    fetch: current.handler.fetch,
    error: current.handler.error,
  });
  current.attach(server);
  const port = server.port ?? config.server.port;
  logNotes(logger, config.http);

  let stopped: Promise<void> | null = null;
  /** Access logs of released sets still closing (flush, end). */
  const closingLogs = new Set<Promise<void>>();
  const track = (closing: Promise<void> | null): void => {
    if (closing === null) return;
    const tracked = closing.catch((error: unknown) => {
      logger.error(
        `http: closing the previous access log failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    closingLogs.add(tracked);
    void tracked.then(() => closingLogs.delete(tracked));
  };

  /**
   * First phase of a reload: checks the new root and builds the new set (opening a new access log if it needs one);
   * nothing running changes, and a failure rejects here. Commit swaps it in synchronously.
   */
  const prepareReconfigure = async (next: ServerContext): Promise<PreparedReconfigure> => {
    if (stopped !== null) throw new Error("http: the listener is stopping; the new configuration was not applied");
    if (!changedParts(current.context.config, next.config).has("http-handler")) return UNCHANGED;
    await requireDirectory(next.config.http.root);
    const running = current;
    const replacement = new HttpSet(next, running);
    return {
      commit() {
        if (stopped !== null || current !== running) {
          replacement.discard(running);
          return;
        }
        // Requests from here on reach the new handler; natively routed paths of the old set are dropped with its routes.
        server.reload({ routes: {}, fetch: replacement.handler.fetch, error: replacement.handler.error });
        current = replacement;
        track(running.release(replacement));
        replacement.attach(server);
        next.logger.info(`http: configuration applied: serving ${next.config.http.root}`);
        logNotes(next.logger, next.config.http);
      },
      abort() {
        replacement.discard(running);
      },
    };
  };

  const stop = async (options: StopOptions): Promise<void> => {
    current.stopRoutes();
    if (options.graceful) {
      void server.stop(false);
      const deadline = Date.now() + options.timeoutMs;
      while (server.pendingRequests > 0 && Date.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    }
    await server.stop(true);
    track(current.release(null)); // releases the admission slots this listener still holds; closes its log
    context.gauges.delete("httpCache");
    await Promise.all(closingLogs);
  };
  return {
    port,
    inFlight: () => server.pendingRequests,
    stop: (options) => (stopped ??= stop(options)),
    reopenLogs: async () => {
      if (current.accessLog !== null) await current.accessLog.reopen();
    },
    prepareReconfigure,
  };
}
