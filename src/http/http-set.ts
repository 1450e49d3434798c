// The objects built from one configuration (site, access log, connection counter, handler, routes) and their swap.
import { changedParts } from "../config/reload.ts";
import type { ServerContext } from "../context.ts";
import { Counter } from "../stats/stats.ts";
import type { Upstreams } from "../upstream/upstreams.ts";
import { AccessLog } from "./access-log.ts";
import { HttpHandler, responseHeadersFor } from "./handler.ts";
import { buildRoutes, releaseRoutes, type RouteTarget } from "./http-routes.ts";
import { KeepAliveCounter } from "./keepalive.ts";
import type { PrefixRoutes } from "./prefix-routes.ts";
import { RouteTable, type RouteValue, type StaticRouteSource } from "./routes.ts";
import { StaticFiles } from "./static.ts";

/** Idle connections are forgotten by the keep-alive counter after this when keepalive_timeout_s is 0 (never). */
const KEEPALIVE_FORGET_NEVER_MS = 300_000;
/** Longest time between sweeps of idle connections (they hold admission slots until swept). */
const SWEEP_MAX_INTERVAL_MS = 1000;
/**
 * How long responses are expected to take, for connection accounting (keepalive.ts): a response keeps its
 * connection busy until its body could have been sent at slowestClientBytesPerSecond (unless the server is seen
 * with no response in progress first), and the request signal of one of watchedBodyBytes or more is watched for
 * an abort (the client went away mid-response: its slot is freed at once). Watching costs a listener per such
 * response, small next to sending a MiB.
 */
const RESPONSE_TIMING = { slowestClientBytesPerSecond: 64 * 1024, watchedBodyBytes: 1024 * 1024 } as const;
/** Most cached paths given a native Bun route (the rest are served through fetch, just as correctly). */
const MAX_ROUTES = 4096;
/** Delay before new cached paths get their routes: a burst of new paths costs one server.reload. */
const ROUTES_RELOAD_DELAY_MS = 50;

/** Where a set serves: the listener's servers (src/http/listeners.ts), given handlers and routes by reload(). */
export interface ServeTarget {
  reload(handlers: {
    routes: Record<string, RouteValue>;
    fetch: HttpHandler["fetch"];
    error: HttpHandler["error"];
  }): void;
  readonly pendingRequests: number;
}

/**
 * Everything built from one configuration: the site and its caches, the access log, the connection counter, the
 * handler, the native routes and the sweep of idle connections. A reload builds a new set (taking over what its
 * settings leave as it was), swaps it in on the same Bun server and releases the old one.
 */
export class HttpSet {
  readonly site: StaticFiles;
  /** [[http.routes]] (null without any): built anew with the handler. */
  readonly prefixRoutes: PrefixRoutes<RouteTarget> | null;
  readonly accessLog: AccessLog | null;
  readonly connections: KeepAliveCounter | null;
  readonly handler: HttpHandler;
  /** The HTTP/3 server's handler (the same work, logged as HTTP/3.0); null without http.http3. */
  readonly http3Handler: HttpHandler | null;
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
  constructor(context: ServerContext, previous: HttpSet | null, publicPort: number, upstreams: Upstreams) {
    const { config } = context;
    const http = config.http;
    this.context = context;
    const changed = previous === null ? null : changedParts(previous.context.config, config);
    const headers = responseHeadersFor(config, publicPort);
    const keepsSite = previous !== null && !changed!.has("http-site");
    this.site = keepsSite ? previous.site : new StaticFiles(http, headers);
    const keepsLog = previous !== null && !changed!.has("http-access-log");
    this.accessLog = keepsLog ? previous.accessLog : config.log.access_log ? openAccessLog(context) : null;
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
    const prefixRoutes = buildRoutes(config);
    this.prefixRoutes = prefixRoutes;
    const handlerFor = (protocolLabel: string) =>
      new HttpHandler(
        context,
        this.site,
        this.accessLog,
        this.connections,
        prefixRoutes,
        upstreams,
        protocolLabel,
        headers,
      );
    this.handler = handlerFor("HTTP/1.1");
    this.http3Handler = http.http3 ? handlerFor("HTTP/3.0") : null;
    // A site taken over keeps counting in its own counters; a new one starts from the previous totals.
    this.earlierHits = previous === null ? 0 : keepsSite ? previous.earlierHits : previous.cacheCounts().hits;
    this.earlierMisses = previous === null ? 0 : keepsSite ? previous.earlierMisses : previous.cacheCounts().misses;
  }

  /**
   * Starts what works on the server once this set's handler serves there: the sweep, route rebuilds (each a
   * server.reload with this set's handler) and the httpCache gauge.
   */
  attach(server: ServeTarget): void {
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
    // A cached path under a [[http.routes]] prefix (cached before a reload added the route) must reach the handler.
    const prefixRoutes = this.prefixRoutes;
    const routes = new RouteTable({
      makeHandler: (rawPath) => handler.routeHandler(rawPath),
      currentPaths: () =>
        prefixRoutes === null
          ? site.cachedPaths()
          : [...site.cachedPaths()].filter((rawPath) => prefixRoutes.match(rawPath, "") === null),
      apply: (table) => server.reload({ routes: table, fetch: handler.fetch, error: handler.error }),
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
    releaseRoutes(this.prefixRoutes);
    return this.accessLog === null || successor?.accessLog === this.accessLog ? null : this.accessLog.close();
  }

  /** A set built for a reload that does not happen: closes what it opened that the running set does not share. */
  discard(running: HttpSet): void {
    releaseRoutes(this.prefixRoutes);
    if (this.accessLog !== null && this.accessLog !== running.accessLog) void this.accessLog.close();
  }
}

/** Opens log.access_file, naming the setting when it cannot be; its dropped lines count in the statistics. */
function openAccessLog(context: ServerContext): AccessLog {
  const { log } = context.config;
  const file = log.access_file;
  const where = file === "" ? "stdout" : file;
  try {
    return new AccessLog({
      file,
      format: log.access_format,
      maxBufferedBytes: log.max_buffered_bytes,
      onDropped: (lines) => context.stats.add(Counter.accessLogLinesDropped, lines),
      onRecovered: (lines) =>
        context.logger.warn(
          `access log: ${lines} line${lines === 1 ? " was" : "s were"} dropped: more than ${log.max_buffered_bytes} bytes were waiting to be written to ${where} (log.max_buffered_bytes)`,
        ),
      onWriteError: (message) => context.logger.error(`access log: cannot write to ${where}: ${message}`),
    });
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "EACCES" ? "permission denied" : (error as Error).message;
    throw new Error(
      `cannot open log.access_file "${file}" for appending (${reason}): fix the path or its permissions, or leave it empty for stdout`,
    );
  }
}
