// Per-request logic of the http protocol: admission, methods, limits, the site, keep-alive, counters, access log.
import type { Server } from "bun";
import type { Config } from "../config/schema.ts";
import type { ServerContext } from "../context.ts";
import type { Logger } from "../log.ts";
import { Refusal, retryAfterSeconds, type Admission } from "../net/admission.ts";
import { unmapIpv4 } from "../net/cidr.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import type { UpstreamGroup } from "../upstream/group.ts";
import type { ProxyExchange, ProxyOwner } from "../upstream/http-exchange.ts";
import { type ClientSide, proxyExchange } from "../upstream/http-proxy.ts";
import type { Upstreams } from "../upstream/upstreams.ts";
import { isWebSocketUpgrade } from "../upstream/websocket.ts";
import { type AccessLog, newAccessEntry } from "./access-log.ts";
import { Exchange } from "./exchange.ts";
import type { RouteTarget } from "./http-routes.ts";
import type { KeepAliveCounter } from "./keepalive.ts";
import type { PrefixRoutes } from "./prefix-routes.ts";
import { answerWebSocket, type WebSocketOutcome } from "./proxy-answer.ts";
import { BODY_TOO_LARGE, BODY_WITHIN_LIMIT, declaredBodyBytes, readBodyWithin } from "./request-body.ts";
import { MethodKind, asksToClose, isValidHost, methodKind, requestHeadBytesLowerBound } from "./request-rules.ts";
import type { RouteHandler } from "./routes.ts";
import { QUERY_NOT_SCANNED, SiteRequest, type StaticFiles } from "./static.ts";
import { ResponseSummary, errorAnswer, errorBodyBytes, errorResponse, httpDateNow } from "./status.ts";

const ALLOW = "GET, HEAD, OPTIONS";
/** Alt-Svc advertises HTTP/3 for a day (clients fall back to TCP by themselves when UDP is blocked). */
const ALT_SVC_MAX_AGE_S = 86_400;

/** Headers every response of the public listener carries: Strict-Transport-Security (HTTPS) and Alt-Svc (HTTP/3). */
export function responseHeadersFor(config: Config, publicPort: number): Array<readonly [string, string]> {
  const headers: Array<readonly [string, string]> = [];
  if (config.tls.enabled && config.http.hsts_max_age_s > 0) {
    headers.push(["Strict-Transport-Security", `max-age=${config.http.hsts_max_age_s}`]);
  }
  if (config.tls.enabled && config.http.http3) {
    headers.push(["Alt-Svc", `h3=":${publicPort}"; ma=${ALT_SVC_MAX_AGE_S}`]);
  }
  return headers;
}

/** Sets each header the response does not have (the site's responses carry them already; refusals do not). */
function addMissing(headers: Headers, wanted: ReadonlyArray<readonly [string, string]>): void {
  for (const [name, value] of wanted) if (!headers.has(name)) headers.set(name, value);
}
const CLOSE: Record<string, string> = { Connection: "close" };
const RETRY_AFTER_CLOSE: Record<string, string> = { "Retry-After": "1", Connection: "close" };
const ALLOW_HEADERS: Record<string, string> = { Allow: ALLOW };

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
export class HttpHandler implements ProxyOwner {
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
  /** [[http.routes]]: prefixes answered by an upstream group or a site of their own; null without routes. */
  private readonly routes: PrefixRoutes<RouteTarget> | null;
  /** The listener's upstream groups, which the routes name. */
  private readonly upstreams: Upstreams;
  private readonly optionsInit: ResponseInit;
  /** The protocol the access log names: HTTP/3.0 on the HTTP/3 server; HTTP/1.1 on TCP (see docs/tls.md). */
  private readonly protocolLabel: string;
  /** Headers every response carries (Strict-Transport-Security, Alt-Svc); null when there are none. */
  private readonly responseHeaders: ReadonlyArray<readonly [string, string]> | null;
  /** The request being handled on the synchronous path (reused: nothing is allocated per request for it). */
  private readonly exchange = new Exchange();
  /** What the site asks for, filled per request. */
  private readonly siteRequest = new SiteRequest();
  /** Status and body bytes of the answer just built: written by whoever builds it, read by finish() right after. */
  private readonly summary = new ResponseSummary();
  /** The access log's view of the request being finished (reused: nothing is allocated per request for it). */
  private readonly logEntry = newAccessEntry();
  /** A graceful stop has begun: every response closes its connection (see drainKeepAlive in serve.ts). */
  private draining = false;
  /** performance.now() of the latest request answered while draining. */
  private lastDrainRequestMs = 0;
  /** The request target a matched route sends upstream (set by routeOf, read at once by proxied). */
  private target = "";
  /** What a proxied request's exchange is told about its client (filled per request, read at once). */
  private readonly client: ClientSide;

  constructor(
    context: ServerContext,
    site: StaticFiles,
    accessLog: AccessLog | null,
    connections: KeepAliveCounter | null,
    routes: PrefixRoutes<RouteTarget> | null,
    upstreams: Upstreams,
    protocolLabel = "HTTP/1.1",
    responseHeaders: ReadonlyArray<readonly [string, string]> = [],
  ) {
    const { config } = context;
    this.routes = routes;
    this.upstreams = upstreams;
    // How the client reached hps, for X-Forwarded-Proto: this listener's scheme.
    const scheme = config.tls.enabled ? "https" : "http";
    this.client = { peerAddress: "", isTrustedPeer: false, scheme, clientAddress: "", maxRequestBytes: 0 };
    this.protocolLabel = protocolLabel;
    this.responseHeaders = responseHeaders.length === 0 ? null : responseHeaders;
    this.optionsInit = { status: 204, headers: [["Allow", ALLOW], ...responseHeaders] as [string, string][] };
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
    // A proxied request names its client in X-Forwarded-For: every request needs the peer once a route proxies.
    this.needsPeer =
      connections !== null || accessLog !== null || this.hasAccessLists || this.rateLimited || routes?.proxies === true;
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
    const exchange = this.exchange;
    exchange.begin(request, routedPath, startedMs);
    const method = request.method;
    const isHead = method === "HEAD";
    const headers = request.headers;
    const host = headers.get("host");
    // For a request Bun routed, the path stands for the target (the query is not read): still a lower bound.
    exchange.headBytes = requestHeadBytesLowerBound(method, exchange.targetBytes(), host, headers.count);
    // requestIP is the dearest call here (a getpeername system call per request): made once, and only when something needs the peer.
    const peer = this.needsPeer ? server.requestIP(request) : null;
    let response = this.refusal(exchange, peer, host, isHead);
    if (response === null) {
      // [[http.routes]]: the longest matching prefix answers, after the edge's checks above. A natively routed path is
      // never under a route (such paths get no native route, see HttpSet.attach).
      const route = this.routes === null || routedPath !== null ? null : this.routeOf(exchange);
      const group = route === null || route.upstream === "" ? null : this.upstreams.group(route.upstream)!;
      const contentLength = headers.get("content-length");
      if (contentLength !== null) {
        const declaredBytes = declaredBodyBytes(contentLength);
        if (declaredBytes > this.maxRequestBytes) {
          // The body is never read; Connection: close makes Bun drop the connection instead of skipping the body.
          this.stats.inc(Counter.requestsTooLarge);
          exchange.closeConnection = true;
          response = errorAnswer(this.summary, 413, isHead, CLOSE);
        } else {
          exchange.bodyBytesRead = declaredBytes; // Bun reads it off the connection to reach the next request
        }
      } else if (group === null && request.body !== null && headers.get("transfer-encoding") !== null) {
        // (request.body first: Bun gives GET and HEAD no body, whatever they send, and the getter is cheaper than a header lookup.)
        // A body of unknown length (Transfer-Encoding, chunked): read up to the limit before answering. (A proxied
        // one is streamed to the server and cut off at the limit instead.)
        return this.afterBody(exchange.copy(), server);
      }
      if (response === null && group !== null) {
        if (request.body !== null || !hasDeclaredBody(contentLength, headers)) {
          return this.proxied(exchange.copy(), server, group, peer!);
        }
        // A GET or HEAD with a body: Bun drops the body (docs/upstream/bun-serve-get-body.md), so it cannot be passed
        // on; refused rather than sent upstream without it.
        response = errorAnswer(this.summary, 501, isHead);
      }
      response ??= this.answer(exchange, headers, route?.site ?? this.site);
    }
    return this.finish(exchange, response);
  }

  /** The route for the exchange's path, or null; a route's own site answers for the path after strip_prefix. */
  private routeOf(exchange: Exchange): RouteTarget | null {
    const url = exchange.request!.url;
    const query = exchange.queryStart < 0 ? "" : url.slice(exchange.queryStart);
    const match = this.routes!.match(exchange.rawPath, query);
    if (match === null) return null;
    this.target = match.target;
    if (match.route.site !== null) {
      // The site reads the path from the exchange: the route's path, its query left to the site to find.
      const end = match.target.indexOf("?");
      exchange.rawPath = end < 0 ? match.target : match.target.slice(0, end);
      exchange.queryStart = QUERY_NOT_SCANNED;
    }
    return match.route;
  }

  /**
   * A request a route sends to an upstream group: its ProxyExchange settles when the server's response head arrives
   * (or hps answers 502/503/504) and tells proxyDone, which counts and logs it like every answer.
   */
  private proxied(
    exchange: Exchange,
    server: Server<undefined>,
    group: UpstreamGroup,
    peer: { address: string },
  ): Promise<Response> {
    const request = exchange.request!;
    const client = this.client;
    client.peerAddress = unmapIpv4(peer.address);
    client.isTrustedPeer = this.readsForwardedFor && this.admission.isTrustedProxy(client.peerAddress);
    client.clientAddress = exchange.clientAddress;
    client.maxRequestBytes = this.maxRequestBytes;
    if (isWebSocketUpgrade(request)) return this.upgraded(exchange, server, group);
    const proxy = proxyExchange(group, request, this.target, client, exchange.startedMs);
    proxy.owner = this;
    proxy.ownerData = exchange;
    return proxy.run();
  }

  /** A proxied request settled: counted and logged with the server that answered and its time. */
  proxyDone(proxy: ProxyExchange, response: Response): Response {
    const exchange = proxy.ownerData as Exchange;
    try {
      this.summary.set(proxy.status, proxy.bodyBytes);
      if (proxy.status === 413) this.stats.inc(Counter.requestsTooLarge);
      return this.finish(exchange, response, proxy.server?.address ?? "-", proxy.status, proxy.headerMs);
    } catch (error) {
      return this.failed(exchange.request!, null, error, exchange.startedMs);
    }
  }

  /** A WebSocket upgrade on a proxied route (src/http/proxy-answer.ts); counted and logged once it is decided. */
  private async upgraded(exchange: Exchange, server: Server<undefined>, group: UpstreamGroup): Promise<Response> {
    const request = exchange.request!;
    const outcome: WebSocketOutcome = { status: 0, upstreamAddress: "-", upstreamMs: 0 };
    let response: Response | undefined;
    try {
      response = await answerWebSocket(group, request, server, this.target, this.client, exchange.startedMs, outcome);
    } catch (error) {
      return this.failed(request, server, error, exchange.startedMs);
    }
    this.summary.set(outcome.status, 0);
    // Upgraded, there is no Response: Bun.serve takes `undefined` once server.upgrade() has answered.
    return this.finish(exchange, response!, outcome.upstreamAddress, outcome.status, outcome.upstreamMs);
  }

  /**
   * The refusal this request gets before its method and body are looked at, or null when it is admitted: the client
   * is gone, its connection is over a limit, its Host is malformed, its address is denied, or it is over the rate.
   * Sets the exchange's client address and connection.
   */
  private refusal(
    exchange: Exchange,
    peer: { address: string; port: number } | null,
    host: string | null,
    isHead: boolean,
  ): Response | null {
    const summary = this.summary;
    if (peer === null) {
      if (!this.needsPeer) return isValidHost(host) ? null : this.badHost(exchange, isHead);
      // Bun has no peer for a request whose connection is already gone: the client reset it after sending the
      // request and before Bun ran this handler (the peer address went with the socket; Bun keeps no copy, see
      // docs/upstream/request-ip-after-reset.md). Nothing can be sent: it is counted and logged as nginx's 499.
      exchange.closeConnection = true;
      return errorAnswer(summary, 499, true, CLOSE);
    }
    const startedMs = exchange.startedMs;
    const clientAddress = this.readsForwardedFor
      ? this.admission.clientAddress(peer.address, exchange.request!.headers.get("x-forwarded-for"))
      : peer.address;
    exchange.clientAddress = clientAddress;
    const connections = this.connections;
    let newConnection = false;
    if (connections !== null) {
      exchange.connection = connections.find(peer.address, peer.port, startedMs);
      if (exchange.connection === null) {
        newConnection = true;
        if (this.countsConnections) {
          const refusal = this.admission.admitConnection(clientAddress);
          if (refusal !== Refusal.NONE) {
            // No entry is kept: the connection is closed after this answer.
            exchange.closeConnection = true;
            return refusal === Refusal.DENIED
              ? errorAnswer(summary, 403, isHead, CLOSE)
              : errorAnswer(summary, 503, isHead, RETRY_AFTER_CLOSE);
          }
        }
        exchange.connection = connections.open(
          peer.address,
          peer.port,
          clientAddress,
          this.countsConnections,
          startedMs,
        );
      }
    }
    if (!isValidHost(host)) return this.badHost(exchange, isHead);
    // allow/deny per request unless this connection's admission has just checked this very address.
    if (
      this.hasAccessLists &&
      !(newConnection && this.countsConnections) &&
      (!this.countsConnections || this.readsForwardedFor) &&
      this.admission.admitRequest(clientAddress) !== Refusal.NONE
    ) {
      return errorAnswer(summary, 403, isHead, undefined);
    }
    if (this.rateLimited) {
      const waitMs = this.admission.takeToken(clientAddress, startedMs);
      if (waitMs !== 0) {
        const limits = this.admission.rateLimitHeaders(clientAddress, startedMs);
        return errorAnswer(summary, 429, isHead, {
          "Retry-After": String(retryAfterSeconds(waitMs)),
          "RateLimit-Limit": String(limits.limit),
          "RateLimit-Remaining": String(limits.remaining),
          "RateLimit-Reset": String(limits.resetSeconds),
        });
      }
    }
    return null;
  }

  /** RFC 9112 §3.2: two Host lines or a Host that is no host[:port] get 400 and a close (Bun 1.4.5 passes them on). */
  private badHost(exchange: Exchange, isHead: boolean): Response {
    exchange.closeConnection = true;
    return errorAnswer(this.summary, 400, isHead, CLOSE);
  }

  /** A request with a body of unknown length: read it up to limits.max_request_bytes, then answer (413 when over). */
  private async afterBody(exchange: Exchange, server: Server<undefined>): Promise<Response> {
    const request = exchange.request!;
    try {
      const verdict = await readBodyWithin(request.body!, this.maxRequestBytes, exchange);
      if (verdict === BODY_WITHIN_LIMIT) return this.finish(exchange, this.answer(exchange, request.headers));
      // Too large, or the body could not be read (the client went away): the rest is not read; the connection is closed.
      if (verdict === BODY_TOO_LARGE) this.stats.inc(Counter.requestsTooLarge);
      const status = verdict === BODY_TOO_LARGE ? 413 : 400;
      const response = errorAnswer(this.summary, status, request.method === "HEAD", CLOSE);
      exchange.closeConnection = true;
      return this.finish(exchange, response);
    } catch (error) {
      return this.failed(request, server, error, exchange.startedMs);
    }
  }

  /** The answer to an admitted request (GET/HEAD: the site; OPTIONS: 204; others: 405), reported into the summary. */
  private answer(exchange: Exchange, headers: Headers, site: StaticFiles = this.site): Response {
    const request = exchange.request!;
    const method = request.method;
    const isHead = method === "HEAD";
    const summary = this.summary;
    let response: Response;
    if (method === "GET" || isHead) {
      const query = this.siteRequest;
      query.request = request;
      query.headers = headers;
      query.rawPath = exchange.rawPath;
      query.queryStart = exchange.queryStart;
      query.isHead = isHead;
      query.nowMs = exchange.startedMs;
      response = site.respond(query, summary);
      query.request = null; // the reused object must not keep the request alive
      query.headers = null;
    } else if (method === "OPTIONS") {
      response = new Response(null, this.optionsInit);
      summary.set(204, 0);
    } else if (methodKind(method) === MethodKind.notAllowed) {
      response = errorAnswer(summary, 405, false, ALLOW_HEADERS);
    } else {
      response = errorAnswer(summary, 501, false, undefined);
    }
    if (this.rateLimitHeaders) {
      const limits = this.admission.rateLimitHeaders(exchange.clientAddress, exchange.startedMs);
      response.headers.set("RateLimit-Limit", String(limits.limit));
      response.headers.set("RateLimit-Remaining", String(limits.remaining));
      response.headers.set("RateLimit-Reset", String(limits.resetSeconds));
    }
    return response;
  }

  /**
   * Connection bookkeeping, counters and the access log for `response`, whose summary was just reported.
   * `upstream` (with its status and `upstreamMs`): the server that answered a proxied request ("-" when none was
   * reached), for the access log.
   */
  private finish(
    exchange: Exchange,
    response: Response,
    upstream: string | null = null,
    upstreamStatus = 0,
    upstreamMs = 0,
  ): Response {
    const request = exchange.request!;
    const { status, bodyBytes } = this.summary;
    const startedMs = exchange.startedMs;
    const responseHeaders = this.responseHeaders;
    // (An upgraded WebSocket has no Response: Bun has answered it, and keeps the connection as the socket.)
    if (responseHeaders !== null && response !== undefined) addMissing(response.headers, responseHeaders);
    const connection = exchange.connection;
    if (this.draining) {
      response?.headers.set("Connection", "close");
      exchange.closeConnection = true;
      this.lastDrainRequestMs = startedMs;
    }
    if (connection !== null) {
      const connections = this.connections!;
      let closeConnection = exchange.closeConnection;
      if (connections.countRequest(connection, startedMs)) {
        response?.headers.set("Connection", "close");
        closeConnection = true;
      } else if (this.countsConnections && !closeConnection && asksToClose(request.headers.get("connection"))) {
        closeConnection = true; // Bun closes it after this response; its slot goes now
      }
      if (closeConnection) connections.forget(connection);
      else connections.responding(connection, bodyBytes, startedMs, request);
    }
    // HEAD carries the fields GET does (RFC 9110 §9.3.2); Bun 1.4.5 adds Date to a GET but not to a HEAD with a body.
    if (request.method === "HEAD") response?.headers.set("Date", httpDateNow());
    const stats = this.stats;
    stats.httpStatus(status);
    stats.add(Counter.bytesWritten, bodyBytes);
    stats.add(Counter.bytesRead, exchange.headBytes + exchange.bodyBytesRead);
    const durationMicros = Math.round((performance.now() - startedMs) * 1000);
    if (this.accessLog !== null) {
      const headers = request.headers;
      const entry = this.logEntry;
      entry.timeMs = performance.timeOrigin + startedMs;
      entry.client = exchange.clientAddress;
      entry.method = request.method;
      entry.protocol = this.protocolLabel;
      entry.target = exchange.target();
      entry.status = status;
      entry.bodyBytes = bodyBytes;
      entry.durationMicros = durationMicros;
      entry.referer = headers.get("referer");
      entry.userAgent = headers.get("user-agent");
      entry.upstream = upstream;
      entry.upstreamStatus = upstreamStatus;
      entry.upstreamMicros = Math.round(upstreamMs * 1000);
      this.accessLog.write(entry);
    }
    exchange.request = null; // the reused object must not keep the request alive
    stats.requestDone(durationMicros);
    return response;
  }

  /**
   * A handler exception (a bug): 500 with a plain body, the error logged, never a stack trace to the client;
   * counted and logged like every answer.
   */
  private failed(request: Request, server: Server<undefined> | null, error: unknown, startedMs: number): Response {
    this.logger.error(
      `http: request handler failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    this.stats.inc(Counter.errorsSystem);
    let clientAddress = "-";
    if (this.accessLog !== null) {
      try {
        // (null: a proxied request settling, long after Bun called the handler; its address is not asked again.)
        const peer = server?.requestIP(request) ?? null;
        if (peer !== null)
          clientAddress = this.readsForwardedFor
            ? this.admission.clientAddress(peer.address, request.headers.get("x-forwarded-for"))
            : peer.address;
      } catch {
        // The client address stays "-".
      }
    }
    const exchange = this.exchange;
    exchange.begin(request, null, startedMs);
    exchange.clientAddress = clientAddress;
    exchange.headBytes = requestHeadBytesLowerBound(
      request.method,
      exchange.targetBytes(),
      request.headers.get("host"),
      request.headers.count,
    );
    const response = errorAnswer(this.summary, 500, request.method === "HEAD", undefined);
    return this.finish(exchange, response);
  }

  /** From now on every response says Connection: close (a graceful stop). */
  startDraining(nowMs: number): void {
    this.draining = true;
    this.lastDrainRequestMs = nowMs;
  }

  /** performance.now() of the latest request answered since startDraining. */
  get lastRequestWhileDrainingMs(): number {
    return this.lastDrainRequestMs;
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
    if (this.accessLog !== null) {
      const entry = newAccessEntry(); // rare: not worth reusing
      entry.timeMs = Date.now();
      entry.status = 500;
      entry.bodyBytes = errorBodyBytes(500);
      this.accessLog.write(entry);
    }
    stats.requestDone(0);
    return errorResponse(500);
  };
}

/** Whether a request declares a body (a Content-Length above 0, or Transfer-Encoding), whatever Bun made of it. */
function hasDeclaredBody(contentLength: string | null, headers: Headers): boolean {
  return contentLength === null ? headers.has("transfer-encoding") : declaredBodyBytes(contentLength) > 0;
}
