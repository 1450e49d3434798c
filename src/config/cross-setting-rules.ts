// Rules that span several settings (one setting against another, or a setting against what it needs).
import type { z } from "zod";
import type { SettingValues } from "./schema.ts";

/**
 * The settings ("table.key") a rule spanning settings compares besides the one its issue is on: a loader blames the
 * issue on the layer that set one of them when nothing set the setting itself (src/config/load.ts).
 */
export interface RuleIssueParams {
  readonly alsoFrom: readonly string[];
}

/** Adds an issue for every rule between settings that the configuration breaks (after each setting passed its own). */
export function crossSettingRules(config: SettingValues, ctx: RuleContext): void {
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
}

/** The URL schemes Bun's Redis client accepts, followed by something. */
const REDIS_URL = /^(redis|rediss|valkey|valkeys|redis\+tls|redis\+unix|redis\+tls\+unix):\/\/\S+$/;
type RuleContext = z.core.$RefinementCtx<SettingValues>;

/** A host name a client may ask for by SNI: labels of letters, digits and hyphens, optionally "*." for one label. */
const SERVER_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** Rules between [tls] and the settings that need it (the files themselves are checked by src/tls at start and reload). */
function tlsRules(config: SettingValues, ctx: RuleContext): void {
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
