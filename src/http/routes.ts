// Native Bun routes for cached paths: a handler per path (no URL parsing per request), or a static response (no JavaScript at all).
import type { Server } from "bun";

/** A per-request handler bound to one path (a promise only for a request whose body must be read first). */
export type RouteHandler = (request: Request, server: Server<undefined>) => Response | Promise<Response>;

/** A static route: Bun answers GET and HEAD itself (preconditions included); other methods reach fetch. */
export interface StaticRoute {
  readonly GET: Response;
  readonly HEAD: Response;
}

/** What one routed path is given. */
export type RouteValue = RouteHandler | StaticRoute;

/** http.static_routes: which cached paths are served as static responses, and how they are kept current. */
export interface StaticRouteSource {
  /** The prebuilt response for a path, or null when it must keep its handler (see StaticFiles.staticResponse). */
  response(rawPath: string): Response | null;
  /** Whether the route built from `response` still serves the current file (see StaticFiles.isStaticCurrent). */
  isCurrent(rawPath: string, response: Response, nowMs: number): boolean;
  /** How often every static route is checked (http.cache_revalidate_ms). */
  revalidateMs: number;
}

/**
 * Paths routed natively: `/` and non-empty segments of unreserved characters only (a trailing `/` allowed). Bun's router matches the raw request
 * path exactly (no decoding, no dot-segment removal; `:` and `*` would be route syntax), so such a path reaches
 * its route only when the request names it byte for byte; every other spelling goes to `fetch` as before.
 */
const ROUTABLE_PATH = /^\/(?:[A-Za-z0-9._~-]+\/)*(?:[A-Za-z0-9._~-]+)?$/;

/** Whether Bun may route `rawPath` natively (see ROUTABLE_PATH). */
export function isRoutablePath(rawPath: string): boolean {
  if (!ROUTABLE_PATH.test(rawPath)) return false;
  // No "." or ".." segment (they never reach the cache, but the router must never see one either).
  return !rawPath.includes("/./") && !rawPath.includes("/../") && !rawPath.endsWith("/.") && !rawPath.endsWith("/..");
}

/**
 * The set of routed paths. A new cached path schedules one rebuild (server.reload with the new routes) a little
 * later, so a burst of new paths costs one reload. Evicted paths keep their route until the next rebuild; a
 * handler simply misses the cache and serves the request the ordinary way.
 *
 * With a StaticRouteSource, paths it has a response for get a static route instead of a handler. No request
 * reaches JavaScript for them, so a timer checks them every revalidateMs and rebuilds at once when one changed,
 * was evicted or was replaced (its body stays in memory until then); the path then goes to fetch, which loads it
 * again and routes it anew.
 */
export class RouteTable {
  private readonly handlers = new Map<string, RouteHandler>();
  /** Paths served by a static route now, with the response each was built from. */
  private readonly statics = new Map<string, Response>();
  private readonly makeHandler: (rawPath: string) => RouteHandler;
  private readonly currentPaths: () => Iterable<string>;
  private readonly apply: (routes: Record<string, RouteValue>) => void;
  private readonly staticSource: StaticRouteSource | null;
  private readonly maxRoutes: number;
  private readonly delayMs: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly revalidateTimer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;
  private readonly rebuildSoon = () => {
    this.timer = null;
    this.rebuild();
  };

  /**
   * `currentPaths`: the paths cached now (the rebuild routes those that are routable, up to `maxRoutes`);
   * `apply`: installs a route object (server.reload); `staticSource`: http.static_routes, or null.
   */
  constructor(options: {
    makeHandler: (rawPath: string) => RouteHandler;
    currentPaths: () => Iterable<string>;
    apply: (routes: Record<string, RouteValue>) => void;
    staticSource: StaticRouteSource | null;
    maxRoutes: number;
    delayMs: number;
  }) {
    this.makeHandler = options.makeHandler;
    this.currentPaths = options.currentPaths;
    this.apply = options.apply;
    this.staticSource = options.staticSource;
    this.maxRoutes = options.maxRoutes;
    this.delayMs = options.delayMs;
    if (this.staticSource !== null) {
      this.revalidateTimer = setInterval(() => this.revalidate(performance.now()), this.staticSource.revalidateMs);
      this.revalidateTimer.unref();
    }
  }

  /** A path was cached: route it at the next rebuild if it is routable and not routed (or not as it could be) yet. */
  added(rawPath: string): void {
    if (this.stopped || this.timer !== null || !isRoutablePath(rawPath)) return;
    if (this.handlers.has(rawPath) || this.statics.has(rawPath)) {
      // Routed already; rebuilt only when its static response is new (a file that just became static-capable, or reloaded).
      const response = this.staticSource?.response(rawPath) ?? null;
      if (response === null || this.statics.get(rawPath) === response) return;
    } else if (this.size >= this.maxRoutes) {
      return;
    }
    this.timer = setTimeout(this.rebuildSoon, this.delayMs);
    this.timer.unref();
  }

  /** Paths routed now (handlers and static routes). */
  get size(): number {
    return this.handlers.size + this.statics.size;
  }

  /** Paths served by a static route now. */
  get staticCount(): number {
    return this.statics.size;
  }

  /** Whether `rawPath` has a native route now. */
  has(rawPath: string): boolean {
    return this.handlers.has(rawPath) || this.statics.has(rawPath);
  }

  /** No more rebuilds (the listener stops). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.revalidateTimer !== null) clearInterval(this.revalidateTimer);
  }

  /** Checks every static route against its file; rebuilds at once when one is no longer current. */
  private revalidate(nowMs: number): void {
    const source = this.staticSource;
    if (this.stopped || source === null) return;
    let stale = false;
    for (const [rawPath, response] of this.statics) {
      if (!source.isCurrent(rawPath, response, nowMs)) stale = true; // every one is checked: stale entries are all dropped now
    }
    if (!stale) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.rebuild();
  }

  private rebuild(): void {
    if (this.stopped) return;
    const source = this.staticSource;
    const routes: Record<string, RouteValue> = {};
    const keptHandlers = new Map<string, RouteHandler>();
    const keptStatics = new Map<string, Response>();
    for (const rawPath of this.currentPaths()) {
      if (keptHandlers.size + keptStatics.size >= this.maxRoutes) break;
      if (!isRoutablePath(rawPath)) continue;
      const response = source === null ? null : source.response(rawPath);
      if (response !== null) {
        keptStatics.set(rawPath, response);
        routes[rawPath] = { GET: response, HEAD: response };
        continue;
      }
      const handler = this.handlers.get(rawPath) ?? this.makeHandler(rawPath);
      keptHandlers.set(rawPath, handler);
      routes[rawPath] = handler;
    }
    this.handlers.clear();
    for (const [rawPath, handler] of keptHandlers) this.handlers.set(rawPath, handler);
    this.statics.clear();
    for (const [rawPath, response] of keptStatics) this.statics.set(rawPath, response);
    this.apply(routes);
  }
}
