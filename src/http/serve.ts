// The http protocol: Bun.serve wiring — admission, methods, limits, static files, keep-alive, stats, access log.
import type { Server } from "bun";
import type { Listener, ServerContext, StopOptions } from "../context.ts";
import { Refusal, retryAfterSeconds, type Admission } from "../net/admission.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { AccessLog } from "./access-log.ts";
import { KeepAliveCounter } from "./keepalive.ts";
import { StaticFiles, errorBodyBytes, errorResponse } from "./static.ts";

const ALLOW = "GET, HEAD, OPTIONS";
/** Idle connections are forgotten by the keep-alive counter after this when keepalive_timeout_s is 0 (never). */
const KEEPALIVE_FORGET_NEVER_MS = 300_000;
/** How often a graceful stop looks at the requests still in flight. */
const DRAIN_POLL_MS = 10;

/** Per-request logic, built once; `fetch` is a bound method so Bun.serve gets one function for the server's life. */
class HttpHandler {
  private readonly stats: Stats;
  private readonly site: StaticFiles;
  private readonly accessLog: AccessLog | null;
  private readonly keepAlive: KeepAliveCounter | null;
  /** null when admission cannot refuse anything (see admissionCanRefuse): then it costs nothing per request. */
  private readonly admission: Admission | null;
  private readonly clientAddressFrom: Admission;
  private readonly readsForwardedFor: boolean;
  private readonly needsPeer: boolean;
  private readonly maxRequestBytes: number;
  private readonly optionsInit: ResponseInit = { status: 204, headers: { Allow: ALLOW } };

  constructor(context: ServerContext, site: StaticFiles, accessLog: AccessLog | null, keepAlive: KeepAliveCounter | null) {
    this.stats = context.stats;
    this.site = site;
    this.accessLog = accessLog;
    this.keepAlive = keepAlive;
    this.admission = admissionCanRefuse(context) ? context.admission : null;
    this.clientAddressFrom = context.admission;
    this.readsForwardedFor = context.config.net.trusted_proxies.length > 0;
    this.needsPeer = this.admission !== null || keepAlive !== null || accessLog !== null;
    this.maxRequestBytes = context.config.limits.max_request_bytes;
  }

  readonly fetch = (request: Request, server: Server<undefined>): Response => {
    const startedMs = performance.now();
    const nowMs = performance.timeOrigin + startedMs;
    const url = request.url;
    const pathStart = url.indexOf("/", 8); // after "http://" and at least one host character
    const queryStart = pathStart < 0 ? -1 : url.indexOf("?", pathStart);
    const rawPath = pathStart < 0 ? "/" : queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
    const method = request.method;
    const isHead = method === "HEAD";
    const headers = request.headers;

    // requestIP is the dearest call here (a native object per request): made once, and only when something needs the peer.
    const peer = this.needsPeer ? server.requestIP(request) : null;
    const clientAddress = peer === null ? "-"
      : this.readsForwardedFor ? this.clientAddressFrom.clientAddress(peer.address, headers.get("x-forwarded-for")) : peer.address;
    const admission = this.admission;
    let response: Response;
    let status: number;
    let bodyBytes: number;
    let admitted = false;
    answer: {
      if (admission !== null) {
        const refusal = admission.admitConnection(clientAddress);
        if (refusal !== Refusal.NONE) {
          status = refusal === Refusal.DENIED ? 403 : 503;
          response = status === 503 ? errorResponse(503, { "Retry-After": "1" }) : errorResponse(403);
          bodyBytes = isHead ? 0 : errorBodyBytes(status);
          break answer;
        }
        admitted = true;
        const waitMs = admission.takeToken(clientAddress, nowMs);
        if (waitMs !== 0) {
          const limits = admission.rateLimitHeaders(clientAddress, nowMs);
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
        status = 413;
        response = errorResponse(413, { Connection: "close" });
        bodyBytes = isHead ? 0 : errorBodyBytes(413);
        break answer;
      }
      if (method === "GET" || isHead) {
        response = this.site.respond(headers, rawPath, queryStart < 0 ? "" : url.slice(queryStart + 1), isHead, nowMs);
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
      if (admission !== null && admission.rateLimitHeadersEnabled) {
        const limits = admission.rateLimitHeaders(clientAddress, nowMs);
        response.headers.set("RateLimit-Limit", String(limits.limit));
        response.headers.set("RateLimit-Remaining", String(limits.remaining));
        response.headers.set("RateLimit-Reset", String(limits.resetSeconds));
      }
    }
    if (admitted) admission!.releaseConnection(clientAddress);

    const keepAlive = this.keepAlive;
    if (keepAlive !== null && peer !== null && keepAlive.countRequest(peer.address, peer.port, nowMs)) {
      response.headers.set("Connection", "close");
    }
    const stats = this.stats;
    stats.httpStatus(status);
    stats.add(Counter.bytesWritten, bodyBytes);
    if (this.accessLog !== null) {
      const target = pathStart < 0 ? "/" : url.slice(pathStart);
      this.accessLog.write(clientAddress, `${method} ${target} HTTP/1.1`, status, bodyBytes, headers.get("referer"), headers.get("user-agent"), nowMs);
    }
    stats.requestDone(Math.round((performance.now() - startedMs) * 1000));
    return response;
  };

  /** A handler exception (a bug): 500 with a plain body, the error logged, never a stack trace to the client. */
  readonly error = (error: Error): Response => {
    this.stats.inc(Counter.errorsSystem);
    this.stats.httpStatus(500);
    return errorResponse(500);
  };
}

/**
 * Whether admission could ever refuse an HTTP request. The handler answers synchronously, so a request's in-flight
 * slot is taken and released within one call: at most one is held at a time, and max_connections (>= 1) and
 * max_connections_per_ip (>= 1) can never refuse. Only allow/deny lists and the rate limiter can; without them the
 * per-request admission calls are skipped.
 */
function admissionCanRefuse(context: ServerContext): boolean {
  const { net, rate_limit: rateLimit } = context.config;
  return rateLimit.enabled || net.allow.length > 0 || net.deny.length > 0;
}

/** Starts the public HTTP listener for `protocol = "http"`. */
export async function startHttp(context: ServerContext): Promise<Listener> {
  const { config, logger } = context;
  const http = config.http;
  const site = new StaticFiles(http);
  context.gauges.set("httpCache", () => site.cache.gauges());
  const accessLog = config.log.access_log ? new AccessLog({ file: config.log.access_file }) : null;
  const idleTimeoutSeconds = http.keepalive_timeout_s;
  const forgetAfterMs = idleTimeoutSeconds === 0 ? KEEPALIVE_FORGET_NEVER_MS : idleTimeoutSeconds * 1000;
  const keepAlive = http.max_keepalive_requests > 0 ? new KeepAliveCounter(http.max_keepalive_requests, forgetAfterMs) : null;
  const sweepTimer = keepAlive === null ? null : setInterval(() => keepAlive.sweep(Date.now()), forgetAfterMs);
  sweepTimer?.unref();
  const handler = new HttpHandler(context, site, accessLog, keepAlive);
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
    fetch: handler.fetch,
    error: errorLogger,
  });
  const port = server.port ?? config.server.port;
  logger.info(`http: serving ${http.root} on ${config.server.bind}:${port}`);

  let stopped: Promise<void> | null = null;
  const stop = async (options: StopOptions): Promise<void> => {
    if (options.graceful) {
      void server.stop(false);
      const deadline = Date.now() + options.timeoutMs;
      while (server.pendingRequests > 0 && Date.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    }
    await server.stop(true);
    if (sweepTimer !== null) clearInterval(sweepTimer);
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
