// The http protocol: Bun.serve wiring — admission, methods, limits, static files, keep-alive, stats, access log.
import type { Server } from "bun";
import { SETTINGS, type Config } from "../config/schema.ts";
import type { Listener, ServerContext, StopOptions } from "../context.ts";
import { Refusal, retryAfterSeconds, type Admission } from "../net/admission.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { AccessLog } from "./access-log.ts";
import { KeepAliveCounter, type ConnectionState } from "./keepalive.ts";
import { RouteTable } from "./routes.ts";
import { StaticFiles, errorBodyBytes, errorResponse } from "./static.ts";

const ALLOW = "GET, HEAD, OPTIONS";
/** Idle connections are forgotten by the keep-alive counter after this when keepalive_timeout_s is 0 (never). */
const KEEPALIVE_FORGET_NEVER_MS = 300_000;
/** Longest time between sweeps of idle connections (they hold admission slots until swept). */
const SWEEP_MAX_INTERVAL_MS = 1000;
/** Most cached paths given a native Bun route (the rest are served through fetch, just as correctly). */
const MAX_ROUTES = 4096;
/** Delay before new cached paths get their routes: a burst of new paths costs one server.reload. */
const ROUTES_RELOAD_DELAY_MS = 50;
/** How often a graceful stop looks at the requests still in flight. */
const DRAIN_POLL_MS = 10;

/**
 * Per-request logic, built once; `fetch` is a bound method so Bun.serve gets one function for the server's life.
 *
 * Connections (see keepalive.ts): a peer (address, port) seen for the first time is a new connection. When
 * connection limits apply (countsConnections), it is admitted there (admitConnection: allow/deny, max_connections,
 * max_connections_per_ip) and its slot is released when the connection is told to close, asks to close, or has
 * been idle past http.keepalive_timeout_s. Per request: allow/deny (when the client address can change within a
 * connection or connections are not admitted) and the rate limiter.
 */
class HttpHandler {
  private readonly stats: Stats;
  private readonly site: StaticFiles;
  private readonly accessLog: AccessLog | null;
  /** Tracks connections when a keep-alive limit or connection limits need them; null otherwise. */
  private readonly connections: KeepAliveCounter | null;
  private readonly admission: Admission;
  /** New connections go through admitConnection (limits tighter than the defaults; see countsConnections). */
  private readonly countsConnections: boolean;
  /** net.allow / net.deny are set: checked per request unless the connection's admission already did. */
  private readonly hasAccessLists: boolean;
  private readonly rateLimited: boolean;
  private readonly rateLimitHeaders: boolean;
  private readonly readsForwardedFor: boolean;
  private readonly needsPeer: boolean;
  private readonly maxRequestBytes: number;
  private readonly optionsInit: ResponseInit = { status: 204, headers: { Allow: ALLOW } };

  constructor(context: ServerContext, site: StaticFiles, accessLog: AccessLog | null, connections: KeepAliveCounter | null, countsConnectionLimits: boolean) {
    const { config } = context;
    this.stats = context.stats;
    this.site = site;
    this.accessLog = accessLog;
    this.connections = connections;
    this.admission = context.admission;
    this.countsConnections = countsConnectionLimits;
    this.hasAccessLists = config.net.allow.length > 0 || config.net.deny.length > 0;
    this.rateLimited = config.rate_limit.enabled;
    this.rateLimitHeaders = context.admission.rateLimitHeadersEnabled;
    this.readsForwardedFor = config.net.trusted_proxies.length > 0;
    this.needsPeer = connections !== null || accessLog !== null || this.hasAccessLists || this.rateLimited;
    this.maxRequestBytes = config.limits.max_request_bytes;
  }

  /** Every request whose path has no route of its own. */
  readonly fetch = (request: Request, server: Server<undefined>): Response => this.handle(request, server, null);

  /**
   * The route handler of one cached path (made once per path, see RouteTable): Bun has matched the path
   * natively, so the URL is not parsed and the cache key is the same string every time.
   */
  routeHandler(rawPath: string): (request: Request, server: Server<undefined>) => Response {
    return (request, server) => this.handle(request, server, rawPath);
  }

  /** One request; `routedPath` is the raw path when Bun routed it here, null when it must be read from the URL. */
  private handle(request: Request, server: Server<undefined>, routedPath: string | null): Response {
    const startedMs = performance.now();
    const rawPath = routedPath ?? pathOf(request.url);
    const method = request.method;
    const isHead = method === "HEAD";
    const headers = request.headers;

    // requestIP is the dearest call here (a getpeername system call per request): made once, and only when something needs the peer.
    const peer = this.needsPeer ? server.requestIP(request) : null;
    const clientAddress = peer === null ? "-"
      : this.readsForwardedFor ? this.admission.clientAddress(peer.address, headers.get("x-forwarded-for")) : peer.address;
    const connections = this.connections;
    let connection: ConnectionState | null = null;
    let closeConnection = false;
    let response: Response;
    let status: number;
    let bodyBytes: number;
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
              status = refusal === Refusal.DENIED ? 403 : 503;
              response = status === 503 ? errorResponse(503, RETRY_AFTER_CLOSE) : errorResponse(403, CLOSE);
              bodyBytes = isHead ? 0 : errorBodyBytes(status);
              break answer;
            }
          }
          connection = connections.open(peer.address, peer.port, clientAddress, this.countsConnections, startedMs);
        }
      }
      // allow/deny per request unless this connection's admission has just checked this very address.
      if (this.hasAccessLists && !(newConnection && this.countsConnections) && (!this.countsConnections || this.readsForwardedFor)
        && !this.admission.isAllowed(clientAddress)) {
        this.stats.inc(Counter.connectionsRefused);
        this.stats.inc(Counter.refusedDenied);
        status = 403;
        response = errorResponse(403);
        bodyBytes = isHead ? 0 : errorBodyBytes(403);
        break answer;
      }
      if (this.rateLimited) {
        const waitMs = this.admission.takeToken(clientAddress, startedMs);
        if (waitMs !== 0) {
          const limits = this.admission.rateLimitHeaders(clientAddress, startedMs);
          status = 429;
          response = errorResponse(429, {
            "Retry-After": String(retryAfterSeconds(waitMs)),
            "RateLimit-Limit": String(limits.limit), "RateLimit-Remaining": String(limits.remaining), "RateLimit-Reset": String(limits.resetSeconds),
          });
          bodyBytes = isHead ? 0 : errorBodyBytes(429);
          break answer;
        }
      }
      const contentLength = headers.get("content-length");
      if (contentLength !== null && Number(contentLength) > this.maxRequestBytes) {
        // The body is never read; Connection: close makes Bun drop the connection instead of skipping the body.
        this.stats.inc(Counter.requestsTooLarge);
        closeConnection = true;
        status = 413;
        response = errorResponse(413, CLOSE);
        bodyBytes = isHead ? 0 : errorBodyBytes(413);
        break answer;
      }
      if (method === "GET" || isHead) {
        response = this.site.respond(request, headers, rawPath, isHead, startedMs);
        status = this.site.status;
        bodyBytes = this.site.bodyBytes;
      } else if (method === "OPTIONS") {
        response = new Response(null, this.optionsInit);
        status = 204;
        bodyBytes = 0;
      } else {
        status = 405;
        response = errorResponse(405, { Allow: ALLOW });
        bodyBytes = errorBodyBytes(405);
      }
      if (this.rateLimitHeaders) {
        const limits = this.admission.rateLimitHeaders(clientAddress, startedMs);
        response.headers.set("RateLimit-Limit", String(limits.limit));
        response.headers.set("RateLimit-Remaining", String(limits.remaining));
        response.headers.set("RateLimit-Reset", String(limits.resetSeconds));
      }
    }

    if (connection !== null) {
      if (connections!.countRequest(connection, startedMs)) {
        response.headers.set("Connection", "close");
        closeConnection = true;
      } else if (this.countsConnections && !closeConnection && asksToClose(headers.get("connection"))) {
        closeConnection = true; // Bun closes it after this response; its slot goes now
      }
      if (closeConnection) connections!.forget(connection);
    }
    const stats = this.stats;
    stats.httpStatus(status);
    stats.add(Counter.bytesWritten, bodyBytes);
    if (this.accessLog !== null) {
      const wallMs = performance.timeOrigin + startedMs;
      this.accessLog.write(clientAddress, `${method} ${targetOf(request.url)} HTTP/1.1`, status, bodyBytes, headers.get("referer"), headers.get("user-agent"), wallMs);
    }
    stats.requestDone(Math.round((performance.now() - startedMs) * 1000));
    return response;
  }

  /** A handler exception (a bug): 500 with a plain body, the error logged, never a stack trace to the client. */
  readonly error = (error: Error): Response => {
    this.stats.inc(Counter.errorsSystem);
    this.stats.httpStatus(500);
    return errorResponse(500);
  };
}

/** The request target's path, before `?`, from Bun's absolute request URL. */
function pathOf(url: string): string {
  const pathStart = url.indexOf("/", 8); // after "http://" and at least one host character
  if (pathStart < 0) return "/";
  const queryStart = url.indexOf("?", pathStart);
  return queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
}

/** The request target (path and query) from Bun's absolute request URL. */
function targetOf(url: string): string {
  const pathStart = url.indexOf("/", 8);
  return pathStart < 0 ? "/" : url.slice(pathStart);
}

const CLOSE: Record<string, string> = { Connection: "close" };
const RETRY_AFTER_CLOSE: Record<string, string> = { "Retry-After": "1", Connection: "close" };

/** Whether a request's Connection header carries the `close` option (RFC 9112 §9.6; a token list, any case). */
function asksToClose(connection: string | null): boolean {
  if (connection === null) return false;
  if (connection.length === 5) return connection.toLowerCase() === "close";
  return /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}

/** Default of limits.max_connections, read from the schema (the only place defaults live). */
const DEFAULT_MAX_CONNECTIONS = SETTINGS.limits.max_connections.schema.parse(undefined) as number;

/**
 * Whether HTTP connections are admitted against limits.max_connections / max_connections_per_ip: only when they
 * are set tighter than the defaults (max_connections below its default, or a per-IP limit). A connection the
 * client closes early cannot be seen going and stays counted up to http.keepalive_timeout_s, so at the default
 * limits many short connections (HTTP/1.0 clients, one-shot clients closing without `Connection: close`) would be
 * refused for connections that are gone; and accounting needs server.requestIP (a system call) on every request.
 */
export function countsHttpConnections(config: Config): boolean {
  const limits = config.limits;
  return limits.max_connections_per_ip > 0 || limits.max_connections < DEFAULT_MAX_CONNECTIONS;
}

/** Starts the public HTTP listener for `protocol = "http"`. */
export async function startHttp(context: ServerContext): Promise<Listener> {
  const { config, logger } = context;
  const http = config.http;
  const site = new StaticFiles(http);

  const accessLog = config.log.access_log ? new AccessLog({ file: config.log.access_file }) : null;
  const idleTimeoutSeconds = http.keepalive_timeout_s;
  const forgetAfterMs = idleTimeoutSeconds === 0 ? KEEPALIVE_FORGET_NEVER_MS : idleTimeoutSeconds * 1000;
  const countsConnections = countsHttpConnections(config);
  const admission = context.admission;
  const connections = http.max_keepalive_requests > 0 || countsConnections
    ? new KeepAliveCounter(http.max_keepalive_requests, forgetAfterMs, countsConnections ? (clientAddress) => admission.releaseConnection(clientAddress) : null)
    : null;
  const sweepTimer = connections === null ? null : setInterval(() => connections.sweep(performance.now()), Math.min(forgetAfterMs, SWEEP_MAX_INTERVAL_MS));
  sweepTimer?.unref();
  const handler = new HttpHandler(context, site, accessLog, connections, countsConnections);
  const errorLogger = (error: Error): Response => {
    logger.error(`http: request handler failed: ${error.stack ?? error.message}`);
    return handler.error(error);
  };

  const server = Bun.serve({
    hostname: config.server.bind,
    port: config.server.port,
    reusePort: config.server.reuse_port,
    development: false,
    idleTimeout: idleTimeoutSeconds,
    // Bodies are never read (GET/HEAD/OPTIONS only); a Content-Length over limits.max_request_bytes gets a counted
    // 413 from the handler. Bun's own limit would answer 413 before any JavaScript runs, uncounted.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    routes: {},
    fetch: handler.fetch,
    error: errorLogger,
  });
  // Cached paths get native routes to the same handler (every behaviour is the same; only the URL is not parsed).
  const routes = new RouteTable({
    makeHandler: (rawPath) => handler.routeHandler(rawPath),
    currentPaths: () => site.cache.keys(),
    apply: (table) => void server.reload({ routes: table, fetch: handler.fetch, error: errorLogger }),
    maxRoutes: MAX_ROUTES,
    delayMs: ROUTES_RELOAD_DELAY_MS,
  });
  site.cache.onInsert = (rawPath) => routes.added(rawPath);
  context.gauges.set("httpCache", () => ({ ...site.cache.gauges(), routes: routes.size }));
  const port = server.port ?? config.server.port;
  logger.info(`http: serving ${http.root} on ${config.server.bind}:${port}`);

  let stopped: Promise<void> | null = null;
  const stop = async (options: StopOptions): Promise<void> => {
    routes.stop();
    if (options.graceful) {
      void server.stop(false);
      const deadline = Date.now() + options.timeoutMs;
      while (server.pendingRequests > 0 && Date.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    }
    await server.stop(true);
    if (sweepTimer !== null) clearInterval(sweepTimer);
    connections?.clear(); // releases the admission slots this listener still holds
    context.gauges.delete("httpCache");
    site.cache.clear();
    if (accessLog !== null) await accessLog.close();
  };
  return {
    port,
    inFlight: () => server.pendingRequests,
    stop: (options) => (stopped ??= stop(options)),
  };
}
