// Settings of the public listener and its connections: [server], [tcp], [limits], [proxy].
import { bool, byteSize, int, oneOf, seconds, str, wholeSeconds } from "../kinds.ts";
import { PROTOCOLS, type ReloadRule } from "../reload-rule.ts";
import { type SettingSpec, MiB, GiB, TCP_NEW_CONNECTIONS } from "./spec.ts";

/** Read by the TCP listeners (echo, custom, tcp_proxy) for every connection. */
const TCP_LIVE: ReloadRule = { echo: "live", custom: "live", tcp_proxy: "live", otherwise: "not-read" };
/** Read by the echo and HPS/1 listener for every connection (the TCP proxy holds one read per direction instead). */
const ECHO_CUSTOM_LIVE: ReloadRule = { echo: "live", custom: "live", otherwise: "not-read" };
/** Read by the TCP proxy when it opens a connection. */
const PROXY_NEW_CONNECTIONS: ReloadRule = { tcp_proxy: "new-connections", otherwise: "not-read" };

/** The listener: protocol, address, threads, shutdown. */
export const SERVER_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;

/** Socket options and output limits of every TCP connection. */
export const TCP_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;

/** How many connections, how idle, how large a request. */
export const LIMITS_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;

/** The TCP proxy (server.protocol = "tcp_proxy"). */
export const PROXY_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;
