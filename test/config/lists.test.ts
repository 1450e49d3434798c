// Arrays of tables: [[upstreams]] and [[http.routes]] parse with their defaults, every problem names the element at
// fault, overrides cannot set them, printing round-trips, and a reload applies them.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { configToToml } from "../../src/config/print.ts";
import { changedParts, planReload } from "../../src/config/reload.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-lists-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function tomlFile(text: string): string {
  const path = join(dir, `lists-${fileCount++}.toml`);
  writeFileSync(path, text);
  return path;
}

async function problemsOf(promise: Promise<unknown>): Promise<string[]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => problem.replace(/^[^:]+: /, ""));
    throw error;
  }
  throw new Error("expected a ConfigError");
}

const APP = `
[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2, max_connections = 256 }, "[::1]:9003"]
strategy = "least_conn"
connect_timeout_s = "500ms"
health_check_path = "/healthz"

[[upstreams]]
name = "db"
servers = ["10.0.0.5:5432"]

[[http.routes]]
path_prefix = "/api/"
upstream = "app"
strip_prefix = true

[[http.routes]]
path_prefix = "/assets/"
root = "./public"
`;

describe("[[upstreams]] and [[http.routes]]", () => {
  test("parse with defaults filled in; servers become tables; durations take units", async () => {
    const config = await loadConfig({ configPath: tomlFile(APP) });
    expect(config.upstreams.map((group) => group.name)).toEqual(["app", "db"]);
    const app = config.upstreams[0]!;
    expect(app.servers).toEqual([
      { address: "127.0.0.1:9001", weight: 1, max_connections: 0 },
      { address: "127.0.0.1:9002", weight: 2, max_connections: 256 },
      { address: "[::1]:9003", weight: 1, max_connections: 0 },
    ]);
    expect(app).toMatchObject({
      strategy: "least_conn",
      connect_timeout_s: 0.5,
      keepalive_connections: 64,
      retries: 1,
    });
    expect(config.upstreams[1]!.strategy).toBe("round_robin");
    expect(config.http.routes).toEqual([
      { path_prefix: "/api/", upstream: "app", root: "", strip_prefix: true },
      { path_prefix: "/assets/", upstream: "", root: "./public", strip_prefix: false },
    ]);
    const none = await loadConfig({ configPath: tomlFile("[server]\nport = 1\n") });
    expect(none.upstreams).toEqual([]);
    expect(none.http.routes).toEqual([]);
  });

  test("every problem names the element at fault, all in one run", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile(`
[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001"]

[[upstreams]]
name = "app"
servers = ["localhost", { address = "127.0.0.1:1", wieght = 3 }, "127.0.0.1:99999", "127.0.0.1:9001", "127.0.0.1:9001"]
keepalive_timout_s = 3
retries = -1
strategy = "fastest"
health_check_path = "healthz"

[[upstreams]]
servers = []

[[http.routes]]
path_prefix = "api"
upstream = "missing"

[[http.routes]]
path_prefix = "/x/"
upstream = "app"
root = "./public"
`),
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        "unknown setting upstreams[1].keepalive_timout_s (did you mean upstreams[1].keepalive_timeout_s?)",
        'upstreams[1].servers[1]: unknown key wieght (a server is "host:port" or { address, weight, max_connections })',
        "upstreams[1].retries must be at least 0 (got -1)",
        expect.stringContaining('upstreams[1].strategy must be one of "round_robin", "least_conn"'),
        "upstreams[2].name is required",
      ]),
    );
    // Rules across elements run once every element is well-formed: fix the shape errors, and they come up.
    const crossProblems = await problemsOf(
      loadConfig({
        configPath: tomlFile(`
[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001"]

[[upstreams]]
name = "app"
servers = ["localhost", "127.0.0.1:99999", "127.0.0.1:9001", "127.0.0.1:9001"]
health_check_path = "healthz"

[[upstreams]]
name = "bad name"
servers = []

[[http.routes]]
path_prefix = "api"
upstream = "missing"

[[http.routes]]
path_prefix = "/x/"
upstream = "app"
root = "./public"
`),
      }),
    );
    expect(crossProblems).toEqual(
      expect.arrayContaining([
        'upstreams[1].name must differ from upstreams[0].name (got "app")',
        expect.stringContaining('upstreams[1].servers[0] must look like "host:port"'),
        'upstreams[1].servers[1] must end with a port number (:1 to :65535) (got "127.0.0.1:99999")',
        'upstreams[1].servers[3] repeats servers[2] (got "127.0.0.1:9001")',
        'upstreams[1].health_check_path must start with "/" (or be "" for no active checks) (got "healthz")',
        expect.stringContaining("upstreams[2].name must be letters, digits"),
        expect.stringContaining("upstreams[2].servers must name at least one server"),
        'http.routes[0].path_prefix must start with "/" (got "api")',
        'http.routes[0].upstream must name one of the [[upstreams]] (configured: app) (got "missing")',
        expect.stringContaining("http.routes[1].upstream or root must be set, and only one of them"),
      ]),
    );
  });

  test("a health_check_path that is no request target, and a path_prefix no path can match, are refused", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile(`
[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001"]
health_check_path = "/health check"

[[http.routes]]
path_prefix = "/api?v=2"
upstream = "app"

[[http.routes]]
path_prefix = "/caf%C3%A9/"
upstream = "app"

[[http.routes]]
path_prefix = "//double/"
upstream = "app"

[[http.routes]]
path_prefix = "/café/"
upstream = "app"

[[http.routes]]
path_prefix = "/my docs/"
upstream = "app"
`),
      }),
    );
    expect(problems).toEqual([
      expect.stringContaining("upstreams[0].health_check_path must be a path and query of visible ASCII"),
      expect.stringContaining('http.routes[0].path_prefix cannot hold "?"'),
      expect.stringContaining("http.routes[1].path_prefix cannot hold percent-encoding"),
      expect.stringContaining('http.routes[2].path_prefix cannot hold "//"'),
    ]);
  });

  test("a list must be an array of tables", async () => {
    expect(await problemsOf(loadConfig({ configPath: tomlFile('upstreams = "app"\n') }))).toEqual([
      'upstreams must be an array of tables ([[upstreams]] sections), got "app"',
    ]);
    expect(await problemsOf(loadConfig({ configPath: tomlFile('[http]\nroutes = ["/api/"]\n') }))).toEqual([
      'http.routes must be an array of tables ([[http.routes]] sections), got ["/api/"]',
    ]);
  });

  test("the environment and --set cannot set a list, and say so", async () => {
    const fromEnv = await problemsOf(
      loadConfig({ configPath: join(dir, "absent.toml"), env: { HPS_UPSTREAMS: "x", HPS_HTTP_ROUTES: "y" } }),
    );
    expect(fromEnv).toEqual([
      "HPS_UPSTREAMS: upstreams cannot be set from the environment (arrays of tables are set in the configuration file only)",
      "HPS_HTTP_ROUTES: http.routes cannot be set from the environment (arrays of tables are set in the configuration file only)",
    ]);
    const fromSet = await problemsOf(
      loadConfig({ configPath: join(dir, "absent.toml"), sets: ["upstreams[0].name=app", "http.routes=x"] }),
    );
    expect(fromSet).toEqual([
      "upstreams cannot be set on the command line (arrays of tables are set in the configuration file only)",
      "http.routes cannot be set on the command line (arrays of tables are set in the configuration file only)",
    ]);
  });

  test("tcp_proxy needs proxy.upstream naming a group", async () => {
    expect(await problemsOf(loadConfig({ configPath: tomlFile('[server]\nprotocol = "tcp_proxy"\n') }))).toEqual([
      'proxy.upstream must name the [[upstreams]] group to relay to when server.protocol is "tcp_proxy" (none is configured) (got "", the default)',
    ]);
    const config = await loadConfig({
      configPath: tomlFile(
        `[server]\nprotocol = "tcp_proxy"\n[proxy]\nupstream = "db"\nsend_proxy_protocol = true\n${APP}`,
      ),
    });
    expect(config.proxy).toEqual({ upstream: "db", send_proxy_protocol: true });
  });

  test("--print-config writes [[...]] sections that load back to the same configuration", async () => {
    const config = await loadConfig({ configPath: tomlFile(APP) });
    const printed = configToToml(config);
    expect(printed).toContain("[[upstreams]]");
    expect(printed).toContain(
      'servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2, max_connections = 256 }, "[::1]:9003"]',
    );
    expect(printed).toContain("[[http.routes]]");
    expect(await loadConfig({ configPath: tomlFile(printed) })).toEqual(config);
  });

  test("a reload applies changed lists: upstream groups are reconfigured, routes rebuild the HTTP handler", async () => {
    const running = await loadConfig({ configPath: tomlFile(APP) });
    const next = await loadConfig({
      configPath: tomlFile(APP.replace('"10.0.0.5:5432"', '"10.0.0.5:5432", "10.0.0.6:5432"')),
    });
    const plan = planReload(running, next);
    expect(plan.applied).toEqual(["upstreams"]);
    expect(plan.needsRestart).toEqual([]);
    expect(plan.config.upstreams[1]!.servers.length).toBe(2);
    expect([...changedParts(running, plan.config)]).toEqual(["upstreams"]);
    const rerouted = await loadConfig({
      configPath: tomlFile(APP.replace('path_prefix = "/api/"', 'path_prefix = "/v2/"')),
    });
    const routesPlan = planReload(running, rerouted);
    expect(routesPlan.applied).toEqual(["http.routes"]);
    expect(routesPlan.config.http.routes[0]!.path_prefix).toBe("/v2/");
    expect([...changedParts(running, routesPlan.config)]).toEqual(["http-handler"]);
    expect(planReload(running, running).applied).toEqual([]);
  });
});
