// The [[http.routes]] of one configuration, ready to answer: each prefix with its upstream group or its own site.
import type { Config } from "../config/schema.ts";
import { PrefixRoutes } from "./prefix-routes.ts";
import { StaticFiles } from "./static.ts";

/**
 * What a matched route answers with: an upstream group (by name: the listener's Upstreams runs it, and a reload may
 * replace groups while the routes stay), or files under its own root.
 */
export interface RouteTarget {
  readonly upstream: string;
  readonly site: StaticFiles | null;
}

/** The routes of `config` (null without any). A route with `root` gets a site of its own: http's settings with that root. */
export function buildRoutes(config: Config): PrefixRoutes<RouteTarget> | null {
  const routes = config.http.routes;
  if (routes.length === 0) return null;
  return new PrefixRoutes<RouteTarget>(
    routes.map((settings) => ({
      settings,
      route: {
        upstream: settings.upstream,
        site: settings.upstream === "" ? new StaticFiles({ ...config.http, root: settings.root }) : null,
      },
    })),
  );
}

/** Releases what the routes hold (the caches of their sites). */
export function releaseRoutes(routes: PrefixRoutes<RouteTarget> | null): void {
  routes?.forEach((target) => {
    target.site?.clear();
  });
}
