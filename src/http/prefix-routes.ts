// Path-prefix routes ([[http.routes]]): which upstream group or document root answers a request path.
//
// The longest prefix wins, as nginx's prefix locations do. Matching uses the path as the server will understand it
// (percent-decoded, empty segments merged; Bun has already resolved dot segments), so "/%61pi/x" cannot slip past a
// route for "/api/". The target sent upstream is the client's own, minus the prefix when strip_prefix is set.

import type { Config } from "../config/schema.ts";

/** One [[http.routes]] entry as the schema validates it: `upstream` or `root` is set (src/config/lists.ts). */
export type RouteSettings = Config["http"]["routes"][number];

/** A route matched for one request, and the target (path and query) its answerer should see. */
export interface RouteMatch<T> {
  readonly route: T;
  readonly settings: RouteSettings;
  /** The request target after strip_prefix (always starting with "/"), or the original target. */
  readonly target: string;
}

/** The routes of one configuration, longest prefix first; `T` is what the HTTP handler keeps per route. */
export class PrefixRoutes<T> {
  private readonly prefixes: string[];
  private readonly entries: { settings: RouteSettings; route: T }[];
  /** Reused result of match() (one request at a time on the synchronous path). */
  private readonly result = { route: null as T | null, settings: null as RouteSettings | null, target: "" };

  constructor(routes: readonly { settings: RouteSettings; route: T }[]) {
    this.entries = [...routes].sort((a, b) => b.settings.path_prefix.length - a.settings.path_prefix.length);
    this.prefixes = this.entries.map((entry) => entry.settings.path_prefix);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Whether any route proxies (the handler then needs every request's peer, for X-Forwarded-For). */
  get proxies(): boolean {
    return this.entries.some((entry) => entry.settings.upstream !== "");
  }

  forEach(visit: (route: T) => void): void {
    for (const entry of this.entries) visit(entry.route);
  }

  /**
   * The route for `rawPath` (the target before `?`, as Bun gives it) or null when none matches. `query` is the
   * target from `?` on ("" for none). The returned object is reused by the next call.
   */
  match(rawPath: string, query: string): RouteMatch<T> | null {
    const prefixes = this.prefixes;
    if (prefixes.length === 0) return null;
    let path = rawPath;
    if (needsNormalizing(rawPath)) {
      const normalized = normalizePath(rawPath);
      if (normalized === null) return null; // undecodable: the site answers it (400)
      path = normalized;
    }
    for (let i = 0; i < prefixes.length; i++) {
      const prefix = prefixes[i]!;
      if (!path.startsWith(prefix)) continue;
      const entry = this.entries[i]!;
      const result = this.result;
      result.route = entry.route;
      result.settings = entry.settings;
      result.target = entry.settings.strip_prefix
        ? stripped(rawPath, path, prefix, query)
        : query === ""
          ? rawPath
          : rawPath + query;
      return result as RouteMatch<T>;
    }
    return null;
  }
}

/** Whether a path needs decoding or slash merging before it can be compared with prefixes. */
function needsNormalizing(rawPath: string): boolean {
  return rawPath.includes("%") || rawPath.includes("//");
}

/** Percent-decoded with empty segments merged; null when the encoding is invalid. */
function normalizePath(rawPath: string): string | null {
  let decoded = rawPath;
  if (rawPath.includes("%")) {
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      return null;
    }
  }
  return decoded.replace(/\/{2,}/g, "/");
}

/**
 * The target without its prefix: cut from the raw path when it spells the prefix literally (the usual case, so the
 * rest keeps its encoding); otherwise the rest of the normalized path, encoded again segment by segment.
 */
function stripped(rawPath: string, path: string, prefix: string, query: string): string {
  let rest: string;
  if (rawPath.startsWith(prefix)) {
    rest = rawPath.slice(prefix.length);
  } else {
    rest = path
      .slice(prefix.length)
      .split("/")
      .map((segment) => encodeURIComponent(segment))
      .join("/");
  }
  if (rest.charCodeAt(0) !== 47 /* / */) rest = `/${rest}`;
  return query === "" ? rest : rest + query;
}
