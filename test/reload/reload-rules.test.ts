// Reload rules: the schema's rule of a sample of settings of every kind, checked against a reload actually performed
// (does the new value take effect, is the HTTP site rebuilt, is the handler switched), and the generated reload column.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { changedParts, reloadEffect } from "../../src/config/reload.ts";
import type { ReloadPart, ReloadRule } from "../../src/config/reload-rule.ts";
import { reloadWords } from "../../src/config/reference.ts";
import { configSchema, type Config, type ConfigOverrides, SETTINGS } from "../../src/config/schema.ts";
import type { SettingSpec } from "../../src/config/settings/spec.ts";
import { type Server, startServer } from "../../src/server.ts";
import { testConfig } from "../helpers/common.ts";
import { keptConnection, rawGet, rawRequest, text } from "../helpers/http.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-reload-rules-"));
const root = join(dir, "site");
mkdirSync(root);
writeFileSync(join(root, "page.txt"), "page");
writeFileSync(join(root, "index.html"), "index");
writeFileSync(join(root, "other.html"), "other");
writeFileSync(join(root, ".secret"), "secret");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `base` with `changes` laid over it, table by table. */
function merged(base: ConfigOverrides, changes: ConfigOverrides): ConfigOverrides {
  const out: Record<string, object> = { ...(base as Record<string, object>) };
  for (const [table, values] of Object.entries(changes)) out[table] = { ...out[table], ...values };
  return out as ConfigOverrides;
}

/**
 * What the test expects a change of the setting to do, written independently of the schema:
 * "restart" (kept until a restart), "live" (at once, nothing rebuilt), "handler" (a new HTTP handler, the site and
 * its cache kept), "site" (a new HTTP handler and site: the cache starts empty), "rate-limiter" (rate-limit state reset).
 */
type Kind = "restart" | "live" | "handler" | "site" | "rate-limiter";

interface Probe {
  readonly setting: string;
  readonly kind: Kind;
  readonly base?: ConfigOverrides;
  readonly change: ConfigOverrides;
  /** Whether the changed value is in effect on the running server, seen from outside (requests, counters). */
  inEffect(server: Server): Promise<boolean>;
}

const page = (server: Server) => rawGet(server.port, "/page.txt");
const PROBES: readonly Probe[] = [
  {
    setting: "http.cache_control",
    kind: "site",
    change: { http: { cache_control: "no-store" } },
    inEffect: async (server) => (await page(server)).headers.get("cache-control") === "no-store",
  },
  {
    setting: "http.dotfiles",
    kind: "site",
    change: { http: { dotfiles: "allow" } },
    inEffect: async (server) => (await rawGet(server.port, "/.secret")).status === 200,
  },
  {
    setting: "http.index",
    kind: "site",
    change: { http: { index: "other.html" } },
    inEffect: async (server) => text((await rawGet(server.port, "/")).body) === "other",
  },
  {
    setting: "net.deny",
    kind: "handler",
    change: { net: { deny: ["127.0.0.0/8"] } },
    inEffect: async (server) => (await page(server)).status === 403,
  },
  {
    setting: "rate_limit.headers",
    kind: "handler",
    base: { rate_limit: { enabled: true, requests: 1000, window_s: 60 } },
    change: { rate_limit: { headers: true } },
    inEffect: async (server) => (await page(server)).headers.has("ratelimit-limit"),
  },
  {
    setting: "limits.max_request_bytes",
    kind: "handler",
    change: { limits: { max_request_bytes: 16 } },
    inEffect: async (server) =>
      (
        await rawRequest(
          server.port,
          `POST /page.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n${"x".repeat(64)}`,
        )
      ).status === 413,
  },
  {
    setting: "http.max_keepalive_requests",
    kind: "handler",
    change: { http: { max_keepalive_requests: 1 } },
    inEffect: async (server) => (await page(server)).headers.get("connection") === "close",
  },
  {
    setting: "log.access_log",
    kind: "handler",
    change: { log: { access_log: true, access_file: join(dir, "access.log") } },
    inEffect: async (server) => {
      await page(server);
      await server.reopenLogs(); // writes out the lines buffered so far
      const file = join(dir, "access.log");
      return existsSync(file) && readFileSync(file, "utf8").includes("/page.txt");
    },
  },
  {
    setting: "log.level",
    kind: "live",
    change: { log: { level: "debug" } },
    inEffect: async (server) => server.logger.isEnabled("debug"),
  },
  {
    setting: "limits.max_connections",
    kind: "live",
    base: { http: { root, connection_limits: true } },
    change: { limits: { max_connections: 1 } },
    inEffect: async (server) => {
      const held = await keptConnection(server.port);
      try {
        await held.request("GET /page.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        return (await page(server)).status === 503;
      } finally {
        held.end();
      }
    },
  },
  {
    setting: "rate_limit.requests",
    kind: "rate-limiter",
    base: { rate_limit: { enabled: true, requests: 1, window_s: 60 } },
    change: { rate_limit: { requests: 2 } },
    // The request that cached the page spent the only token: a 200 now means a new bucket.
    inEffect: async (server) => (await page(server)).status === 200,
  },
  {
    setting: "http.keepalive_timeout_s",
    kind: "restart",
    change: { http: { keepalive_timeout_s: 30 } },
    inEffect: async (server) => server.context.config.http.keepalive_timeout_s === 30,
  },
  {
    setting: "server.port",
    kind: "restart",
    change: { server: { port: 1 } },
    inEffect: async (server) => (await page(server)).status !== 200,
  },
];

/** The kind the schema's rule gives the setting, in the probe's words. */
function derivedKind(running: Config, next: Config, setting: string): Kind {
  const effect = reloadEffect(running, setting);
  if (effect === "restart") return "restart";
  const parts = changedParts(running, next);
  if (parts.has("http-site")) return "site";
  if (parts.has("http-handler")) return "handler";
  if (parts.has("rate-limiter")) return "rate-limiter";
  return "live";
}

/** Lines the HTTP listener logs each time it switches to a new handler. */
function handlerSwitches(logFile: string): number {
  return readFileSync(logFile, "utf8")
    .split("\n")
    .filter((line) => line.includes("http: configuration applied")).length;
}

describe("each kind of rule, derived from the schema and seen in a reload actually performed", () => {
  let runs = 0;
  for (const probe of PROBES) {
    test(`${probe.setting}: ${probe.kind}`, async () => {
      const logFile = join(dir, `server-${runs++}.log`);
      const base = merged({ http: { root }, log: { level: "info", file: logFile } }, probe.base ?? {});
      const running = testConfig(base);
      const next = configSchema.parse(merged(running as unknown as ConfigOverrides, probe.change));
      await using server = await startServer(running);
      await page(server); // a cached file, to see whether the reload keeps the cache
      expect(server.context.gauges.get("httpCache")!().entries).toBeGreaterThan(0);
      expect(await probe.inEffect(server)).toBe(false);
      await server.logger.flush();
      const switchesBefore = handlerSwitches(logFile);

      const report = await server.reload(next);
      const cacheEmptied = server.context.gauges.get("httpCache")!().entries === 0;
      await server.logger.flush();
      const handlerSwitched = handlerSwitches(logFile) > switchesBefore;

      // The rule the schema gives is the one the test expects...
      expect(derivedKind(running, server.context.config, probe.setting)).toBe(probe.kind);
      // ...and the reload did just that.
      expect(report.needsRestart.includes(probe.setting)).toBe(probe.kind === "restart");
      expect(report.applied.includes(probe.setting)).toBe(probe.kind !== "restart");
      expect(await probe.inEffect(server)).toBe(probe.kind !== "restart");
      expect(cacheEmptied).toBe(probe.kind === "site");
      expect(handlerSwitched).toBe(probe.kind === "site" || probe.kind === "handler");
    });
  }

  test("custom: the pool is built at start (pool.threads needs a restart); custom.max_in_flight applies at once", async () => {
    const running = testConfig({ server: { protocol: "custom" }, pool: { threads: 1 } });
    await using server = await startServer(running);
    const next = configSchema.parse(
      merged(running as unknown as ConfigOverrides, { pool: { threads: 2 }, custom: { max_in_flight: 3 } }),
    );
    expect(reloadEffect(running, "pool.threads")).toBe("restart");
    expect(reloadEffect(running, "custom.max_in_flight")).toBe("live");
    const report = await server.reload(next);
    expect(report.needsRestart).toEqual(["pool.threads"]);
    expect(report.applied).toEqual(["custom.max_in_flight"]);
    expect(server.context.gauges.get("pool")!().workers).toBe(1);
    expect(server.context.config.custom.max_in_flight).toBe(3);
  });
});

describe("changedParts", () => {
  const http = testConfig({ http: { root } });
  const with_ = (config: Config, changes: ConfigOverrides) =>
    configSchema.parse(merged(config as unknown as ConfigOverrides, changes));
  const parts = (before: Config, changes: ConfigOverrides): ReloadPart[] =>
    [...changedParts(before, with_(before, changes))].sort();

  test("a part brings the part containing it; parts a protocol does not have are left out", () => {
    expect(parts(http, { http: { cache_control: "x" } })).toEqual(["http-handler", "http-site"]);
    expect(parts(http, { log: { access_log: true } })).toEqual(["http-access-log", "http-handler"]);
    expect(parts(http, { http: { connection_limits: true } })).toEqual(["http-connections", "http-handler"]);
    expect(parts(http, { rate_limit: { enabled: true } })).toEqual(["http-handler", "rate-limiter"]);
    expect(parts(http, { log: { level: "debug" }, limits: { max_connections: 5 } })).toEqual([]);
    const echo = testConfig({ server: { protocol: "echo" } });
    // Echo has no HTTP parts and no rate limit (it has no requests).
    expect(parts(echo, { http: { cache_control: "x" }, rate_limit: { enabled: true }, log: { file: "/x" } })).toEqual([
      "log-file",
    ]);
    const custom = testConfig({ server: { protocol: "custom" } });
    expect(parts(custom, { rate_limit: { enabled: true }, net: { deny: ["10.0.0.0/8"] } })).toEqual(["rate-limiter"]);
    // The access lists and trusted proxies decide how open HTTP connections were admitted: they are recounted.
    expect(parts(http, { net: { deny: ["10.0.0.0/8"] } })).toEqual(["http-connections", "http-handler"]);
  });

  test("with several I/O threads, rate_limit.max_tracked_ips is read at start: it rebuilds nothing", () => {
    const threaded = testConfig({ server: { io_threads: 2 } });
    expect(reloadEffect(threaded, "rate_limit.max_tracked_ips")).toBe("restart");
    expect(parts(threaded, { rate_limit: { max_tracked_ips: 5 } })).toEqual([]);
    expect(parts(testConfig(), { rate_limit: { max_tracked_ips: 5 } })).toEqual(["rate-limiter"]);
  });
});

describe("the reload column of docs/configuration.md", () => {
  const ruleOf = (name: string): ReloadRule => {
    const [table, key] = name.split(".") as [keyof typeof SETTINGS, string];
    return (SETTINGS[table] as Record<string, SettingSpec>)[key]!.reload;
  };

  test("each kind of rule in words", () => {
    expect(reloadWords(ruleOf("server.port"))).toBe("restart");
    expect(reloadWords(ruleOf("log.level"))).toBe("at once");
    // A protocol whose servers have none of the parts a rule rebuilds does not read the setting.
    expect(reloadWords(ruleOf("http.root"))).toBe("http: at once, rebuilds the HTTP site");
    expect(reloadWords(ruleOf("net.allow"))).toBe(
      "http: at once, recounts HTTP connections; echo, custom, tcp_proxy: new connections",
    );
    expect(reloadWords(ruleOf("rate_limit.enabled"))).toBe(
      "http: at once, resets rate-limit state, new HTTP handler; custom: at once, resets rate-limit state",
    );
    expect(reloadWords(ruleOf("rate_limit.headers"))).toBe("http: at once, new HTTP handler");
    expect(reloadWords(ruleOf("http.keepalive_timeout_s"))).toBe("http: restart");
    expect(reloadWords(ruleOf("tcp.nodelay"))).toBe("echo, custom, tcp_proxy: new connections");
    expect(reloadWords(ruleOf("pool.threads"))).toBe("custom: restart");
    expect(reloadWords(ruleOf("tcp.cork"))).toBe("not read");
    expect(reloadWords(ruleOf("limits.max_request_bytes"))).toBe(
      "http: at once, new HTTP handler; custom: new connections",
    );
    expect(reloadWords(ruleOf("rate_limit.max_tracked_ips"))).toBe(
      "http, custom: at once, resets rate-limit state; with server.io_threads > 1: restart",
    );
  });

  test("the generated reference shows each setting's rule in its row", async () => {
    const docs = await Bun.file(join(import.meta.dir, "../..", "docs", "configuration.md")).text();
    expect(docs).toContain("| `server.port` | `8080` |  | restart |");
    expect(docs).toContain('| `http.root` | `"./public"` |  | http: at once, rebuilds the HTTP site |');
    expect(docs).toContain("| `http.keepalive_timeout_s` | `10` | seconds | http: restart |");
    expect(docs).toContain("- **rebuilds the HTTP site**: ");
  });
});
