// Static files: the site of one root — cached answers, path safety, directories, fallback, encodings.
import { realpathSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import { Encoding, acceptableEncodings } from "./conditional.ts";
import {
  FileCache,
  isCurrent,
  realPathOrNull,
  statOrNull,
  type CacheEntry,
  type Representation,
} from "./file-cache.ts";
import { FileResponder } from "./file-response.ts";
import { LISTING_HEADERS, directoryListing } from "./listing.ts";
import { decodeRequestPath, isInsideRoot } from "./path.ts";
import { pathStartOf } from "./request-rules.ts";
import { RepresentationBuilder, isSameFile } from "./representation.ts";
import { errorAnswer, type ResponseSummary } from "./status.ts";

export type HttpSettings = Config["http"];

const FALLBACK_KEY = "\0fallback"; // no request path can equal it: they all start with "/"
/**
 * Most entries of the metadata cache for files whose bodies are not held in memory (large files, empty files):
 * resolved path, headers and 304 response, revalidated like the response cache. Bounds memory whatever the
 * number of files or spellings of their paths.
 */
const MAX_FILE_BACKED_ENTRIES = 4096;

/** `queryStart` of a SiteRequest when the caller has not scanned the URL for `?` (the site scans it if it needs the query). */
export const QUERY_NOT_SCANNED = -2;

/** One GET or HEAD for the site, as the handler fills it (one object reused for every request). */
export class SiteRequest {
  /** Read only off the cached path (the query of a directory redirect). */
  request: Request | null = null;
  headers: Headers | null = null;
  /** The request target before `?`, as sent. */
  rawPath = "/";
  /** Index of `?` in request.url (-1 for none), or QUERY_NOT_SCANNED. */
  queryStart = QUERY_NOT_SCANNED;
  isHead = false;
  nowMs = 0;
}

/** Which file serveFile serves and under which cache key (one object per site, filled before each call). */
interface FileTarget {
  cacheKey: string;
  /** The file's real path (symlinks resolved, inside the root). */
  realPath: string;
  /** The path under the root as the request names it (symlinks not resolved). */
  requestPath: string;
  /** The decoded request path (http.immutable_pattern is matched against it). */
  decodedPath: string;
}

/** Percent-encodes each segment of a clean decoded path, for Location headers. */
function encodePath(decodedPath: string): string {
  return decodedPath.split("/").map(encodeURIComponent).join("/");
}

/** The static file site for one root: answers GET/HEAD for a request path. */
export class StaticFiles {
  /** Files whose bodies are held in memory (http.cache_bytes). */
  readonly cache: FileCache;
  /** Files served from disk (and empty ones): their metadata only, bounded by entry count. */
  private readonly fileBacked: FileCache;
  private readonly settings: HttpSettings;
  private readonly realRoot: string;
  private readonly allowDotfiles: boolean;
  private readonly builder: RepresentationBuilder;
  private readonly responder: FileResponder;
  private readonly target: FileTarget = { cacheKey: "", realPath: "", requestPath: "", decodedPath: "" };

  /**
   * Throws when http.root does not exist (at start-up, never per request). `responseHeaders` are part of every file
   * response (Strict-Transport-Security, Alt-Svc).
   */
  constructor(settings: HttpSettings, responseHeaders: ReadonlyArray<readonly [string, string]> = []) {
    this.settings = settings;
    try {
      this.realRoot = realpathSync(settings.root);
    } catch (error) {
      throw new Error(
        `server.toml: http.root must be an existing directory (got ${JSON.stringify(settings.root)}: ${(error as Error).message})`,
      );
    }
    this.allowDotfiles = settings.dotfiles === "allow";
    this.builder = new RepresentationBuilder(settings, this.realRoot, responseHeaders);
    this.responder = new FileResponder(settings);
    this.cache = new FileCache({
      maxBytes: settings.cache_bytes,
      maxEntries: Number.POSITIVE_INFINITY,
      revalidateMs: settings.cache_revalidate_ms,
    });
    this.fileBacked = new FileCache({
      maxBytes: 0,
      maxEntries: MAX_FILE_BACKED_ENTRIES,
      revalidateMs: settings.cache_revalidate_ms,
    });
  }

  /** Answers a GET or HEAD, reporting its status and body bytes into `summary`. */
  respond(query: SiteRequest, summary: ResponseSummary): Response {
    const { rawPath, nowMs } = query;
    const entry = this.cache.get(rawPath, nowMs);
    if (entry !== undefined) return this.fromEntry(query, entry, summary)!; // bodies in memory: always answered
    const fileBacked = this.fileBacked.get(rawPath, nowMs);
    if (fileBacked !== undefined) {
      const response = this.fromEntry(query, fileBacked, summary);
      if (response !== null) return response;
      this.fileBacked.delete(rawPath); // the file changed: loaded again below
    }
    return this.uncached(query, summary);
  }

  /** Calls `callback` with every path newly cached (in memory or file-backed). */
  onCached(callback: (rawPath: string) => void): void {
    this.cache.onInsert = callback;
    this.fileBacked.onInsert = callback;
  }

  /** Every path cached now. */
  *cachedPaths(): Generator<string> {
    yield* this.cache.keys();
    yield* this.fileBacked.keys();
  }

  /**
   * The prebuilt 200 response `rawPath` may be served with as a Bun static route (http.static_routes): its body is
   * held in memory and it has one representation (no sidecar, no on-the-fly compression); null otherwise.
   */
  staticResponse(rawPath: string): Response | null {
    const entry = this.cache.peek(rawPath);
    if (entry === undefined || entry.negotiates) return null;
    return entry.variants[Encoding.identity]!.fullResponse;
  }

  /**
   * Whether a static route built from `response` for `rawPath` still serves the current file: the entry is still
   * cached (not evicted or replaced) and unchanged on disk. A changed entry is dropped, so the next request loads
   * the file again. Static routes report no hits, so a current entry is marked referenced (kept by eviction).
   */
  isStaticCurrent(rawPath: string, response: Response, nowMs: number): boolean {
    const entry = this.cache.peek(rawPath);
    if (entry === undefined || entry.variants[Encoding.identity]!.fullResponse !== response) return false;
    if (!isCurrent(entry)) {
      this.cache.delete(rawPath);
      return false;
    }
    entry.checkedAtMs = nowMs;
    entry.referenced = true;
    return true;
  }

  /** Drops every cached entry. */
  clear(): void {
    this.cache.clear();
    this.fileBacked.clear();
  }

  /** Gauges of both caches: the response cache's, plus the file-backed entries. */
  gauges(): Record<string, number> {
    return { ...this.cache.gauges(), fileBackedEntries: this.fileBacked.gauges().entries! };
  }

  /**
   * The fast path: a cached file. A representation served from disk is first checked to be the file it describes
   * (one stat: size, mtime, inode), so its validators and ranges always match the bytes sent; null when it is not.
   */
  private fromEntry(query: SiteRequest, entry: CacheEntry, summary: ResponseSummary): Response | null {
    const headers = query.headers!;
    const representation = this.pick(entry, headers);
    if (representation.body === null && !isSameFile(representation)) return null;
    return this.responder.respond(headers, representation, query.isHead, summary);
  }

  /** The representation of an entry for this request's Accept-Encoding. */
  private pick(entry: CacheEntry, headers: Headers): Representation {
    return entry.negotiates ? this.pickVariant(entry, headers.get("accept-encoding")) : entry.variants[0]!;
  }

  /** The representation to send for an Accept-Encoding value; builds br/zstd/gzip on the fly when allowed. */
  private pickVariant(entry: CacheEntry, acceptEncoding: string | null): Representation {
    const order = acceptableEncodings(acceptEncoding);
    for (let i = 0; i < order.length; i++) {
      const encoding = order[i]!;
      const variant = entry.variants[encoding];
      if (variant !== undefined) return variant;
      if (entry.compressOnTheFly && encoding !== Encoding.identity) {
        const built = this.builder.compress(entry, encoding);
        if (built.encoding === encoding) this.cache.grow(entry, built.size);
        return built;
      }
    }
    return entry.variants[Encoding.identity]!;
  }

  /** Everything not in the cache: decode and check the path, find the file, load it (and cache it). */
  private uncached(query: SiteRequest, summary: ResponseSummary): Response {
    const { rawPath, isHead } = query;
    const decoded = decodeRequestPath(rawPath, this.allowDotfiles);
    if (typeof decoded === "number") return errorAnswer(summary, decoded, isHead);
    const fsPath = this.realRoot + decoded;
    const stat = statOrNull(fsPath);
    if (stat === null) return this.fallback(query, summary);
    const realPath = realPathOrNull(fsPath);
    if (realPath === null || !isInsideRoot(realPath, this.realRoot)) return errorAnswer(summary, 404, isHead);
    const target = this.target;
    target.cacheKey = rawPath;
    if (stat.isDirectory()) {
      if (!decoded.endsWith("/")) {
        const search = queryOf(query.request!.url, query.queryStart);
        const location = `${encodePath(decoded)}/${search === "" ? "" : `?${search}`}`;
        return errorAnswer(summary, 301, isHead, { Location: location });
      }
      const index = this.settings.index;
      const indexPath = `${realPath}/${index}`;
      const indexStat = statOrNull(indexPath);
      if (indexStat?.isFile()) {
        const realIndex = realPathOrNull(indexPath);
        if (realIndex === null || !isInsideRoot(realIndex, this.realRoot)) return errorAnswer(summary, 404, isHead);
        target.realPath = realIndex;
        target.requestPath = fsPath + index;
        target.decodedPath = decoded + index;
        return this.serveFile(query, target, summary);
      }
      if (this.settings.directory_listing) return this.listing(realPath, decoded, isHead, summary);
      return this.fallback(query, summary);
    }
    if (!stat.isFile()) return errorAnswer(summary, 404, isHead);
    if (decoded.endsWith("/")) return this.fallback(query, summary); // "/file.txt/" names no directory
    target.realPath = realPath;
    target.requestPath = fsPath;
    target.decodedPath = decoded;
    return this.serveFile(query, target, summary);
  }

  /** http.fallback (single-page apps) when set, else 404. */
  private fallback(query: SiteRequest, summary: ResponseSummary): Response {
    const isHead = query.isHead;
    if (this.settings.fallback === "") return errorAnswer(summary, 404, isHead);
    const cached = this.cache.get(FALLBACK_KEY, query.nowMs) ?? this.fileBacked.get(FALLBACK_KEY, query.nowMs);
    if (cached !== undefined) {
      const response = this.fromEntry(query, cached, summary);
      if (response !== null) return response;
      this.fileBacked.delete(FALLBACK_KEY);
    }
    const fsPath = `${this.realRoot}/${this.settings.fallback.replace(/^\/+/, "")}`;
    const realPath = realPathOrNull(fsPath);
    const stat = statOrNull(fsPath);
    if (realPath === null || stat === null || !stat.isFile() || !isInsideRoot(realPath, this.realRoot))
      return errorAnswer(summary, 404, isHead);
    const target = this.target;
    target.cacheKey = FALLBACK_KEY;
    target.realPath = realPath;
    target.requestPath = fsPath;
    target.decodedPath = `/${this.settings.fallback}`;
    return this.serveFile(query, target, summary);
  }

  /**
   * Serves a regular file inside the root: its entry is cached (with its body when small enough, else its metadata
   * only, the body going from disk with Bun.file).
   */
  private serveFile(query: SiteRequest, target: FileTarget, summary: ResponseSummary): Response {
    const entry = this.builder.load(target.realPath, target.requestPath, target.decodedPath, query.nowMs);
    if (entry === null) return errorAnswer(summary, 404, query.isHead);
    if (entry.bytes === 0) this.fileBacked.set(target.cacheKey, entry);
    else if (this.cache.fits(entry.bytes)) this.cache.set(target.cacheKey, entry);
    // Just loaded: no need to check the file again.
    const headers = query.headers!;
    return this.responder.respond(headers, this.pick(entry, headers), query.isHead, summary);
  }

  /** HTML listing of a directory (names escaped; dotfiles hidden unless allowed). */
  private listing(realDirectory: string, decodedPath: string, isHead: boolean, summary: ResponseSummary): Response {
    const body = directoryListing(realDirectory, decodedPath, this.allowDotfiles);
    if (body === null) return errorAnswer(summary, 404, isHead);
    summary.set(200, isHead ? 0 : body.length);
    return new Response(body, { status: 200, headers: LISTING_HEADERS });
  }
}

/** The query of a request URL without its `?` ("" when none); `queryStart` as a SiteRequest holds it. */
function queryOf(url: string, queryStart: number): string {
  const at = queryStart === QUERY_NOT_SCANNED ? url.indexOf("?", Math.max(0, pathStartOf(url))) : queryStart;
  return at < 0 ? "" : url.slice(at + 1);
}
