// Settings of running hps: [log], [stats], [admin], [fleet].
import { bool, byteSize, int, oneOf, seconds, str, wholeMilliseconds } from "../kinds.ts";
import type { ReloadRule } from "../reload-rule.ts";
import { type SettingSpec, MiB, GiB } from "./spec.ts";

/** The fleet's links, leases and holders are made at start (src/fleet/member.ts). */
const FLEET_AT_START: ReloadRule = "restart";

/** Server log and access log. */
export const LOG_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;

/** The periodic report. */
export const STATS_SETTINGS = {
  interval_s: {
    schema: seconds(0, 86_400, 60),
    doc: "Print a status report this often; 0 = only on shutdown.",
    unit: "seconds",
    reload: { rebuild: ["report-timer"] },
  },
} as const satisfies Record<string, SettingSpec>;

/** The admin listener (/stats, /metrics, dashboard). */
export const ADMIN_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;

/** Instances sharing limits and statistics through Redis. */
export const FLEET_SETTINGS = {
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
} as const satisfies Record<string, SettingSpec>;
