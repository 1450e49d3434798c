// Configuration: defaults, override layers, error messages, printing, and the docs generated from the schema.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, buildConfig, loadConfig } from "../../src/config/load.ts";
import { configToToml, unappliedSettings } from "../../src/config/print.ts";
import { generatedSection } from "../../src/config/update-docs.ts";
import { SETTINGS, configSchema } from "../../src/config/schema.ts";
import type { SettingSpec } from "../../src/config/settings/spec.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function tomlFile(text: string): string {
  const path = join(dir, `config-${fileCount++}.toml`);
  writeFileSync(path, text);
  return path;
}

async function problemsOf(promise: Promise<unknown>): Promise<string[]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error("expected a ConfigError");
}

const ALL_KEYS = Object.entries(SETTINGS).flatMap(([table, settings]) =>
  Object.keys(settings).map((key) => `${table}.${key}`),
);

describe("defaults", () => {
  test("a missing file means all defaults", async () => {
    const config = await loadConfig({ configPath: join(dir, "absent.toml") });
    expect(config).toEqual(configSchema.parse({}));
    expect(config.server.port).toBe(8080);
    expect(config.server.protocol).toBe("http");
    expect(config.memory.arena_bytes).toBe(16 * 1024 * 1024);
  });

  test("a missing key takes its default, present keys are kept", async () => {
    const config = await loadConfig({ configPath: tomlFile("[server]\nport = 9001\n") });
    expect(config.server.port).toBe(9001);
    expect(config.server.bind).toBe("0.0.0.0");
    expect(config.limits.max_connections).toBe(10_000);
  });

  test("a named file that does not exist is an error", async () => {
    const problems = await problemsOf(loadConfig({ configPath: join(dir, "nope.toml"), requireFile: true }));
    expect(problems[0]).toContain("nope.toml: file not found");
  });

  test("byte sizes accept units", async () => {
    const config = await loadConfig({
      configPath: tomlFile('[memory]\narena_bytes = "32 MiB"\n[http]\ncache_bytes = "1g"\n'),
    });
    expect(config.memory.arena_bytes).toBe(32 * 1024 * 1024);
    expect(config.http.cache_bytes).toBe(1024 ** 3);
  });

  test("the configuration is frozen", async () => {
    const config = await loadConfig({ configPath: join(dir, "absent.toml") });
    expect(Object.isFrozen(config)).toBe(true);
  });
});

describe("override layers: file < environment < --set", () => {
  const path = tomlFile('[server]\nport = 7000\nprotocol = "echo"\n[rate_limit]\nenabled = false\n');

  test("environment overrides the file", async () => {
    const config = await loadConfig({
      configPath: path,
      env: { HPS_SERVER_PORT: "7100", HPS_RATE_LIMIT_ENABLED: "true", HPS_NET_DENY: "10.0.0.0/8, ::1" },
    });
    expect(config.server.port).toBe(7100);
    expect(config.server.protocol).toBe("echo");
    expect(config.rate_limit.enabled).toBe(true);
    expect(config.net.deny).toEqual(["10.0.0.0/8", "::1"]);
  });

  test("--set overrides the environment, later --set wins", async () => {
    const config = await loadConfig({
      configPath: path,
      env: { HPS_SERVER_PORT: "7100" },
      sets: ["server.port=7200", "server.protocol=custom", "server.port=7300", "memory.arena_bytes=1MiB"],
    });
    expect(config.server.port).toBe(7300);
    expect(config.server.protocol).toBe("custom");
    expect(config.memory.arena_bytes).toBe(1024 * 1024);
  });

  test("unrelated environment variables are ignored", async () => {
    const config = await loadConfig({ configPath: path, env: { PATH: "/usr/bin", HOME: "/root" } });
    expect(config.server.port).toBe(7000);
  });
});

describe("errors name the key, the expected form and the value", () => {
  test("TOML syntax errors give file, line and column", async () => {
    const path = tomlFile("[server]\nport = 80\nbind = \n");
    const problems = await problemsOf(loadConfig({ configPath: path }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3:\\d+: TOML syntax error`),
    );
  });

  test("unknown keys suggest the closest one", async () => {
    const problems = await problemsOf(
      loadConfig({ configPath: tomlFile("[limits]\nmax_conections = 5\n[servr]\nport = 1\n") }),
    );
    expect(problems).toContainEqual(
      expect.stringContaining("unknown setting limits.max_conections (did you mean limits.max_connections?)"),
    );
    expect(problems).toContainEqual(expect.stringContaining("unknown table [servr] (did you mean server?)"));
  });

  test("unknown environment and --set keys suggest too", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: join(dir, "absent.toml"),
        env: { HPS_SERVER_PORTT: "1" },
        sets: ["server.prot=1", "novalue"],
      }),
    );
    expect(problems).toContainEqual(expect.stringContaining("HPS_SERVER_PORTT (did you mean HPS_SERVER_PORT?)"));
    expect(problems).toContainEqual(expect.stringContaining("unknown setting server.prot (did you mean server.port?)"));
    expect(problems).toContainEqual(expect.stringContaining("expected --set table.key=value"));
  });

  test("wrong types and ranges name the full key and the value given", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile(
          '[limits]\nmax_connections = -5\n[server]\nport = "eighty"\nprotocol = "ftp"\n[http]\nkeepalive_timeout_s = 300\n',
        ),
      }),
    );
    expect(problems).toContainEqual(expect.stringContaining("limits.max_connections must be at least 1 (got -5)"));
    expect(problems).toContainEqual(expect.stringContaining('server.port must be a number (got "eighty")'));
    expect(problems).toContainEqual(
      expect.stringContaining('server.protocol must be one of "http", "echo", "custom", "tcp_proxy" (got "ftp")'),
    );
    expect(problems).toContainEqual(
      expect.stringContaining("http.keepalive_timeout_s must be at most 255 seconds (got 300)"),
    );
  });

  test("a fractional value for a whole-number setting is refused", async () => {
    const problems = await problemsOf(
      loadConfig({ configPath: join(dir, "absent.toml"), sets: ["limits.max_connections=2.5"] }),
    );
    expect(problems[0]).toContain("limits.max_connections must be a whole number (got 2.5)");
  });

  test("booleans from overrides must be booleans", async () => {
    const problems = await problemsOf(
      loadConfig({ configPath: join(dir, "absent.toml"), sets: ["tcp.nodelay=maybe"] }),
    );
    expect(problems[0]).toContain('tcp.nodelay must be true or false (got "maybe")');
  });

  test("cross-field rules", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile(
          '[limits]\nmax_connections = 10\nmax_connections_per_ip = 20\n[net]\nallow = ["10.0.0.0/33"]\n',
        ),
      }),
    );
    expect(problems).toContainEqual(
      expect.stringContaining("limits.max_connections_per_ip must be at most limits.max_connections (10) (got 20)"),
    );
    expect(problems).toContainEqual(expect.stringContaining("net.allow[0] must be an IPv4 or IPv6 address or CIDR"));
  });

  test("all problems are reported in one run", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile("[server]\nport = -1\nbogus = 1\n[pool]\nthreads = 9999\n"),
        sets: ["log.level=loud"],
      }),
    );
    expect(problems.length).toBeGreaterThanOrEqual(4);
  });

  test("buildConfig validates in-memory objects the same way", () => {
    expect(() => buildConfig({ server: { port: 70000 } })).toThrow("server.port must be at most 65535");
    expect(buildConfig({ server: { port: 1 } }).server.port).toBe(1);
  });
});

describe("printing", () => {
  test("--print-config output round-trips through the loader", async () => {
    const original = await loadConfig({
      configPath: join(dir, "absent.toml"),
      sets: ["server.port=1234", "net.allow=127.0.0.0/8", "log.file=/tmp/x.log"],
    });
    const path = tomlFile(configToToml(original));
    expect(await loadConfig({ configPath: path })).toEqual(original);
  });

  test("server.toml holds every setting with its comment and default", async () => {
    const text = await Bun.file(join(import.meta.dir, "../..", "server.toml")).text();
    const fromFile = await loadConfig({ configPath: join(import.meta.dir, "../..", "server.toml") });
    expect(fromFile).toEqual(configSchema.parse({}));
    for (const key of ALL_KEYS) {
      const [table, name] = key.split(".") as [keyof typeof SETTINGS, string];
      const spec = (SETTINGS[table] as Record<string, SettingSpec>)[name]!;
      // A list of tables is shown as a commented [[table.key]] example (`key = []` would forbid the blocks).
      expect(text).toContain(spec.tableList === undefined ? `\n${name} = ` : `\n# [[${table}.${name}]]\n`);
      const doc = spec.doc;
      expect(text).toContain(`# ${doc}`);
    }
  });

  test("docs/configuration.md documents every setting, as generated from the schema", async () => {
    const docs = await Bun.file(join(import.meta.dir, "../..", "docs", "configuration.md")).text();
    for (const key of ALL_KEYS) expect(docs).toContain(`\`${key}\``);
    expect(docs).toContain(generatedSection());
  });

  test("settings Bun cannot apply are named when set to a value it cannot honour", () => {
    expect(unappliedSettings(configSchema.parse({}))).toEqual([]);
    const changed = configSchema.parse({
      server: { backlog: 4096 },
      tcp: { cork: true, recv_buffer_bytes: 65536, send_buffer_bytes: 65536 },
      http: { pipelining: false },
    });
    const lines = unappliedSettings(changed);
    expect(lines.map((line) => line.split(" ")[0])).toEqual([
      "server.backlog",
      "tcp.cork",
      "tcp.recv_buffer_bytes",
      "tcp.send_buffer_bytes",
      "http.pipelining",
    ]);
    expect(lines[0]).toBe(
      "server.backlog = 4096 (Bun.listen and Bun.serve always listen with a backlog of 512; it behaves as 512)",
    );
  });
});
