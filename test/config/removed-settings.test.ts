// Settings removed in an earlier version: naming one in a file, the environment or --set is an error that says what replaced it.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-removed-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function problemsOf(promise: Promise<unknown>): Promise<string[]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error("expected a ConfigError");
}

test("tcp.max_buffered_bytes is refused with the names of the settings that replace it, from every source", async () => {
  const path = join(dir, "old.toml");
  writeFileSync(path, "[tcp]\nmax_buffered_bytes = 4194304\n");
  const fromFile = await problemsOf(loadConfig({ configPath: path }));
  const fromEnv = await problemsOf(
    loadConfig({ configPath: join(dir, "absent.toml"), env: { HPS_TCP_MAX_BUFFERED_BYTES: "1048576" } }),
  );
  const fromSet = await problemsOf(
    loadConfig({ configPath: join(dir, "absent.toml"), sets: ["tcp.max_buffered_bytes=1048576"] }),
  );
  for (const problems of [fromFile, fromEnv, fromSet]) {
    expect(problems.length).toBe(1);
    expect(problems[0]).toContain("tcp.max_buffered_bytes was removed");
    expect(problems[0]).toContain("tcp.write_high_water_bytes");
    expect(problems[0]).toContain("tcp.send_timeout_s");
  }
  expect(fromFile[0]).toStartWith(`${path}: `);
  expect(fromEnv[0]).toStartWith("environment HPS_TCP_MAX_BUFFERED_BYTES: ");
  expect(fromSet[0]).toStartWith("--set tcp.max_buffered_bytes=1048576: ");
});
