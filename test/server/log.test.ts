// Logger: levels, line format, appending, reopening after rotation, start-up failure on an unopenable file.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../../src/log.ts";
import { startServer } from "../../src/server.ts";
import { testConfig } from "../helpers/common.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("lines are appended to an existing file, one per event, with an ISO timestamp and level", async () => {
  const path = join(dir, "append.log");
  writeFileSync(path, "an earlier line that must survive\n");
  const logger = new Logger({ level: "info", file: path });
  logger.info("started");
  logger.warn("careful");
  logger.debug("not written at info");
  logger.block("info", "report", ["a: 1", "b: 2"]);
  await logger.close();
  const lines = readFileSync(path, "utf8").split("\n");
  expect(lines[0]).toBe("an earlier line that must survive");
  expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}started$/);
  expect(lines[2]).toMatch(/Z WARN {2}careful$/);
  expect(lines[3]).toMatch(/Z INFO {2}report$/);
  expect(lines.slice(4, 6)).toEqual(["  a: 1", "  b: 2"]);
  expect(readFileSync(path, "utf8")).not.toContain("not written");
});

test("the level filters: error only writes errors", async () => {
  const path = join(dir, "errors.log");
  const logger = new Logger({ level: "error", file: path });
  expect(logger.isEnabled("warn")).toBe(false);
  logger.warn("hidden");
  logger.error("shown");
  await logger.close();
  expect(readFileSync(path, "utf8")).toMatch(/ERROR shown\n$/);
});

test("a silent logger enables nothing", () => {
  const logger = Logger.silent();
  for (const level of ["error", "warn", "info", "debug"] as const) expect(logger.isEnabled(level)).toBe(false);
});

test("a log file that cannot be opened stops start-up with one clear message", async () => {
  await expect(startServer(testConfig({ log: { file: join(dir, "no-such-dir", "hps.log") } }))).rejects.toThrow(
    /cannot open log.file ".*no-such-dir\/hps.log" for appending/,
  );
});

test("reopen() continues in a new file at the same path after the old one was moved away (logrotate)", async () => {
  const path = join(dir, "rotate.log");
  const logger = new Logger({ level: "info", file: path });
  logger.info("before rotation");
  await logger.flush();
  const { renameSync } = await import("node:fs");
  renameSync(path, `${path}.1`);
  logger.info("still to the old file until reopened");
  await logger.reopen();
  logger.info("after rotation");
  await logger.close();
  expect(readFileSync(`${path}.1`, "utf8")).toContain("still to the old file");
  const fresh = readFileSync(path, "utf8");
  expect(fresh).toContain("after rotation");
  expect(fresh).not.toContain("before rotation");
});

test("switching destinations never fails once the new file is open: an old file that cannot be flushed (disk full) is closed anyway", async () => {
  const next = join(dir, "after-full.log");
  const logger = new Logger({ level: "info", file: "/dev/full" }); // every write to it fails with ENOSPC
  logger.info("lost on the full disk");
  await logger.prepareTarget(next).commit(); // resolves: the reload that moved the log is not left half done
  logger.info("on the new disk");
  await logger.close();
  const text = readFileSync(next, "utf8");
  expect(text).toContain("on the new disk");
  expect(text).toContain("lines written before the switch may be lost");
});

test("an aborted target closes its file and changes nothing", async () => {
  const current = join(dir, "current.log");
  const candidate = join(dir, "candidate.log");
  const logger = new Logger({ level: "info", file: current });
  const target = logger.prepareTarget(candidate);
  target.abort();
  await target.commit(); // after abort: nothing happens
  logger.info("still here");
  await logger.close();
  expect(readFileSync(current, "utf8")).toContain("still here");
  expect(readFileSync(candidate, "utf8")).toBe("");
});
