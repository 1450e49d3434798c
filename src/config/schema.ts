// Every setting of hps: its type, range, unit, default, meaning and how a reload treats it. The single source of defaults.
import { z } from "zod";
import {
  bool,
  byteSize,
  int,
  oneOf,
  seconds,
  str,
  strList,
  wholeMicroseconds,
  wholeMilliseconds,
  wholeSeconds,
} from "./kinds.ts";
import { checkLists } from "./list-rules.ts";
import { LISTS, listSchema } from "./lists.ts";
import { PROTOCOLS, type ReloadRule } from "./reload-rule.ts";

/** One setting: its zod schema (with default), a sentence for people, its unit when it has one, how it reloads. */
export interface SettingSpec {
  readonly schema: z.ZodType;
  readonly doc: string;
  readonly unit?: string;
  /** What a configuration reload does when this setting changed (src/config/reload-rule.ts). */
  readonly reload: ReloadRule;
  /** Present when Bun's APIs give no way to apply the setting; the reason is shown at start-up. */
  readonly notAppliedBecause?: string;
  /** With notAppliedBecause: the value the runtime behaves as if set to; any other value is reported as not applied. */
  readonly runtimeValue?: unknown;
  /**
   * A list of tables ([[table.key]] blocks, the last setting of its table): set in the file only (the environment and
   * --set refuse it), shown in server.toml as `example` when empty.
   */
  readonly tableList?: { readonly example: readonly string[] };
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// Reload rules shared by several settings (the vocabulary is in src/config/reload-rule.ts).
/** Read by the TCP listeners (echo, custom, tcp_proxy) when they open a connection. */
const TCP_NEW_CONNECTIONS: ReloadRule = {
  echo: "new-connections",
  custom: "new-connections",
  tcp_proxy: "new-connections",
  otherwise: "not-read",
};
/** Read by the TCP listeners (echo, custom, tcp_proxy) for every connection. */
const TCP_LIVE: ReloadRule = { echo: "live", custom: "live", tcp_proxy: "live", otherwise: "not-read" };
/** Read by the echo and HPS/1 listener for every connection (the TCP proxy holds one read per direction instead). */
const ECHO_CUSTOM_LIVE: ReloadRule = { echo: "live", custom: "live", otherwise: "not-read" };
/** Read by the TCP proxy when it opens a connection. */
const PROXY_NEW_CONNECTIONS: ReloadRule = { tcp_proxy: "new-connections", otherwise: "not-read" };
/** The worker pool, its arena and its handlers module (custom) are built once at start. */
const POOL_AT_START: ReloadRule = { custom: "restart", otherwise: "not-read" };
/** Read by the HTTP site: a change rebuilds it (and its cache). */
const HTTP_SITE: ReloadRule = { rebuild: ["http-site"] };
/**
 * Who is admitted, and as which address (src/net): TCP decides when a connection opens; HTTP per request, except
 * that a connection counted under http.connection_limits was admitted once, so its count is rebuilt and the next
 * request of every open connection is admitted anew.
 */
const ADMISSION_LISTS: ReloadRule = { http: { rebuild: ["http-connections"] }, otherwise: "new-connections" };
/** The rate limiter's settings: HTTP requests and HPS/1 frames take tokens; echo has no requests to limit. */
const RATE_LIMITER: ReloadRule = { echo: "not-read", tcp_proxy: "not-read", otherwise: { rebuild: ["rate-limiter"] } };
/** The fleet's links, leases and holders are made at start (src/fleet/member.ts). */
const FLEET_AT_START: ReloadRule = "restart";
/** The shape of the HTTP listener (its servers and ports), set when it binds. */
const HTTP_LISTENER_AT_START: ReloadRule = { http: "restart", otherwise: "not-read" };
/** Read into every TLS listener's contexts: a change (or new files) rotates the listeners (src/tls/rotation.ts). */
const TLS_CERTIFICATES: ReloadRule = { rebuild: ["tls-certificates"] };

/** The settings, table by table, in the order server.toml and the README show them. */
export const SETTINGS = {
  server: {
    protocol: {
      schema: oneOf(PROTOCOLS, "http"),
      doc: "Protocol spoken on the public port: http (static files, and routes to upstreams), echo (bytes back), custom (HPS/1 binary frames) or tcp_proxy (raw TCP relayed to proxy.upstream).",
      reload: "restart",
    },
    bind: {
      schema: str("0.0.0.0"),
      doc: "Address to listen on; 127.0.0.1 for loopback only, :: for all IPv6 and IPv4.",
      reload: "restart",
    },
    port: { schema: int(0, 65535, 8080), doc: "TCP port; 0 picks a free port (tests use it).", reload: "restart" },
    backlog: {
      schema: int(1, 65535, 512),
      doc: "Listen backlog (pending connections the kernel queues).",
      notAppliedBecause: "Bun.listen and Bun.serve always listen with a backlog of 512",
      runtimeValue: 512,
      reload: "restart",
    },
    reuse_port: {
      schema: bool(false),
      doc: "Set SO_REUSEPORT so several processes or I/O threads can share the port.",
      reload: "restart",
    },
    io_threads: {
      schema: int(1, 64, 1),
      doc: "I/O threads that each accept connections on the port (more than 1 turns reuse_port on).",
      reload: "restart",
    },
    pid_file: {
      schema: str(""),
      doc: "File the process id is written to once the server is ready (removed at exit while it still names this process); hps upgrade reads it. Empty = none.",
      reload: "restart",
    },
    shutdown_timeout_s: {
      schema: seconds(0, 3600, 10),
      doc: "On SIGINT/SIGTERM, how long in-flight work may take to finish before the rest is closed.",
      unit: "seconds",
      reload: "live",
    },
  },
  tcp: {
    nodelay: {
      schema: bool(true),
      doc: "Disable Nagle's algorithm (TCP_NODELAY) on every connection.",
      reload: TCP_NEW_CONNECTIONS,
    },
    keepalive: {
      schema: bool(true),
      doc: "Enable TCP keep-alive probes (SO_KEEPALIVE) on every connection.",
      reload: TCP_NEW_CONNECTIONS,
    },
    keepalive_idle_s: {
      schema: wholeSeconds(1, 7200, 60),
      doc: "Idle time before the first TCP keep-alive probe.",
      unit: "seconds",
      reload: TCP_NEW_CONNECTIONS,
    },
    cork: {
      schema: bool(false),
      doc: "TCP_CORK: hold partial frames to send full segments.",
      notAppliedBecause:
        "Bun's socket APIs have no TCP_CORK option (Bun batches writes within one event-loop tick itself)",
      runtimeValue: false,
      reload: "not-read",
    },
    recv_buffer_bytes: {
      schema: byteSize(0, GiB, 0),
      doc: "SO_RCVBUF per connection; 0 keeps the kernel's default.",
      unit: "bytes",
      notAppliedBecause: "Bun's socket APIs have no SO_RCVBUF option",
      runtimeValue: 0,
      reload: "not-read",
    },
    send_buffer_bytes: {
      schema: byteSize(0, GiB, 0),
      doc: "SO_SNDBUF per connection; 0 keeps the kernel's default.",
      unit: "bytes",
      notAppliedBecause: "Bun's socket APIs have no SO_SNDBUF option",
      runtimeValue: 0,
      reload: "not-read",
    },
    write_high_water_bytes: {
      schema: byteSize(4096, GiB, MiB),
      doc: "Output a connection may have waiting for the kernel (echo, custom); above it the server stops reading that socket until the output is back under half of it, so TCP flow control slows the client instead of memory growing.",
      unit: "bytes",
      reload: ECHO_CUSTOM_LIVE,
    },
    send_timeout_s: {
      schema: seconds(0, 86_400, 30),
      doc: "A connection whose waiting output makes no progress (the client reads nothing) for this long is disconnected, counted as disconnectedSlowReader (echo, custom); 0 = never.",
      unit: "seconds",
      reload: ECHO_CUSTOM_LIVE,
    },
  },
  limits: {
    max_connections: {
      schema: int(1, 10_000_000, 10_000),
      doc: "Connections open at once; further ones are refused (TCP: closed at once; HTTP: 503).",
      reload: "live",
    },
    max_connections_per_ip: {
      schema: int(0, 10_000_000, 0),
      doc: "Connections open at once from one client address; 0 = no limit but max_connections.",
      reload: "live",
    },
    connection_timeout_s: {
      schema: seconds(0, 86_400, 60),
      doc: "Idle time after which a TCP connection (echo, custom, tcp_proxy) is closed; 0 = never.",
      unit: "seconds",
      reload: TCP_LIVE,
    },
    max_request_bytes: {
      schema: byteSize(16, GiB, MiB),
      doc: "Largest HTTP request body or HPS/1 frame; larger ones get 413 or error frame 2.",
      unit: "bytes",
      reload: { http: { rebuild: ["http-handler"] }, custom: "new-connections", otherwise: "not-read" },
    },
  },
  http: {
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
  },
  tls: {
    enabled: {
      schema: bool(false),
      doc: "Speak TLS on the public port, whatever server.protocol is (HTTPS, echo over TLS, HPS/1 over TLS).",
      reload: "restart",
    },
    cert_file: {
      schema: str(""),
      doc: "PEM file with the certificate, followed by its intermediate certificates (the chain); the default certificate when no tls.certificates entry matches the client's server name.",
      reload: TLS_CERTIFICATES,
    },
    key_file: {
      schema: str(""),
      doc: "PEM file with the unencrypted private key of cert_file.",
      reload: TLS_CERTIFICATES,
    },
    ca_file: {
      schema: str(""),
      doc: "PEM file with the certificate authorities that client certificates must chain to (client_auth).",
      reload: TLS_CERTIFICATES,
    },
    client_auth: {
      schema: oneOf(["none", "request", "require"] as const, "none"),
      doc: "Client certificates (mutual TLS): none; request (ask; a client without one is served, one whose certificate does not verify against ca_file is refused; echo and custom only); require (a client without a certificate that verifies against ca_file is refused).",
      reload: TLS_CERTIFICATES,
    },
    min_version: {
      schema: oneOf(["1.2", "1.3"] as const, "1.2"),
      doc: "Oldest TLS version accepted; older clients are refused during the handshake (TLS 1.0 and 1.1 are never accepted).",
      reload: TLS_CERTIFICATES,
    },
    ciphers: {
      schema: str(""),
      doc: "TLS 1.2 cipher suites in OpenSSL syntax (e.g. ECDHE+AESGCM); empty = Bun's defaults. TLS 1.3 suites are fixed by BoringSSL and always offered.",
      reload: TLS_CERTIFICATES,
    },
    session_tickets: {
      schema: bool(true),
      doc: "Give clients session tickets so they can resume a session without a full handshake.",
      reload: TLS_CERTIFICATES,
    },
    certificates: {
      schema: z
        .array(
          z
            .object({
              server_name: z.string(),
              cert_file: z.string(),
              key_file: z.string(),
            })
            .strict(),
        )
        .default([]),
      doc: "More certificates, chosen by the server name a client asks for (SNI), one [[tls.certificates]] table each with server_name (a host name, or *.example.com for one label), cert_file and key_file; set in the file only.",
      reload: TLS_CERTIFICATES,
      tableList: {
        example: [
          "# [[tls.certificates]]",
          '# server_name = "www.example.com"',
          '# cert_file = "/etc/hps/www.example.com/fullchain.pem"',
          '# key_file = "/etc/hps/www.example.com/privkey.pem"',
        ],
      },
    },
  },
  custom: {
    max_in_flight: {
      schema: int(1, 65_536, 64),
      doc: "HPS/1 requests one connection may have outstanding; past it the server stops reading that socket.",
      reload: { custom: "live", otherwise: "not-read" },
    },
    handlers: {
      schema: str(""),
      doc: "Module (path) loaded into every pool worker that implements opcodes 0x80-0xFF; empty = none.",
      reload: POOL_AT_START,
    },
    max_response_bytes: {
      schema: byteSize(1, GiB, 16 * MiB),
      doc: "Largest result a handler (opcodes 0x80-0xFF) may return; a larger one is answered with status 6 and a message instead.",
      unit: "bytes",
      // The pool's workers read it when they start.
      reload: POOL_AT_START,
    },
  },
  proxy: {
    upstream: {
      schema: str(""),
      doc: 'With server.protocol = "tcp_proxy": the [[upstreams]] group every connection is relayed to (required then).',
      reload: PROXY_NEW_CONNECTIONS,
    },
    send_proxy_protocol: {
      schema: bool(false),
      doc: 'With server.protocol = "tcp_proxy": start each connection to a server with a PROXY protocol v2 header naming the client.',
      reload: PROXY_NEW_CONNECTIONS,
    },
  },
  pool: {
    threads: {
      schema: int(0, 256, 0),
      doc: "Worker threads for pool operations; 0 = one per CPU core.",
      reload: POOL_AT_START,
    },
    max_queue: {
      schema: int(1, 10_000_000, 4096),
      doc: "Tasks accepted but not yet started by a worker (waiting in the pool's queue or in a worker's ring); past it a new task is answered busy (status 4) at once.",
      reload: POOL_AT_START,
    },
    task_timeout_ms: {
      schema: wholeMilliseconds(0, 3_600_000, 5000),
      doc: "A task running longer (timed from when a worker starts it) fails with timeout and its worker is replaced; 0 = no limit.",
      unit: "milliseconds",
      reload: POOL_AT_START,
    },
    spin_us: {
      schema: wholeMicroseconds(0, 1000, 100),
      doc: "How long a worker whose tasks have been arriving less than this apart keeps polling its empty ring for the next one before it sleeps; a task that arrives meanwhile needs no cross-thread wake-up, which makes single-task round trips faster (measured by `POOL_BENCH_SPIN_US=0 bun run bench pool` against the default). A poll that finds nothing makes the worker skip its next chances to poll (1, 3, 7 ... 63), so sparse traffic costs almost nothing and an idle server nothing. A worker polls only while the workers awake leave a CPU to the main thread (never when the process may use one CPU only) and, with fewer spare CPUs than workers, only after completions that woke the main thread. 0 = never poll.",
      unit: "microseconds",
      reload: POOL_AT_START,
    },
  },
  memory: {
    arena: {
      schema: bool(true),
      doc: "Keep payload buffers in the shared-memory arena; false uses ordinary allocations.",
      reload: POOL_AT_START,
    },
    arena_bytes: {
      schema: byteSize(64 * 1024, 16 * GiB, 16 * MiB),
      doc: "Size of the shared-memory arena; also the budget for payloads over 64 KiB (or for all payloads with memory.arena = false).",
      unit: "bytes",
      reload: POOL_AT_START,
    },
    debug: {
      schema: bool(false),
      doc: "Detect double free and use after free in the arena (slower).",
      reload: POOL_AT_START,
    },
  },
  rate_limit: {
    enabled: {
      schema: bool(false),
      doc: "Limit requests per client address (token bucket).",
      reload: { echo: "not-read", tcp_proxy: "not-read", otherwise: { rebuild: ["rate-limiter", "http-handler"] } },
    },
    requests: {
      schema: int(1, 1_000_000_000, 100),
      doc: "Requests allowed per window per client address (the sustained rate).",
      reload: RATE_LIMITER,
    },
    window_s: {
      schema: seconds(0.001, 86_400, 1),
      doc: "Window the requests count is measured over.",
      unit: "seconds",
      reload: RATE_LIMITER,
    },
    burst: {
      schema: int(0, 1_000_000_000, 0),
      doc: "Requests a client may send at once above the rate; 0 = same as requests.",
      reload: RATE_LIMITER,
    },
    max_tracked_ips: {
      schema: int(1, 100_000_000, 100_000),
      doc: "Client addresses remembered; the least recently seen is forgotten first.",
      // With several I/O threads it sizes the shared address table (echo included), made at start.
      reload: {
        threaded: "restart",
        echo: "not-read",
        tcp_proxy: "not-read",
        otherwise: { rebuild: ["rate-limiter"] },
      },
    },
    headers: {
      schema: bool(false),
      doc: "Send RateLimit-Limit/Remaining/Reset headers on admitted HTTP responses too.",
      reload: { http: { rebuild: ["http-handler"] }, otherwise: "not-read" },
    },
  },
  net: {
    trusted_proxies: {
      schema: strList([]),
      doc: "CIDRs of proxies whose X-Forwarded-For or PROXY header is believed.",
      reload: ADMISSION_LISTS,
    },
    proxy_protocol: {
      schema: bool(false),
      doc: "Expect a PROXY protocol v1/v2 header from trusted proxies on TCP connections (echo, custom, tcp_proxy).",
      reload: TCP_NEW_CONNECTIONS,
    },
    allow: {
      schema: strList([]),
      doc: "CIDRs allowed to connect; empty = everyone not denied.",
      reload: ADMISSION_LISTS,
    },
    deny: { schema: strList([]), doc: "CIDRs refused at once (checked before allow).", reload: ADMISSION_LISTS },
  },
  log: {
    level: {
      schema: oneOf(["error", "warn", "info", "debug"] as const, "info"),
      doc: "Least severe level written.",
      reload: "live",
    },
    file: { schema: str(""), doc: "Log file; empty = stderr.", reload: { rebuild: ["log-file"] } },
    format: {
      schema: oneOf(["text", "json"] as const, "text"),
      doc: 'Server log lines: text ("2026-11-26T01:13:39.123Z INFO  message") or json (one object per line: time, level, msg, and lines for a report).',
      reload: "live",
    },
    access_log: {
      schema: bool(true),
      doc: "Write an access log line per HTTP request (format: log.access_format).",
      reload: { rebuild: ["http-access-log"] },
    },
    access_file: { schema: str(""), doc: "Access log file; empty = stdout.", reload: { rebuild: ["http-access-log"] } },
    access_format: {
      schema: oneOf(["combined", "json"] as const, "combined"),
      doc: "Access log lines: combined (nginx's Combined Log Format) or json (one object per line: time, client, method, path, protocol, status, bytes, duration_us, referer, user_agent, and upstream, upstream_status, upstream_duration_us for proxied requests).",
      reload: { rebuild: ["http-access-log"] },
    },
    max_buffered_bytes: {
      schema: byteSize(64 * 1024, GiB, 4 * MiB),
      doc: "Log bytes waiting to be written, per log, past which new lines are dropped and counted (logLinesDropped, accessLogLinesDropped) instead of blocking: logs are written by a thread of their own, so a slow disk or a pipe nobody reads never stalls requests. A reload applies it to the server log at once.",
      unit: "bytes",
      reload: { rebuild: ["http-access-log"] },
    },
  },
  stats: {
    interval_s: {
      schema: seconds(0, 86_400, 60),
      doc: "Print a status report this often; 0 = only on shutdown.",
      unit: "seconds",
      reload: { rebuild: ["report-timer"] },
    },
  },
  admin: {
    enabled: {
      schema: bool(true),
      doc: "Serve /livez /readyz /stats /status /metrics /dashboard on a separate listener.",
      reload: "restart",
    },
    bind: { schema: str("127.0.0.1"), doc: "Address of the admin listener (loopback by default).", reload: "restart" },
    port: { schema: int(0, 65535, 9090), doc: "Port of the admin listener; 0 picks a free port.", reload: "restart" },
    tls: {
      schema: bool(false),
      doc: "Serve the admin listener over HTTPS with the [tls] certificates and settings (needs tls.enabled); it stays plain HTTP otherwise.",
      reload: "restart",
    },
  },
  fleet: {
    redis_url: {
      schema: str(""),
      doc: "Redis (or Valkey) shared by the instances of a fleet, e.g. redis://10.0.0.5:6379 or rediss://user:secret@host:6380/0: rate limits and limits.max_connections_per_ip then hold across every instance, and each publishes its statistics there. Empty = no fleet: every limit is this instance's own.",
      reload: FLEET_AT_START,
    },
    instance_id: {
      schema: str(""),
      doc: "This instance's name in the fleet's statistics; empty = hostname:port. Give each instance its own.",
      reload: FLEET_AT_START,
    },
    sync_interval_ms: {
      schema: wholeMilliseconds(1, 60_000, 50),
      doc: "A busy address's token lease is sized to last about this long (so it costs about one Redis call per interval); leases of addresses quiet for two intervals, and connection slots no longer used, are given back this often.",
      unit: "milliseconds",
      reload: FLEET_AT_START,
    },
    on_redis_down: {
      schema: oneOf(["local", "allow", "deny"] as const, "local"),
      doc: "While Redis is unavailable: local = each instance limits on its own (as without a fleet), allow = no rate limit and no per-address connection limit, deny = refuse requests and connections beyond the tokens and slots already leased. Logged once per outage; fleet-wide limits resume by themselves when Redis answers.",
      reload: FLEET_AT_START,
    },
    key_prefix: {
      schema: str("hps:"),
      doc: "Prefix of every key hps writes in Redis; fleets sharing one Redis need different prefixes.",
      reload: FLEET_AT_START,
    },
    redis_timeout_ms: {
      schema: wholeMilliseconds(1, 60_000, 100),
      doc: "A call to Redis or a connection attempt without an answer this long counts as an outage (on_redis_down applies until Redis answers again). Requests never wait for Redis.",
      unit: "milliseconds",
      reload: FLEET_AT_START,
    },
  },
} as const satisfies Record<string, Record<string, SettingSpec>>;

/**
 * Settings that existed in an earlier version, by "table.key": naming one is an error that says what replaced it
 * (a setting whose meaning changed is not silently mapped onto its successor).
 */
export const REMOVED_SETTINGS: Readonly<Record<string, string>> = {
  "tcp.max_buffered_bytes":
    "was removed: a connection is no longer cut when its output queue grows; the server stops reading it above tcp.write_high_water_bytes and disconnects a client that reads nothing for tcp.send_timeout_s. Use those two settings instead",
};

type Settings = typeof SETTINGS;
type TableShape<T extends Record<string, SettingSpec>> = { [K in keyof T]: T[K]["schema"] };

function tableSchema<T extends Record<string, SettingSpec>>(table: T) {
  const shape = Object.fromEntries(Object.entries(table).map(([key, spec]) => [key, spec.schema])) as TableShape<T>;
  // A missing table means all of its defaults; `{}` is valid input once defaults apply, which zod cannot see statically.
  return z.object(shape).prefault({} as never);
}

const tables = Object.fromEntries(Object.entries(SETTINGS).map(([name, table]) => [name, tableSchema(table)])) as {
  [K in keyof Settings]: ReturnType<typeof tableSchema<Settings[K]>>;
};

/**
 * The settings ("table.key") a rule spanning settings compares besides the one its issue is on: a loader blames the
 * issue on the layer that set one of them when nothing set the setting itself (src/config/load.ts).
 */
export interface RuleIssueParams {
  readonly alsoFrom: readonly string[];
}

/** The http table with its list of routes ([[http.routes]]). */
const httpTable = z
  .object({
    ...(Object.fromEntries(Object.entries(SETTINGS.http).map(([key, spec]) => [key, spec.schema])) as TableShape<
      Settings["http"]
    >),
    routes: listSchema(LISTS["http.routes"]),
  })
  .prefault({} as never);

/** The whole configuration, with the rules that span several settings. */
export const configSchema = z
  .object({ ...tables, http: httpTable, upstreams: listSchema(LISTS.upstreams) })
  .superRefine((config, ctx) => {
    checkLists(config, ctx);
    // A setting that failed its own schema has a value no rule can compare (out of range, or not even a number): its
    // own problem is reported, and the rules it takes part in wait until it is fixed.
    const valid = (...names: string[]) =>
      !ctx.issues.some((issue) => names.includes((issue.path ?? []).slice(0, 2).join(".")));
    if (
      valid("limits.max_connections_per_ip", "limits.max_connections") &&
      config.limits.max_connections_per_ip > config.limits.max_connections
    ) {
      // 0 means "no per-address limit", so only an explicit larger value is a mistake.
      ctx.addIssue({
        code: "custom",
        path: ["limits", "max_connections_per_ip"],
        message: `must be at most limits.max_connections (${config.limits.max_connections})`,
        input: config.limits.max_connections_per_ip,
        params: { alsoFrom: ["limits.max_connections"] } satisfies RuleIssueParams,
      });
    }
    if (
      valid("http.cache_max_file_bytes", "http.cache_bytes") &&
      config.http.cache_max_file_bytes > config.http.cache_bytes
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["http", "cache_max_file_bytes"],
        message: `must be at most http.cache_bytes (${config.http.cache_bytes})`,
        input: config.http.cache_max_file_bytes,
        params: { alsoFrom: ["http.cache_bytes"] } satisfies RuleIssueParams,
      });
    }
    if (valid("http.immutable_pattern") && config.http.immutable_pattern !== "") {
      try {
        new RegExp(config.http.immutable_pattern);
      } catch (error) {
        ctx.addIssue({
          code: "custom",
          path: ["http", "immutable_pattern"],
          message: `must be a valid regular expression (${(error as Error).message})`,
          input: config.http.immutable_pattern,
        });
      }
    }
    for (const key of ["trusted_proxies", "allow", "deny"] as const) {
      config.net[key].forEach((cidr, index) => {
        if (!isCidrText(cidr)) {
          ctx.addIssue({
            code: "custom",
            path: ["net", key, index],
            message: "must be an IPv4 or IPv6 address or CIDR like 10.0.0.0/8 or fd00::/8",
            input: cidr,
          });
        }
      });
    }
    if (config.http.static_routes) {
      // Static routes run no JavaScript per request, so every per-request feature must be off (never silently skipped).
      const conflicts: string[] = [];
      if (config.log.access_log) conflicts.push("log.access_log = true");
      if (config.rate_limit.enabled) conflicts.push("rate_limit.enabled = true");
      if (config.http.max_keepalive_requests > 0)
        conflicts.push(`http.max_keepalive_requests = ${config.http.max_keepalive_requests}`);
      if (config.http.connection_limits) conflicts.push("http.connection_limits = true");
      if (config.net.allow.length > 0) conflicts.push("net.allow (not empty)");
      if (config.net.deny.length > 0) conflicts.push("net.deny (not empty)");
      if (config.http.compress) conflicts.push("http.compress = true");
      if (config.http.cache_revalidate_ms === 0) conflicts.push("http.cache_revalidate_ms = 0");
      if (conflicts.length > 0) {
        ctx.addIssue({
          code: "custom",
          path: ["http", "static_routes"],
          message: `cannot be true with ${conflicts.join(", ")}: static routes run no JavaScript per request, so nothing could log, admit, count connections, choose an encoding or check the disk per request; turn them off (cache_revalidate_ms must be at least 1) or set http.static_routes = false`,
          input: true,
        });
      }
    }
    if (valid("fleet.redis_url") && config.fleet.redis_url !== "" && !REDIS_URL.test(config.fleet.redis_url)) {
      ctx.addIssue({
        code: "custom",
        path: ["fleet", "redis_url"],
        message:
          "must be a Redis URL such as redis://host:6379, rediss://user:secret@host:6380/0 or redis+unix:///run/redis.sock (or empty for no fleet)",
        input: config.fleet.redis_url,
      });
    }
    tlsRules(config, ctx);
    if (
      valid("admin.enabled", "admin.port", "server.port") &&
      config.admin.enabled &&
      config.admin.port !== 0 &&
      config.admin.port === config.server.port
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["admin", "port"],
        message: `must differ from server.port (${config.server.port})`,
        input: config.admin.port,
        params: { alsoFrom: ["server.port", "admin.enabled"] } satisfies RuleIssueParams,
      });
    }
  });

/** The URL schemes Bun's Redis client accepts, followed by something. */
const REDIS_URL = /^(redis|rediss|valkey|valkeys|redis\+tls|redis\+unix|redis\+tls\+unix):\/\/\S+$/;
type RuleContext = z.core.$RefinementCtx<z.output<z.ZodObject<typeof tables>>>;

/** A host name a client may ask for by SNI: labels of letters, digits and hyphens, optionally "*." for one label. */
const SERVER_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** Rules between [tls] and the settings that need it (the files themselves are checked by src/tls at start and reload). */
function tlsRules(config: z.output<z.ZodObject<typeof tables>>, ctx: RuleContext): void {
  // A setting that failed its own schema takes part in no rule (as in configSchema); the issues these rules add
  // themselves do not count, so several entries of tls.certificates are each checked.
  const ownProblems = ctx.issues.map((existing) => (existing.path ?? []).slice(0, 2).join("."));
  /** An issue on `path` from a rule that also compares `alsoFrom` (see RuleIssueParams). */
  const issue = (path: (string | number)[], message: string, input: unknown, alsoFrom: string[] = []) => {
    const names = [path.slice(0, 2).join("."), ...alsoFrom];
    if (names.some((name) => ownProblems.includes(name))) return;
    ctx.addIssue({ code: "custom", path, message, input, params: { alsoFrom } satisfies RuleIssueParams });
  };
  const tls = config.tls;
  if (tls.enabled) {
    const also = ["tls.enabled"];
    if (tls.cert_file === "") issue(["tls", "cert_file"], "must name a PEM file when tls.enabled = true", "", also);
    if (tls.key_file === "") issue(["tls", "key_file"], "must name a PEM file when tls.enabled = true", "", also);
  }
  if (tls.client_auth !== "none" && tls.ca_file === "") {
    issue(
      ["tls", "ca_file"],
      `must name the PEM file of the CAs that sign client certificates when tls.client_auth = "${tls.client_auth}"`,
      "",
      ["tls.client_auth"],
    );
  }
  if (tls.enabled && tls.client_auth === "request" && config.server.protocol === "http") {
    issue(
      ["tls", "client_auth"],
      'cannot be "request" with server.protocol = "http": Bun.serve does not tell the server whether an offered certificate verified (docs/upstream/serve-tls-visibility.md), so an invalid one could not be refused; use "require" or "none"',
      "request",
      ["tls.enabled", "server.protocol"],
    );
  }
  const seen = new Set<string>();
  tls.certificates.forEach((entry, index) => {
    const name = entry.server_name.toLowerCase();
    if (!SERVER_NAME.test(name)) {
      issue(
        ["tls", "certificates", index, "server_name"],
        'must be a host name such as "example.com" or "*.example.com"',
        entry.server_name,
      );
    } else if (seen.has(name)) {
      issue(["tls", "certificates", index, "server_name"], "is given twice in [[tls.certificates]]", entry.server_name);
    }
    seen.add(name);
    for (const key of ["cert_file", "key_file"] as const) {
      if (entry[key] === "") issue(["tls", "certificates", index, key], "must name a PEM file", "");
    }
  });
  if (config.server.protocol !== "http" && tls.certificates.length > 0) {
    issue(
      ["tls", "certificates"],
      `needs server.protocol = "http": Bun.listen, which serves "${config.server.protocol}", takes one certificate (docs/upstream/listen-sni.md)`,
      tls.certificates,
    );
  }
  if (config.server.protocol !== "http" && tls.enabled && config.net.proxy_protocol) {
    issue(
      ["net", "proxy_protocol"],
      "cannot be used with tls.enabled: the PROXY header comes before the TLS handshake, and Bun's TLS listener reads TLS from the first byte",
      true,
    );
  }
  const needsTls = (path: [string, string], active: boolean, value: unknown) => {
    if (active && !tls.enabled) {
      issue(path, "needs tls.enabled = true (and tls.cert_file / tls.key_file)", value, ["tls.enabled"]);
    }
  };
  needsTls(["http", "http3"], config.http.http3, true);
  needsTls(["http", "redirect_port"], config.http.redirect_port !== 0, config.http.redirect_port);
  needsTls(["http", "hsts_max_age_s"], config.http.hsts_max_age_s > 0, config.http.hsts_max_age_s);
  needsTls(["admin", "tls"], config.admin.enabled && config.admin.tls, true);
  if (config.server.protocol !== "http") {
    for (const key of ["http3", "redirect_port", "hsts_max_age_s"] as const) {
      const value = config.http[key];
      if (value !== false && value !== 0) {
        issue(["http", key], `applies to server.protocol = "http" only (it is "${config.server.protocol}")`, value, [
          "server.protocol",
        ]);
      }
    }
  }
  const redirectPort = config.http.redirect_port;
  if (redirectPort !== 0) {
    if (redirectPort === config.server.port) {
      issue(["http", "redirect_port"], "must differ from server.port", redirectPort, ["server.port"]);
    }
    if (config.admin.enabled && redirectPort === config.admin.port) {
      issue(["http", "redirect_port"], "must differ from admin.port", redirectPort, ["admin.port", "admin.enabled"]);
    }
  }
}

/** Loose shape check for a CIDR or plain address; src/net parses it for real. */
function isCidrText(text: string): boolean {
  const [address, bits, extra] = text.split("/");
  if (extra !== undefined || address === undefined) return false;
  const isV4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(address) && address.split(".").every((part) => Number(part) <= 255);
  const isV6 = address.includes(":") && /^[0-9a-f:.]+$/i.test(address);
  if (!isV4 && !isV6) return false;
  if (bits === undefined) return true;
  const bitCount = Number(bits);
  return /^\d+$/.test(bits) && bitCount <= (isV4 ? 32 : 128);
}

export type Config = z.output<typeof configSchema>;

/** Every setting at its default (what a missing file means). */
export const DEFAULT_CONFIG: Config = configSchema.parse({});
export type ConfigInput = z.input<typeof configSchema>;
export type Protocol = Config["server"]["protocol"];

/** Makes every nested property optional, for overrides in tests and code. */
export type ConfigOverrides = { [T in keyof Config]?: Partial<Config[T]> };
