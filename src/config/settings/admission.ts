// Settings of who is admitted and how fast: [rate_limit], [net].
import { bool, int, seconds, strList } from "../kinds.ts";
import type { ReloadRule } from "../reload-rule.ts";
import { type SettingSpec, TCP_NEW_CONNECTIONS } from "./spec.ts";

/**
 * Who is admitted, and as which address (src/net): TCP decides when a connection opens; HTTP per request, except
 * that a connection counted under http.connection_limits was admitted once, so its count is rebuilt and the next
 * request of every open connection is admitted anew.
 */
const ADMISSION_LISTS: ReloadRule = { http: { rebuild: ["http-connections"] }, otherwise: "new-connections" };
/** The rate limiter's settings: HTTP requests and HPS/1 frames take tokens; echo has no requests to limit. */
const RATE_LIMITER: ReloadRule = { echo: "not-read", tcp_proxy: "not-read", otherwise: { rebuild: ["rate-limiter"] } };

/** Requests per client address (token bucket). */
export const RATE_LIMIT_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;

/** Client addresses: trusted proxies, PROXY protocol, allow and deny lists. */
export const NET_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;
