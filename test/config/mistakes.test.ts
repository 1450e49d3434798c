// What a user gets wrong in a configuration, and what hps says back: one line per mistake, naming the layer as the
// user wrote it, with no spurious follow-on problems.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, readConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-config-mistakes-"));
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

describe("rules that span settings", () => {
  test("a setting out of its own range is one problem, not also a rule it takes part in", async () => {
    const path = tomlFile("[limits]\nmax_connections = -5\n");
    expect(await problemsOf(loadConfig({ configPath: path }))).toEqual([
      `${path}: limits.max_connections must be at least 1 (got -5)`,
    ]);
    // A value of the wrong type takes part in no comparison either.
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["http.cache_bytes=lots"] }))).toEqual([
      '--set http.cache_bytes=lots: http.cache_bytes must be a number of bytes or a size like "16 MiB" (got "lots")',
    ]);
  });

  test("a rule with one side at its default is blamed on the layer that set the other, and shows the default", async () => {
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["server.port=9090"] }))).toEqual([
      "--set server.port=9090: admin.port must differ from server.port (9090) (got 9090, the default)",
    ]);
    expect(await problemsOf(loadConfig({ configPath: absent, env: { HPS_HTTP_CACHE_BYTES: "1000" } }))).toEqual([
      "HPS_HTTP_CACHE_BYTES: http.cache_max_file_bytes must be at most http.cache_bytes (1000) (got 1048576, the default)",
    ]);
  });
});

describe("settings written in the wrong place", () => {
  test("a setting above every [table] header names the tables that have it", async () => {
    const path = tomlFile("port = 8080\n[http]\nroot = '.'\n");
    expect(await problemsOf(loadConfig({ configPath: path }))).toEqual([
      `${path}: port = 8080 is outside any table: put it under [server] or [admin] (settings live in tables, e.g. [server] port)`,
    ]);
    const unknown = tomlFile("colour = 'blue'\n");
    expect(await problemsOf(loadConfig({ configPath: unknown }))).toEqual([
      `${unknown}: colour = "blue" is outside any table, and no table has a setting of that name`,
    ]);
  });

  test("--set without =value says so (the setting exists); --set with no table suggests the full names", async () => {
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["server.port"] }))).toEqual([
      "--set server.port: no value (expected --set server.port=value)",
    ]);
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["port=1"] }))).toEqual([
      "--set port=1: unknown setting port (did you mean server.port or admin.port?)",
    ]);
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["=1"] }))).toEqual([
      "--set =1: no setting name before = (expected --set table.key=value)",
    ]);
  });

  test("a key given twice in the file is named", async () => {
    const path = tomlFile("[server]\nport = 1\nport = 2\n");
    expect(await problemsOf(loadConfig({ configPath: path }))).toEqual([
      `${path}:3:1: TOML syntax error: port is given twice (trying to redefine an already defined table or value)`,
    ]);
    const table = tomlFile("[server]\nport = 1\n\n[server]\nbind = '::'\n");
    expect(await problemsOf(loadConfig({ configPath: table }))).toEqual([
      `${table}:4:2: TOML syntax error: [server] is given twice (trying to redefine an already defined table or value)`,
    ]);
  });
});

describe("the configuration file itself", () => {
  test("a directory given as the file is said to be one, not 'not found'", async () => {
    expect(await problemsOf(loadConfig({ configPath: dir, requireFile: true }))).toEqual([
      `${dir}: is a directory, not a TOML file (give the path of the file itself)`,
    ]);
  });

  test("/dev/null is an empty file: every default", async () => {
    const loaded = await readConfig({ configPath: "/dev/null", requireFile: true });
    expect(loaded.file).toBe("/dev/null");
    expect(loaded.config.server.port).toBe(8080);
  });
});

describe("durations and sizes out of range", () => {
  test("a negative duration is out of range, like a negative number (was: 'must be a number of seconds or a duration')", async () => {
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["server.shutdown_timeout_s=-1s"] }))).toEqual([
      '--set server.shutdown_timeout_s=-1s: server.shutdown_timeout_s must be at least 0 seconds (got "-1s", which is -1 seconds)',
    ]);
  });

  test("a whole-number setting names its unit, and the value a duration came to", async () => {
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["tcp.keepalive_idle_s=1500ms"] }))).toEqual([
      '--set tcp.keepalive_idle_s=1500ms: tcp.keepalive_idle_s must be a whole number of seconds (got "1500ms", which is 1.5 seconds)',
    ]);
    expect(await problemsOf(loadConfig({ configPath: absent, sets: ["http.cache_revalidate_ms=1.5"] }))).toEqual([
      "--set http.cache_revalidate_ms=1.5: http.cache_revalidate_ms must be a whole number of milliseconds (got 1.5)",
    ]);
  });

  test("a size or duration over its range shows what it came to", async () => {
    const path = tomlFile('[http]\ncache_bytes = "128 GiB"\ncache_revalidate_ms = "2h"\n');
    expect(await problemsOf(loadConfig({ configPath: path }))).toEqual([
      `${path}: http.cache_bytes must be at most 68719476736 bytes (got "128 GiB", which is 137438953472 bytes)`,
      `${path}: http.cache_revalidate_ms must be at most 3600000 milliseconds (got "2h", which is 7200000 milliseconds)`,
    ]);
  });
});
