// Configuration values and error sources: durations ("10s", "500ms"), the layer each problem is blamed on, TOML
// syntax errors in words a person recognises.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, readConfig } from "../../src/config/load.ts";
import { SETTINGS } from "../../src/config/schema.ts";
import type { SettingSpec } from "../../src/config/settings/spec.ts";
import { parseDuration } from "../../src/config/units.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-config-values-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const absent = join(dir, "absent.toml");

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

describe("durations", () => {
  test("parseDuration: suffixes, sums, plain numbers in the setting's unit", () => {
    expect(parseDuration("10s", "seconds")).toBe(10);
    expect(parseDuration("500ms", "seconds")).toBe(0.5);
    expect(parseDuration("2m", "seconds")).toBe(120);
    expect(parseDuration("1h", "seconds")).toBe(3600);
    expect(parseDuration("1h30m", "seconds")).toBe(5400);
    expect(parseDuration("1d", "seconds")).toBe(86_400);
    expect(parseDuration("1.5s", "milliseconds")).toBe(1500);
    expect(parseDuration("0.3s", "milliseconds")).toBe(300);
    expect(parseDuration("100us", "microseconds")).toBe(100);
    expect(parseDuration(" 250 ms ", "microseconds")).toBe(250_000);
    expect(parseDuration("42", "milliseconds")).toBe(42);
    // A sign is read, so that the schema's range reports a negative duration as it does a negative number.
    expect(parseDuration("-5s", "seconds")).toBe(-5);
    expect(parseDuration("-1.5", "seconds")).toBe(-1.5);
    for (const bad of ["", "-", "--5s", "soon", "10 sec", "s", "1x", "10s junk"]) {
      expect(parseDuration(bad, "seconds")).toBeNaN();
    }
  });

  test("the file, the environment and --set take durations for *_s and *_ms settings", async () => {
    const config = await loadConfig({
      configPath: tomlFile(
        '[http]\nkeepalive_timeout_s = "2m"\ncache_revalidate_ms = "1.5s"\n[pool]\nspin_us = "0.05ms"\n',
      ),
      env: { HPS_STATS_INTERVAL_S: "1h", HPS_RATE_LIMIT_WINDOW_S: "500ms" },
      sets: ["pool.task_timeout_ms=10s", "limits.connection_timeout_s=90s", "server.shutdown_timeout_s=3"],
    });
    expect(config.http.keepalive_timeout_s).toBe(120);
    expect(config.http.cache_revalidate_ms).toBe(1500);
    expect(config.pool.spin_us).toBe(50);
    expect(config.stats.interval_s).toBe(3600);
    expect(config.rate_limit.window_s).toBe(0.5);
    expect(config.pool.task_timeout_ms).toBe(10_000);
    expect(config.limits.connection_timeout_s).toBe(90);
    expect(config.server.shutdown_timeout_s).toBe(3);
  });

  test("a bad duration says which forms are accepted; ranges are checked after conversion", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile(
          '[http]\nkeepalive_timeout_s = "soon"\ncache_revalidate_ms = "2h"\n[tcp]\nkeepalive_idle_s = "500ms"\n',
        ),
      }),
    );
    expect(problems).toContainEqual(
      expect.stringContaining(
        'http.keepalive_timeout_s must be a number of seconds or a duration like "10s", "500ms", "2m", "1h"',
      ),
    );
    expect(problems).toContainEqual(
      expect.stringContaining(
        'http.cache_revalidate_ms must be at most 3600000 milliseconds (got "2h", which is 7200000',
      ),
    );
    expect(problems).toContainEqual(
      expect.stringContaining(
        'tcp.keepalive_idle_s must be a whole number of seconds (got "500ms", which is 0.5 seconds)',
      ),
    );
  });

  test("numbers that are neither sizes nor durations get no size hint; sizes keep theirs", async () => {
    const problems = await problemsOf(
      loadConfig({ configPath: absent, sets: ["server.port=eighty", "http.cache_bytes=lots"] }),
    );
    expect(problems).toContainEqual('--set server.port=eighty: server.port must be a number (got "eighty")');
    expect(problems).toContainEqual(
      expect.stringContaining('http.cache_bytes must be a number of bytes or a size like "16 MiB" (got "lots")'),
    );
    expect(problems.join("\n")).not.toContain("server.port must be a number or a size");
  });

  test("every setting named *_s, *_ms or *_us has that unit and takes a duration", () => {
    const unitOf = { s: "seconds", ms: "milliseconds", us: "microseconds" } as const;
    const sample = { s: "1s", ms: "1ms", us: "1us" } as const;
    let durations = 0;
    for (const [table, settings] of Object.entries(SETTINGS)) {
      for (const [key, spec] of Object.entries(settings as Record<string, SettingSpec>)) {
        const suffix = /_(s|ms|us)$/.exec(key)?.[1] as keyof typeof unitOf | undefined;
        if (suffix === undefined) continue;
        durations++;
        expect(`${table}.${key}: ${spec.unit}`).toBe(`${table}.${key}: ${unitOf[suffix]}`);
        // The setting's own schema: a rule between settings (http.hsts_max_age_s needs TLS) is not this test's.
        const parsed = spec.schema.safeParse(sample[suffix]);
        expect(parsed.success).toBe(true);
        expect(parsed.data).toBe(1);
      }
    }
    expect(durations).toBeGreaterThanOrEqual(9);
  });
});

describe("problems name the layer the value came from", () => {
  const file = tomlFile("[server]\nport = 70000\n[limits]\nmax_connections = 10\n");

  test("--set: the assignment as given", async () => {
    const problems = await problemsOf(loadConfig({ configPath: absent, sets: ["server.port=99999"] }));
    expect(problems).toEqual(["--set server.port=99999: server.port must be at most 65535 (got 99999)"]);
  });

  test("the environment: the variable's name", async () => {
    const problems = await problemsOf(loadConfig({ configPath: absent, env: { HPS_SERVER_PORT: "99999" } }));
    expect(problems).toEqual(["HPS_SERVER_PORT: server.port must be at most 65535 (got 99999)"]);
  });

  test("the file, the environment and --set each blamed for their own values; the last layer for a value it overrode", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: file,
        env: { HPS_LIMITS_MAX_CONNECTIONS: "0", HPS_TCP_NODELAY: "perhaps" },
        sets: ["limits.max_connections=-1", "log.level=loud"],
      }),
    );
    expect(problems).toContainEqual(`${file}: server.port must be at most 65535 (got 70000)`);
    expect(problems).toContainEqual('HPS_TCP_NODELAY: tcp.nodelay must be true or false (got "perhaps")');
    expect(problems).toContainEqual(
      "--set limits.max_connections=-1: limits.max_connections must be at least 1 (got -1)",
    );
    expect(problems).toContainEqual(
      expect.stringMatching(/^--set log\.level=loud: log\.level must be one of "error", "warn", "info", "debug"/),
    );
    expect(problems.join("\n")).not.toContain("HPS_LIMITS_MAX_CONNECTIONS");
  });

  test("a rule spanning settings is blamed on the layer of the setting it names", async () => {
    const problems = await problemsOf(
      loadConfig({
        configPath: tomlFile("[limits]\nmax_connections = 10\n"),
        sets: ["limits.max_connections_per_ip=20"],
      }),
    );
    expect(problems).toEqual([
      "--set limits.max_connections_per_ip=20: limits.max_connections_per_ip must be at most limits.max_connections (10) (got 20)",
    ]);
  });

  test("readConfig says which file it read and which overrides it applied", async () => {
    const fromFile = await readConfig({
      configPath: tomlFile("[server]\nport = 1\n"),
      env: { HPS_LOG_LEVEL: "warn", PATH: "/bin" },
      sets: ["server.port=2"],
    });
    expect(fromFile.file).toEndWith(".toml");
    expect(fromFile.overrides).toEqual(["HPS_LOG_LEVEL", "--set server.port=2"]);
    expect(fromFile.config.server.port).toBe(2);
    const noFile = await readConfig({ configPath: absent });
    expect(noFile.file).toBeNull();
    expect(noFile.overrides).toEqual([]);
  });
});

describe("TOML syntax errors", () => {
  test("a string left open at the end of its line is an unterminated string, at the column where it starts", async () => {
    const path = tomlFile('[server]\nbind = "127.0.0.1\nport = 80\n');
    expect(await problemsOf(loadConfig({ configPath: path }))).toEqual([
      `${path}:2:8: TOML syntax error: unterminated string (close it with " on the same line)`,
    ]);
    const literal = tomlFile("[http]\nroot = 'public\n");
    expect(await problemsOf(loadConfig({ configPath: literal }))).toEqual([
      `${literal}:2:8: TOML syntax error: unterminated string (close it with ' on the same line)`,
    ]);
  });

  test("an open string in a list, after an escaped quote; a multi-line string open at the end of the file", async () => {
    const inList = tomlFile('[net]\nallow = ["10.0.0.0/8", "a\\"b\n');
    expect(await problemsOf(loadConfig({ configPath: inList }))).toEqual([
      `${inList}:2:24: TOML syntax error: unterminated string (close it with " on the same line)`,
    ]);
    const multiLine = tomlFile('[http]\nfallback = """index.html\n');
    expect(await problemsOf(loadConfig({ configPath: multiLine }))).toEqual([
      `${multiLine}:2:12: TOML syntax error: unterminated string (close it with """)`,
    ]);
  });

  test("a control character inside a closed string keeps smol-toml's own words", async () => {
    const path = tomlFile('[http]\nindex = "a\u0001b"\n');
    const problems = await problemsOf(loadConfig({ configPath: path }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/:2:\d+: TOML syntax error: control characters are not allowed in strings$/);
  });
});
