// Static files: path safety, directories, cached representations, conditional requests, ranges, encodings.
import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { constants as zlibConstants, brotliCompressSync, gzipSync } from "node:zlib";
import type { Config } from "../config/schema.ts";
import {
  Encoding,
  ENCODING_COUNT,
  ENCODING_TOKENS,
  PRECONDITION_PASS,
  RANGE_UNSATISFIABLE,
  SIDECAR_SUFFIXES,
  acceptableEncodings,
  evaluatePreconditions,
  ifRangeMatches,
  parseRange,
  type ByteRange,
  type PreconditionHeaders,
} from "./conditional.ts";
import {
  FileCache,
  fileSignature,
  isCurrent,
  realPathOrNull,
  statOrNull,
  type CacheEntry,
  type Representation,
} from "./file-cache.ts";
import { contentTypeFor, isCompressible } from "./mime.ts";
import { decodeRequestPath, isInsideRoot } from "./path.ts";

export type HttpSettings = Config["http"];

const IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable";
const FALLBACK_KEY = "\0fallback"; // no request path can equal it: they all start with "/"
const BROTLI_ON_THE_FLY_QUALITY = 5; // nginx brotli's usual level: ~gzip speed, smaller output
const GZIP_ON_THE_FLY_LEVEL = 6;
/**
 * Most entries of the metadata cache for files whose bodies are not held in memory (large files, empty files):
 * resolved path, headers and 304 response, revalidated like the response cache. Bounds memory whatever the
 * number of files or spellings of their paths.
 */
const MAX_FILE_BACKED_ENTRIES = 4096;

/** `queryStart` for respond() when the caller has not scanned the URL for `?` (respond scans it if it needs the query). */
export const QUERY_NOT_SCANNED = -2;

const STATUS_TEXT: Record<number, string> = {
  301: "Moved Permanently",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  412: "Precondition Failed",
  413: "Content Too Large",
  416: "Range Not Satisfiable",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** A small plain-text error response (never a stack trace). `extra` headers are added to the defaults. */
export function errorResponse(status: number, extra?: Record<string, string>): Response {
  const text = `${status} ${STATUS_TEXT[status] ?? "Error"}\n`;
  return new Response(text, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff", ...extra },
  });
}

/** Byte length of an error body built by errorResponse (for byte counters and the access log). */
export function errorBodyBytes(status: number): number {
  return `${status} ${STATUS_TEXT[status] ?? "Error"}\n`.length;
}

/** Bytes of a UTF-8 string. */
const encoder = new TextEncoder();

/** HTML-escapes text for the directory listing. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Percent-encodes each segment of a clean decoded path, for Location headers and links. */
function encodePath(decodedPath: string): string {
  return decodedPath.split("/").map(encodeURIComponent).join("/");
}

/** The static file site for one root: answers GET/HEAD for a request path. */
export class StaticFiles {
  /** Status of the last response from respond(). */
  status = 200;
  /** Body bytes of the last response from respond() (0 for HEAD and 304). */
  bodyBytes = 0;
  /** Files whose bodies are held in memory (http.cache_bytes). */
  readonly cache: FileCache;
  /** Files served from disk (and empty ones): their metadata only, bounded by entry count. */
  private readonly fileBacked: FileCache;
  private readonly settings: HttpSettings;
  private readonly realRoot: string;
  private readonly allowDotfiles: boolean;
  private readonly immutablePattern: RegExp | null;
  private readonly boundary: string;
  private readonly conditions: PreconditionHeaders = {
    ifMatch: null,
    ifUnmodifiedSince: null,
    ifNoneMatch: null,
    ifModifiedSince: null,
  };

  /** Throws when http.root does not exist (at start-up, never per request). */
  constructor(settings: HttpSettings) {
    this.settings = settings;
    try {
      this.realRoot = realpathSync(settings.root);
    } catch (error) {
      throw new Error(
        `server.toml: http.root must be an existing directory (got ${JSON.stringify(settings.root)}: ${(error as Error).message})`,
      );
    }
    this.allowDotfiles = settings.dotfiles === "allow";
    this.immutablePattern = settings.immutable_pattern === "" ? null : new RegExp(settings.immutable_pattern);
    this.boundary = `hps-${crypto.randomUUID().replaceAll("-", "")}`;
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

  /**
   * Answers a GET or HEAD for `rawPath` (the target before `?`); sets `status` and `bodyBytes`. `request` is read
   * only off the cached path (the query of a directory redirect): `queryStart` is the index of `?` in request.url
   * (-1 for none), or QUERY_NOT_SCANNED.
   */
  respond(
    request: Request,
    headers: Headers,
    rawPath: string,
    queryStart: number,
    isHead: boolean,
    nowMs: number,
  ): Response {
    const entry = this.cache.get(rawPath, nowMs);
    if (entry !== undefined) return this.fromEntry(headers, entry, isHead)!; // bodies in memory: always answered
    const fileBacked = this.fileBacked.get(rawPath, nowMs);
    if (fileBacked !== undefined) {
      const response = this.fromEntry(headers, fileBacked, isHead);
      if (response !== null) return response;
      this.fileBacked.delete(rawPath); // the file changed: loaded again below
    }
    return this.uncached(headers, rawPath, request.url, queryStart, isHead, nowMs);
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
  private fromEntry(headers: Headers, entry: CacheEntry, isHead: boolean): Response | null {
    const representation = this.pick(entry, headers);
    if (representation.body === null && !isSameFile(representation)) return null;
    return this.fromRepresentation(headers, representation, isHead);
  }

  /** The representation of an entry for this request's Accept-Encoding. */
  private pick(entry: CacheEntry, headers: Headers): Representation {
    return entry.negotiates ? this.pickVariant(entry, headers.get("accept-encoding")) : entry.variants[0]!;
  }

  private fromRepresentation(headers: Headers, representation: Representation, isHead: boolean): Response {
    const conditions = this.conditions;
    conditions.ifMatch = headers.get("if-match");
    conditions.ifUnmodifiedSince = headers.get("if-unmodified-since");
    conditions.ifNoneMatch = headers.get("if-none-match");
    conditions.ifModifiedSince = headers.get("if-modified-since");
    const range = headers.get("range");
    if (
      conditions.ifMatch !== null ||
      conditions.ifUnmodifiedSince !== null ||
      conditions.ifNoneMatch !== null ||
      conditions.ifModifiedSince !== null
    ) {
      const verdict = evaluatePreconditions(conditions, representation.etag, representation.lastModifiedSeconds);
      if (verdict === 304) {
        this.status = 304;
        this.bodyBytes = 0;
        return cloneResponse(representation.notModifiedResponse);
      }
      if (verdict !== PRECONDITION_PASS) return this.error(verdict, isHead);
    }
    if (range !== null) {
      const ifRange = headers.get("if-range");
      if (ifRange === null || ifRangeMatches(ifRange, representation.etag, representation.lastModifiedSeconds)) {
        const ranges = parseRange(range, representation.size, this.settings.max_ranges);
        if (ranges === RANGE_UNSATISFIABLE) {
          return this.error(416, isHead, {
            "Content-Range": `bytes */${representation.size}`,
            "Accept-Ranges": "bytes",
          });
        }
        if (typeof ranges !== "number") return this.partial(representation, ranges, isHead);
      }
    }
    const prebuilt = representation.fullResponse;
    if (prebuilt !== null) {
      this.status = 200;
      this.bodyBytes = isHead ? 0 : representation.size;
      return cloneResponse(prebuilt);
    }
    const body = this.settings.sendfile ? Bun.file(representation.filePath) : readOrNull(representation.filePath);
    if (body === null) return this.error(404, isHead); // removed since its metadata was cached
    this.status = 200;
    this.bodyBytes = isHead ? 0 : representation.size;
    return new Response(body, representation.fullInit);
  }

  /** 206 with one range, or multipart/byteranges for several. */
  private partial(representation: Representation, ranges: ByteRange[], isHead: boolean): Response {
    const headers = new Headers(representation.headers);
    this.status = 206;
    if (ranges.length === 1) {
      const { start, end } = ranges[0]!;
      headers.set("Content-Range", `bytes ${start}-${end}/${representation.size}`);
      this.bodyBytes = isHead ? 0 : end - start + 1;
      const body =
        representation.body !== null
          ? representation.body.subarray(start, end + 1)
          : Bun.file(representation.filePath).slice(start, end + 1);
      return new Response(body, { status: 206, headers });
    }
    const contentType = headers.get("Content-Type")!;
    headers.set("Content-Type", `multipart/byteranges; boundary=${this.boundary}`);
    const parts: (Uint8Array | Blob)[] = [];
    let total = 0;
    const file = representation.body === null ? Bun.file(representation.filePath) : null;
    for (const { start, end } of ranges) {
      const head = encoder.encode(
        `\r\n--${this.boundary}\r\nContent-Type: ${contentType}\r\nContent-Range: bytes ${start}-${end}/${representation.size}\r\n\r\n`,
      );
      parts.push(head);
      parts.push(file === null ? representation.body!.subarray(start, end + 1) : file.slice(start, end + 1));
      total += head.length + end - start + 1;
    }
    const tail = encoder.encode(`\r\n--${this.boundary}--\r\n`);
    parts.push(tail);
    total += tail.length;
    this.bodyBytes = isHead ? 0 : total;
    if (file === null) return new Response(concatBytes(parts as Uint8Array[], total), { status: 206, headers });
    // A Blob made of file slices comes out empty in Bun 1.4.5, so file-backed parts are streamed chunk by chunk.
    headers.set("Content-Length", String(total));
    return new Response(isHead ? null : streamParts(parts), { status: 206, headers });
  }

  /** The representation to send for an Accept-Encoding value; builds br/gzip on the fly when allowed. */
  private pickVariant(entry: CacheEntry, acceptEncoding: string | null): Representation {
    const order = acceptableEncodings(acceptEncoding);
    for (let i = 0; i < order.length; i++) {
      const encoding = order[i]!;
      const variant = entry.variants[encoding];
      if (variant !== undefined) return variant;
      if (entry.compressOnTheFly && (encoding === Encoding.br || encoding === Encoding.gzip))
        return this.compress(entry, encoding);
    }
    return entry.variants[Encoding.identity]!;
  }

  private compress(entry: CacheEntry, encoding: number): Representation {
    const identity = entry.variants[Encoding.identity]!;
    const source = identity.body!;
    const compressed =
      encoding === Encoding.br
        ? brotliCompressSync(source, {
            params: {
              [zlibConstants.BROTLI_PARAM_QUALITY]: BROTLI_ON_THE_FLY_QUALITY,
              [zlibConstants.BROTLI_PARAM_SIZE_HINT]: source.length,
            },
          })
        : gzipSync(source, { level: GZIP_ON_THE_FLY_LEVEL });
    if (compressed.length >= source.length) {
      entry.variants[encoding] = identity; // compression does not pay: this encoding is answered with identity
      return identity;
    }
    const etagBase = identity.etag.slice(0, -1); // the identity tag without its closing quote
    const variant = this.representation(
      entry.contentType,
      identity.headers.get("Cache-Control"),
      true,
      encoding,
      compressed,
      identity.filePath,
      compressed.length,
      0,
      0,
      `${etagBase}-${ENCODING_TOKENS[encoding]}"`,
      identity.lastModifiedSeconds,
      identity.headers.get("Last-Modified")!,
    );
    entry.variants[encoding] = variant;
    this.cache.grow(entry, compressed.length);
    return variant;
  }

  /** Everything not in the cache: decode and check the path, find the file, load it (and cache it). */
  private uncached(
    headers: Headers,
    rawPath: string,
    url: string,
    queryStart: number,
    isHead: boolean,
    nowMs: number,
  ): Response {
    const decoded = decodeRequestPath(rawPath, this.allowDotfiles);
    if (typeof decoded === "number") return this.error(decoded, isHead);
    const fsPath = this.realRoot + decoded;
    const stat = statOrNull(fsPath);
    if (stat === null) return this.fallback(headers, isHead, nowMs);
    const realPath = realPathOrNull(fsPath);
    if (realPath === null || !isInsideRoot(realPath, this.realRoot)) return this.error(404, isHead);
    if (stat.isDirectory()) {
      if (!decoded.endsWith("/")) {
        const query = queryOf(url, queryStart);
        const location = `${encodePath(decoded)}/${query === "" ? "" : `?${query}`}`;
        return this.error(301, isHead, { Location: location });
      }
      const indexPath = `${realPath}/${this.settings.index}`;
      const indexStat = statOrNull(indexPath);
      if (indexStat?.isFile()) {
        const realIndex = realPathOrNull(indexPath);
        if (realIndex !== null && isInsideRoot(realIndex, this.realRoot)) {
          return this.serveFile(
            headers,
            rawPath,
            realIndex,
            fsPath + this.settings.index,
            decoded + this.settings.index,
            isHead,
            nowMs,
          );
        }
        return this.error(404, isHead);
      }
      if (this.settings.directory_listing) return this.listing(realPath, decoded, isHead);
      return this.fallback(headers, isHead, nowMs);
    }
    if (!stat.isFile()) return this.error(404, isHead);
    if (decoded.endsWith("/")) return this.fallback(headers, isHead, nowMs); // "/file.txt/" names no directory
    return this.serveFile(headers, rawPath, realPath, fsPath, decoded, isHead, nowMs);
  }

  /** http.fallback (single-page apps) when set, else 404. */
  private fallback(headers: Headers, isHead: boolean, nowMs: number): Response {
    if (this.settings.fallback === "") return this.error(404, isHead);
    const cached = this.cache.get(FALLBACK_KEY, nowMs) ?? this.fileBacked.get(FALLBACK_KEY, nowMs);
    if (cached !== undefined) {
      const response = this.fromEntry(headers, cached, isHead);
      if (response !== null) return response;
      this.fileBacked.delete(FALLBACK_KEY);
    }
    const fsPath = `${this.realRoot}/${this.settings.fallback.replace(/^\/+/, "")}`;
    const realPath = realPathOrNull(fsPath);
    const stat = statOrNull(fsPath);
    if (realPath === null || stat === null || !stat.isFile() || !isInsideRoot(realPath, this.realRoot))
      return this.error(404, isHead);
    return this.serveFile(headers, FALLBACK_KEY, realPath, fsPath, `/${this.settings.fallback}`, isHead, nowMs);
  }

  /**
   * Serves a regular file inside the root: its entry is cached (with its body when small enough, else its metadata
   * only, the body going from disk with Bun.file). `requestPath` is the path under the root as the request names it.
   */
  private serveFile(
    headers: Headers,
    cacheKey: string,
    realPath: string,
    requestPath: string,
    decodedPath: string,
    isHead: boolean,
    nowMs: number,
  ): Response {
    const entry = this.load(realPath, requestPath, decodedPath, nowMs);
    if (entry === null) return this.error(404, isHead);
    if (entry.bytes === 0) this.fileBacked.set(cacheKey, entry);
    else if (this.cache.fits(entry.bytes)) this.cache.set(cacheKey, entry);
    // Just loaded: no need to check the file again.
    return this.fromRepresentation(headers, this.pick(entry, headers), isHead);
  }

  /** Builds an entry for a file (bodies in memory when small; otherwise file-backed representations). */
  private load(realPath: string, requestPath: string, decodedPath: string, nowMs: number): CacheEntry | null {
    const signature = fileSignature(realPath); // taken before reading: a change during the read is seen next time
    const stat = statOrNull(realPath);
    if (stat === null || !stat.isFile()) return null;
    const settings = this.settings;
    const inMemory = stat.size <= settings.cache_max_file_bytes && settings.cache_bytes > 0;
    const contentType = contentTypeFor(realPath);
    const cacheControl = this.immutablePattern?.test(decodedPath) ? IMMUTABLE_CACHE_CONTROL : settings.cache_control;
    const variants: (Representation | undefined)[] = new Array(ENCODING_COUNT).fill(undefined);
    const sidecars: { encoding: number; path: string; size: number; mtimeMs: number; ino: number }[] = [];
    for (let encoding = 1; encoding < ENCODING_COUNT; encoding++) {
      const sidecarPath = realPath + SIDECAR_SUFFIXES[encoding];
      const sidecarStat = statOrNull(sidecarPath);
      if (sidecarStat === null || !sidecarStat.isFile()) continue;
      const realSidecar = realPathOrNull(sidecarPath);
      if (realSidecar === null || !isInsideRoot(realSidecar, this.realRoot)) continue;
      sidecars.push({
        encoding,
        path: realSidecar,
        size: sidecarStat.size,
        mtimeMs: sidecarStat.mtimeMs,
        ino: sidecarStat.ino,
      });
    }
    const compressOnTheFly =
      inMemory &&
      settings.compress &&
      stat.size > 0 &&
      stat.size <= settings.compress_max_bytes &&
      isCompressible(contentType);
    const negotiates = sidecars.length > 0 || compressOnTheFly;
    const lastModified = new Date(stat.mtimeMs).toUTCString();
    const lastModifiedSeconds = Math.floor(stat.mtimeMs / 1000);
    let bytes = 0;
    let body: Uint8Array | null = null;
    if (inMemory) {
      body = readOrNull(realPath);
      if (body === null) return null;
      bytes += body.length;
    }
    variants[Encoding.identity] = this.representation(
      contentType,
      cacheControl,
      negotiates,
      Encoding.identity,
      body,
      realPath,
      body?.length ?? stat.size,
      stat.mtimeMs,
      stat.ino,
      etagOf(stat.size, stat.mtimeMs, ""),
      lastModifiedSeconds,
      lastModified,
    );
    for (const sidecar of sidecars) {
      const sidecarInMemory = inMemory && sidecar.size <= settings.cache_max_file_bytes;
      const sidecarBody = sidecarInMemory ? readOrNull(sidecar.path) : null;
      if (sidecarInMemory && sidecarBody === null) continue;
      if (sidecarBody !== null) bytes += sidecarBody.length;
      variants[sidecar.encoding] = this.representation(
        contentType,
        cacheControl,
        true,
        sidecar.encoding,
        sidecarBody,
        sidecar.path,
        sidecarBody?.length ?? sidecar.size,
        sidecar.mtimeMs,
        sidecar.ino,
        etagOf(sidecar.size, sidecar.mtimeMs, `-${ENCODING_TOKENS[sidecar.encoding]}`),
        lastModifiedSeconds,
        lastModified,
      );
    }
    // bytes 0 (file-backed, or an empty file) tells serveFile to keep the entry in the metadata cache.
    return {
      filePath: realPath,
      requestPath,
      contentType,
      negotiates,
      compressOnTheFly,
      variants,
      signature,
      bytes: inMemory ? bytes : 0,
      checkedAtMs: nowMs,
      referenced: false,
      cached: false,
    };
  }

  private representation(
    contentType: string,
    cacheControl: string | null,
    negotiates: boolean,
    encoding: number,
    body: Uint8Array | null,
    filePath: string,
    size: number,
    mtimeMs: number,
    ino: number,
    etag: string,
    lastModifiedSeconds: number,
    lastModified: string,
  ): Representation {
    const headers = new Headers();
    headers.set("Content-Type", contentType);
    headers.set("ETag", etag);
    headers.set("Last-Modified", lastModified);
    headers.set("Accept-Ranges", "bytes");
    headers.set("X-Content-Type-Options", "nosniff");
    if (cacheControl !== null && cacheControl !== "") headers.set("Cache-Control", cacheControl);
    if (negotiates) headers.set("Vary", "Accept-Encoding");
    if (encoding !== Encoding.identity) headers.set("Content-Encoding", ENCODING_TOKENS[encoding]!);
    const notModified = new Headers();
    notModified.set("ETag", etag);
    notModified.set("Last-Modified", lastModified);
    if (cacheControl !== null && cacheControl !== "") notModified.set("Cache-Control", cacheControl);
    if (negotiates) notModified.set("Vary", "Accept-Encoding");
    const fullInit = { status: 200, headers };
    const notModifiedInit = { status: 304, headers: notModified };
    return {
      encoding,
      size,
      body,
      filePath,
      mtimeMs,
      ino,
      etag,
      lastModifiedSeconds,
      headers,
      fullInit,
      notModifiedInit,
      fullResponse: body === null ? null : new Response(body, fullInit),
      notModifiedResponse: new Response(null, notModifiedInit),
    };
  }

  /** HTML listing of a directory (names escaped; dotfiles hidden unless allowed). */
  private listing(realDirectory: string, decodedPath: string, isHead: boolean): Response {
    let names: { name: string; isDirectory: boolean }[];
    try {
      names = readdirSync(realDirectory, { withFileTypes: true })
        .filter((dirent) => this.allowDotfiles || !dirent.name.startsWith(".") || dirent.name === ".well-known")
        .map((dirent) => ({ name: dirent.name, isDirectory: dirent.isDirectory() }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch {
      return this.error(404, isHead);
    }
    const title = `Index of ${escapeHtml(decodedPath)}`;
    const items = names.map(({ name, isDirectory }) => {
      const suffix = isDirectory ? "/" : "";
      return `<li><a href="${escapeHtml(encodeURIComponent(name))}${suffix}">${escapeHtml(name)}${suffix}</a></li>`;
    });
    if (decodedPath !== "/") items.unshift('<li><a href="../">../</a></li>');
    const html = `<!doctype html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n<body><h1>${title}</h1>\n<ul>\n${items.join("\n")}\n</ul></body></html>\n`;
    const body = encoder.encode(html);
    this.status = 200;
    this.bodyBytes = isHead ? 0 : body.length;
    return new Response(body, {
      status: 200,
      headers: {
        "Content-Type": "text/html; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
      },
    });
  }

  private error(status: number, isHead: boolean, extra?: Record<string, string>): Response {
    this.status = status;
    this.bodyBytes = isHead ? 0 : errorBodyBytes(status);
    return errorResponse(status, extra);
  }
}

/** The parts laid end to end in one buffer of `total` bytes. */
function concatBytes(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Bytes read from a file slice per stream chunk. */
const STREAM_CHUNK_BYTES = 1024 * 1024;

/** A stream of byte parts and file slices, reading each slice in bounded chunks as the client takes them. */
function streamParts(parts: readonly (Uint8Array | Blob)[]): ReadableStream<Uint8Array> {
  let index = 0;
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      const part = parts[index];
      if (part === undefined) {
        controller.close();
        return;
      }
      if (part instanceof Uint8Array) {
        index++;
        controller.enqueue(part as Uint8Array<ArrayBuffer>); // part headers from TextEncoder: never shared memory
        return;
      }
      const end = Math.min(offset + STREAM_CHUNK_BYTES, part.size);
      controller.enqueue(await part.slice(offset, end).bytes());
      offset = end;
      if (offset >= part.size) {
        index++;
        offset = 0;
      }
    },
  });
}

/** The query of a request URL without its `?` ("" when none); `queryStart` as respond() takes it. */
function queryOf(url: string, queryStart: number): string {
  const at = queryStart === QUERY_NOT_SCANNED ? url.indexOf("?", url.indexOf("/", 8)) : queryStart;
  return at < 0 ? "" : url.slice(at + 1);
}

/** Response.clone(); bun-types declares its result as undici's Response, which is the same object at run time. */
function cloneResponse(response: Response): Response {
  return response.clone() as unknown as Response;
}

/** Whether the file behind a disk-served representation is still the one it was built from. */
function isSameFile(representation: Representation): boolean {
  const stat = statOrNull(representation.filePath);
  return (
    stat !== null &&
    stat.size === representation.size &&
    stat.mtimeMs === representation.mtimeMs &&
    stat.ino === representation.ino
  );
}

function etagOf(size: number, mtimeMs: number, suffix: string): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}${suffix}"`;
}

function readOrNull(path: string): Uint8Array | null {
  try {
    return readFileSync(path);
  } catch {
    return null;
  }
}
