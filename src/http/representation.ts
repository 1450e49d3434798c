// Building what a file is served as: its representations (identity, sidecars, compressed on the fly) and their headers.
import { readFileSync } from "node:fs";
import { constants as zlibConstants, brotliCompressSync, gzipSync } from "node:zlib";
import type { Config } from "../config/schema.ts";
import { Encoding, ENCODING_COUNT, ENCODING_TOKENS, SIDECAR_SUFFIXES } from "./conditional.ts";
import { fileSignature, realPathOrNull, statOrNull, type CacheEntry, type Representation } from "./file-cache.ts";
import { contentTypeFor, isCompressible } from "./mime.ts";
import { isInsideRoot } from "./path.ts";

type HttpSettings = Config["http"];

/** For http.immutable_pattern; `public` is left out: a response to a request without credentials is shareable anyway. */
const IMMUTABLE_CACHE_CONTROL = "max-age=31536000, immutable";
const BROTLI_ON_THE_FLY_QUALITY = 5; // nginx brotli's usual level: about gzip's speed, smaller output
const GZIP_ON_THE_FLY_LEVEL = 6;
const ZSTD_ON_THE_FLY_LEVEL = 3; // zstd's own default level, as Caddy uses
/**
 * Sent on responses Bun sends from disk with an application/* type. Bun 1.4.5 adds `Content-Disposition:
 * filename="name"` to a Bun.file body of such a type unless the response has a Content-Disposition of its own, and that
 * value has no disposition type (invalid per RFC 6266; read as "attachment" by some clients). `inline` is what a
 * response without the header means (docs/upstream/bun-file-content-disposition.md).
 */
const INLINE_DISPOSITION = "inline";

/** Everything one representation is built from (see buildRepresentation). */
export interface RepresentationSpec {
  contentType: string;
  cacheControl: string | null;
  /** Whether the file has several representations (responses then carry Vary: Accept-Encoding). */
  negotiates: boolean;
  encoding: number;
  body: Uint8Array | null;
  filePath: string;
  size: number;
  mtimeMs: number;
  ino: number;
  etag: string;
  lastModifiedSeconds: number;
  lastModified: string;
  /** Headers every response of the listener carries (Strict-Transport-Security, Alt-Svc). */
  responseHeaders: ReadonlyArray<readonly [string, string]>;
}

/** A representation with its prebuilt headers and responses; `spec` is read, never kept (callers reuse it). */
export function buildRepresentation(spec: RepresentationSpec): Representation {
  const { cacheControl, negotiates, encoding, body, etag, lastModified } = spec;
  const headers = new Headers();
  headers.set("Content-Type", spec.contentType);
  headers.set("ETag", etag);
  headers.set("Last-Modified", lastModified);
  headers.set("Accept-Ranges", "bytes");
  headers.set("X-Content-Type-Options", "nosniff");
  if (cacheControl !== null && cacheControl !== "") headers.set("Cache-Control", cacheControl);
  if (negotiates) headers.set("Vary", "Accept-Encoding");
  if (encoding !== Encoding.identity) headers.set("Content-Encoding", ENCODING_TOKENS[encoding]!);
  if (body === null && spec.contentType.startsWith("application/"))
    headers.set("Content-Disposition", INLINE_DISPOSITION);
  const notModified = new Headers();
  notModified.set("ETag", etag);
  notModified.set("Last-Modified", lastModified);
  if (cacheControl !== null && cacheControl !== "") notModified.set("Cache-Control", cacheControl);
  if (negotiates) notModified.set("Vary", "Accept-Encoding");
  for (const [name, value] of spec.responseHeaders) {
    headers.set(name, value);
    notModified.set(name, value);
  }
  const fullInit = { status: 200, headers };
  const notModifiedInit = { status: 304, headers: notModified };
  return {
    encoding,
    negotiates,
    size: spec.size,
    body,
    filePath: spec.filePath,
    mtimeMs: spec.mtimeMs,
    ino: spec.ino,
    etag,
    lastModifiedSeconds: spec.lastModifiedSeconds,
    headers,
    fullInit,
    notModifiedInit,
    fullResponse: body === null ? null : new Response(body, fullInit),
    notModifiedResponse: new Response(null, notModifiedInit),
  };
}

/** A sidecar found next to a file: `file.br`, `file.zst`, `file.gz`. */
interface Sidecar {
  encoding: number;
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

/** Builds cache entries for the files of one root, and their variants compressed on the fly. */
export class RepresentationBuilder {
  private readonly settings: HttpSettings;
  private readonly realRoot: string;
  private readonly immutablePattern: RegExp | null;
  /** Filled before each buildRepresentation call: entries are built per cache miss, so nothing is allocated for it. */
  private readonly spec: RepresentationSpec = {
    contentType: "",
    cacheControl: null,
    negotiates: false,
    encoding: Encoding.identity,
    body: null,
    filePath: "",
    size: 0,
    mtimeMs: 0,
    ino: 0,
    etag: "",
    lastModifiedSeconds: 0,
    lastModified: "",
    responseHeaders: [],
  };

  /** `responseHeaders`: part of every representation's prebuilt headers (see responseHeadersFor in handler.ts). */
  constructor(
    settings: HttpSettings,
    realRoot: string,
    responseHeaders: ReadonlyArray<readonly [string, string]> = [],
  ) {
    this.settings = settings;
    this.realRoot = realRoot;
    this.spec.responseHeaders = responseHeaders;
    this.immutablePattern = settings.immutable_pattern === "" ? null : new RegExp(settings.immutable_pattern);
  }

  /**
   * An entry for a regular file inside the root: bodies in memory when small enough, else file-backed
   * representations (entry.bytes 0). `requestPath` is the path under the root as the request names it,
   * `decodedPath` the decoded request path (matched against http.immutable_pattern). Null when it cannot be read.
   */
  load(realPath: string, requestPath: string, decodedPath: string, nowMs: number): CacheEntry | null {
    const signature = fileSignature(realPath); // taken before reading: a change during the read is seen next time
    const stat = statOrNull(realPath);
    if (stat === null || !stat.isFile()) return null;
    const settings = this.settings;
    const inMemory = stat.size <= settings.cache_max_file_bytes && settings.cache_bytes > 0;
    const contentType = contentTypeFor(realPath);
    const cacheControl = this.immutablePattern?.test(decodedPath) ? IMMUTABLE_CACHE_CONTROL : settings.cache_control;
    const variants: (Representation | undefined)[] = new Array(ENCODING_COUNT).fill(undefined);
    const sidecars = this.sidecarsOf(realPath);
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
    const spec = this.spec;
    spec.contentType = contentType;
    spec.cacheControl = cacheControl;
    spec.lastModified = lastModified;
    spec.lastModifiedSeconds = lastModifiedSeconds;
    spec.negotiates = negotiates;
    spec.encoding = Encoding.identity;
    spec.body = body;
    spec.filePath = realPath;
    spec.size = body?.length ?? stat.size;
    spec.mtimeMs = stat.mtimeMs;
    spec.ino = stat.ino;
    spec.etag = etagOf(stat.size, stat.mtimeMs, "");
    variants[Encoding.identity] = buildRepresentation(spec);
    for (const sidecar of sidecars) {
      const sidecarInMemory = inMemory && sidecar.size <= settings.cache_max_file_bytes;
      const sidecarBody = sidecarInMemory ? readOrNull(sidecar.path) : null;
      if (sidecarInMemory && sidecarBody === null) continue;
      if (sidecarBody !== null) bytes += sidecarBody.length;
      spec.negotiates = true;
      spec.encoding = sidecar.encoding;
      spec.body = sidecarBody;
      spec.filePath = sidecar.path;
      spec.size = sidecarBody?.length ?? sidecar.size;
      spec.mtimeMs = sidecar.mtimeMs;
      spec.ino = sidecar.ino;
      spec.etag = etagOf(sidecar.size, sidecar.mtimeMs, `-${ENCODING_TOKENS[sidecar.encoding]}`);
      variants[sidecar.encoding] = buildRepresentation(spec);
    }
    spec.body = null; // the scratch object must not keep a body alive
    // bytes 0 (file-backed, or an empty file) tells the site to keep the entry in the metadata cache.
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

  /**
   * The `encoding` variant of an in-memory entry, compressed now and stored in entry.variants. When compression
   * does not pay, the identity representation is stored (and returned) for that encoding instead.
   */
  compress(entry: CacheEntry, encoding: number): Representation {
    const identity = entry.variants[Encoding.identity]!;
    const source = identity.body!;
    const compressed = compressBytes(source, encoding);
    if (compressed.length >= source.length) {
      entry.variants[encoding] = identity; // compression does not pay: this encoding is answered with identity
      return identity;
    }
    const spec = this.spec;
    spec.contentType = entry.contentType;
    spec.cacheControl = identity.headers.get("Cache-Control");
    spec.negotiates = true;
    spec.encoding = encoding;
    spec.body = compressed;
    spec.filePath = identity.filePath;
    spec.size = compressed.length;
    spec.mtimeMs = 0;
    spec.ino = 0;
    spec.etag = `${identity.etag.slice(0, -1)}-${ENCODING_TOKENS[encoding]}"`; // the identity tag, suffixed
    spec.lastModifiedSeconds = identity.lastModifiedSeconds;
    spec.lastModified = identity.headers.get("Last-Modified")!;
    const variant = buildRepresentation(spec);
    spec.body = null;
    entry.variants[encoding] = variant;
    return variant;
  }

  /** The precompressed sidecars of a file that are regular files inside the root. */
  private sidecarsOf(realPath: string): Sidecar[] {
    const sidecars: Sidecar[] = [];
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
    return sidecars;
  }
}

/** `source` in one of the codings compressed on the fly (br, zstd, gzip). */
function compressBytes(source: Uint8Array, encoding: number): Uint8Array {
  if (encoding === Encoding.br) {
    return brotliCompressSync(source, {
      params: {
        [zlibConstants.BROTLI_PARAM_QUALITY]: BROTLI_ON_THE_FLY_QUALITY,
        [zlibConstants.BROTLI_PARAM_SIZE_HINT]: source.length,
      },
    });
  }
  if (encoding === Encoding.zstd) return Bun.zstdCompressSync(source, { level: ZSTD_ON_THE_FLY_LEVEL });
  return gzipSync(source, { level: GZIP_ON_THE_FLY_LEVEL });
}

/** Whether the file behind a disk-served representation is still the one it was built from. */
export function isSameFile(representation: Representation): boolean {
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

/** The whole file, or null when it cannot be read (removed, permissions). */
export function readOrNull(path: string): Uint8Array | null {
  try {
    return readFileSync(path);
  } catch {
    return null;
  }
}
