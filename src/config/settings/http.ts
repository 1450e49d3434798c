// Settings of the HTTP site and listener: [http].
import { bool, byteSize, int, oneOf, str, wholeMilliseconds, wholeSeconds } from "../kinds.ts";
import type { ReloadRule } from "../reload-rule.ts";
import { type SettingSpec, MiB, GiB } from "./spec.ts";

/** Read by the HTTP site: a change rebuilds it (and its cache). */
const HTTP_SITE: ReloadRule = { rebuild: ["http-site"] };
/** The shape of the HTTP listener (its servers and ports), set when it binds. */
const HTTP_LISTENER_AT_START: ReloadRule = { http: "restart", otherwise: "not-read" };

/** Static files, caching, compression, HTTP/2 and HTTP/3. */
export const HTTP_SETTINGS = {
  root: {
    schema: str("./public"),
    doc: "Directory whose files are served; nothing outside it ever is.",
    reload: HTTP_SITE,
  },
  index: { schema: str("index.html"), doc: "File served for a directory request (/ and /dir/).", reload: HTTP_SITE },
  pipelining: {
    schema: bool(true),
    doc: "Answer several requests sent in one write, in order (HTTP/1.1 pipelining).",
    notAppliedBecause: "Bun.serve always answers pipelined requests in order and cannot refuse them",
    runtimeValue: true,
    reload: "not-read",
  },
  keepalive_timeout_s: {
    schema: wholeSeconds(0, 255, 10),
    doc: "Idle time before a keep-alive connection is closed (Bun's idleTimeout, at most 255); 0 = never.",
    unit: "seconds",
    reload: { http: "restart", otherwise: "not-read" },
  },
  max_keepalive_requests: {
    schema: int(0, 10_000_000, 0),
    doc: "Requests served on one connection before it is closed with Connection: close; 0 = unlimited (as Node, Caddy and Bun; nginx uses 1000). A limit costs one getpeername per request.",
    reload: { rebuild: ["http-connections"] },
  },
  connection_limits: {
    schema: bool(false),
    doc: "Apply limits.max_connections and limits.max_connections_per_ip to HTTP connections (a connection is a peer address and port; one the client drops silently stays counted up to keepalive_timeout_s; costs one getpeername per request).",
    reload: { rebuild: ["http-connections"] },
  },
  sendfile: {
    schema: bool(true),
    doc: "Send large files with Bun.file (the kernel's sendfile for files of 1 MiB or more) instead of reading them in.",
    reload: HTTP_SITE,
  },
  dotfiles: {
    schema: oneOf(["deny", "allow"] as const, "deny"),
    doc: "Whether paths with a segment starting with '.' (other than .well-known) are served.",
    reload: HTTP_SITE,
  },
  directory_listing: {
    schema: bool(false),
    doc: "Serve an HTML listing for a directory without an index file.",
    reload: HTTP_SITE,
  },
  fallback: {
    schema: str(""),
    doc: "File (relative to root) served for paths with no file, for single-page apps; empty = 404.",
    reload: HTTP_SITE,
  },
  max_ranges: {
    schema: int(1, 1000, 16),
    doc: "Most ranges honoured in one Range header; more (or overlapping) ranges get the whole file.",
    reload: HTTP_SITE,
  },
  cache_control: {
    schema: str("no-cache"),
    doc: "Cache-Control sent with every file; empty = none. The default no-cache lets browsers and caches keep a copy but makes them revalidate it (a 304 when unchanged) before each use, so a changed file is never shown stale.",
    reload: HTTP_SITE,
  },
  immutable_pattern: {
    schema: str(""),
    doc: "Regular expression on the path; matching files get Cache-Control: max-age=31536000, immutable.",
    reload: HTTP_SITE,
  },
  compress: {
    schema: bool(true),
    doc: "Compress compressible files on the fly with brotli, zstd or gzip, whichever the client's Accept-Encoding prefers (cached in memory, each with its own ETag); a precompressed sidecar (file.br, file.zst, file.gz) is served instead for its own encoding.",
    reload: HTTP_SITE,
  },
  compress_max_bytes: {
    schema: byteSize(0, GiB, MiB),
    doc: "Largest file compressed on the fly.",
    unit: "bytes",
    reload: HTTP_SITE,
  },
  cache_max_file_bytes: {
    schema: byteSize(0, GiB, MiB),
    doc: "Largest file kept in the in-memory response cache.",
    unit: "bytes",
    reload: HTTP_SITE,
  },
  cache_bytes: {
    schema: byteSize(0, 64 * GiB, 64 * MiB),
    doc: "Total bytes of file content kept in the in-memory cache (least recently used evicted).",
    unit: "bytes",
    reload: HTTP_SITE,
  },
  cache_revalidate_ms: {
    schema: wholeMilliseconds(0, 3_600_000, 1000),
    doc: "A cached file is checked against the disk (stat) at most this often; a change is served within this window.",
    unit: "milliseconds",
    reload: HTTP_SITE,
  },
  static_routes: {
    schema: bool(false),
    doc: "Serve files held in the in-memory cache as Bun static routes: Bun answers GET and HEAD (with If-None-Match/If-Modified-Since 304 and If-Match/If-Unmodified-Since 412) from a prebuilt response, with no JavaScript per request (the fastest mode). Given up for those files: Range is ignored (the whole file, 200, as RFC 9110 allows); their requests are not counted in stats (gauge httpCache.staticRoutes gives how many paths are served so); no access log, rate limit, allow/deny, keep-alive request limit, connection limits or on-the-fly compression, so log.access_log, rate_limit.enabled, net.allow, net.deny, http.max_keepalive_requests, http.connection_limits and http.compress must be off (a start-up error names any that is not). A file with a precompressed sidecar, a file over cache_max_file_bytes, other methods and other paths keep the ordinary path. A timer checks routed files every cache_revalidate_ms (which must be at least 1).",
    reload: { rebuild: ["http-handler"] },
  },
  http2: {
    schema: bool(true),
    doc: "Serve HTTP/2 too: with TLS, offered to clients by ALPN (h2); without TLS, to clients that open with the HTTP/2 preface (prior-knowledge h2c). HTTP/1.1 is always served.",
    reload: HTTP_LISTENER_AT_START,
  },
  http3: {
    schema: bool(false),
    doc: "Serve HTTP/3 (QUIC, experimental in Bun) on the same port number over UDP, and advertise it with Alt-Svc on HTTP/1.1 and HTTP/2 responses; needs tls.enabled.",
    reload: HTTP_LISTENER_AT_START,
  },
  redirect_port: {
    schema: int(0, 65535, 0),
    doc: "When set (and tls.enabled), a plain-HTTP listener on this port (same server.bind) answers every request with 308 to the https:// URL (path and query kept), except /.well-known/acme-challenge/ which is served from http.root for ACME clients; 0 = none.",
    reload: HTTP_LISTENER_AT_START,
  },
  hsts_max_age_s: {
    schema: wholeSeconds(0, 100_000_000, 0),
    doc: "When > 0 (needs tls.enabled), every HTTPS response carries Strict-Transport-Security: max-age=<this>; 0 = not sent.",
    unit: "seconds",
    // Part of every prebuilt response of the site.
    reload: HTTP_SITE,
  },
} as const satisfies Record<string, SettingSpec>;
