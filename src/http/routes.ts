// Native Bun routes for cached paths: Bun matches the path itself and calls that path's handler (no URL parsing per request).
import type { Server } from "bun";

/** A per-request handler bound to one path (a promise only for a request whose body must be read first). */
export type RouteHandler = (request: Request, server: Server<undefined>) => Response | Promise<Response>;

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
 * later, so a burst of new paths costs one reload. Evicted paths keep their route until the next rebuild; their
 * handler simply misses the cache and serves the request the ordinary way.
 */
export class RouteTable {
  private readonly handlers = new Map<string, RouteHandler>();
  private readonly makeHandler: (rawPath: string) => RouteHandler;
  private readonly currentPaths: () => Iterable<string>;
  private readonly apply: (routes: Record<string, RouteHandler>) => void;
  private readonly maxRoutes: number;
  private readonly delayMs: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private readonly rebuildSoon = () => {
    this.timer = null;
    this.rebuild();
  };

  /**
   * `currentPaths`: the paths cached now (the rebuild routes those that are routable, up to `maxRoutes`);
   * `apply`: installs a route object (server.reload).
   */
  constructor(options: {
    makeHandler: (rawPath: string) => RouteHandler;
    currentPaths: () => Iterable<string>;
    apply: (routes: Record<string, RouteHandler>) => void;
    maxRoutes: number;
    delayMs: number;
  }) {
    this.makeHandler = options.makeHandler;
    this.currentPaths = options.currentPaths;
    this.apply = options.apply;
    this.maxRoutes = options.maxRoutes;
    this.delayMs = options.delayMs;
  }

  /** A path was cached: route it at the next rebuild if it is routable and not routed yet. */
  added(rawPath: string): void {
    if (this.stopped || this.timer !== null || this.handlers.has(rawPath) || !isRoutablePath(rawPath)) return;
    if (this.handlers.size >= this.maxRoutes) return;
    this.timer = setTimeout(this.rebuildSoon, this.delayMs);
    this.timer.unref();
  }

  /** Paths routed now. */
  get size(): number {
    return this.handlers.size;
  }

  /** Whether `rawPath` has a native route now. */
  has(rawPath: string): boolean {
    return this.handlers.has(rawPath);
  }

  /** No more rebuilds (the listener stops). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private rebuild(): void {
    if (this.stopped) return;
    const routes: Record<string, RouteHandler> = {};
    const kept = new Map<string, RouteHandler>();
    for (const rawPath of this.currentPaths()) {
      if (kept.size >= this.maxRoutes) break;
      if (!isRoutablePath(rawPath)) continue;
      const handler = this.handlers.get(rawPath) ?? this.makeHandler(rawPath);
      kept.set(rawPath, handler);
      routes[rawPath] = handler;
    }
    this.handlers.clear();
    for (const [rawPath, handler] of kept) this.handlers.set(rawPath, handler);
    this.apply(routes);
  }
}
