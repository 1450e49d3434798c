// Zero-downtime upgrade: `hps upgrade --pid-file` starts a new process beside the old one (server.reuse_port),
// waits for it, drains the old one; clients looping over keep-alive requests see no failed request.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRunning, readPidFile } from "../../src/host/pid-file.ts";
import { waitFor } from "../helpers/common.ts";
import { freePort, startKeepAliveLoops } from "../helpers/keepalive-client.ts";
import { SOURCE_COMMAND, startHpsProcess } from "../helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-upgrade-"));
const site = join(dir, "site");
mkdirSync(site);
writeFileSync(join(site, "index.html"), "<p>hello</p>\n");

/** Server options shared by the old and the new process (what an operator passes to both). */
async function serverArgs(name: string, reusePort = true): Promise<string[]> {
  return [
    "--set",
    "server.bind=127.0.0.1",
    "--port",
    String(await freePort()),
    "--set",
    "admin.bind=127.0.0.1",
    "--set",
    `admin.port=${await freePort()}`,
    "--set",
    `server.reuse_port=${reusePort}`,
    "--set",
    `server.pid_file=${join(dir, `${name}.pid`)}`,
    "--set",
    `http.root=${site}`,
    "--set",
    "log.access_log=false",
    "--set",
    "stats.interval_s=0",
  ];
}

/** Processes started by upgrades (not children of the test): stopped at the end whatever happened. */
const pidFiles: string[] = [];
afterAll(async () => {
  // Before the directory goes: a test that failed midway left its server named only by a pid file in it.
  for (const pidFile of pidFiles) await stopByPidFile(pidFile);
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Runs `hps upgrade`; resolves with its exit code and what it printed. The new server inherits the command's
 * stdout and stderr, so the pipes stay open after the command exits: its output is read until it exits, not to EOF.
 */
async function runUpgrade(pidFile: string, args: string[]): Promise<{ code: number; output: string }> {
  pidFiles.push(pidFile);
  const upgrade = Bun.spawn([...SOURCE_COMMAND, "upgrade", "--pid-file", pidFile, "--timeout-s", "30", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let output = "";
  const decoder = new TextDecoder();
  for (const stream of [upgrade.stdout, upgrade.stderr]) {
    void (async () => {
      for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
    })();
  }
  const code = await upgrade.exited;
  // Its last line was written before it exited: wait for it to come through the pipe.
  await waitFor(
    () => /hps upgrade: (done|.*keeps serving|.*is not running|.*still draining|.*nothing was started)/.test(output),
    5000,
    "the last line",
  );
  return { code, output };
}

/** Stops the process a pid file names (the upgraded server is not a child of the test) and waits for it to go. */
async function stopByPidFile(pidFile: string): Promise<void> {
  const pid = readPidFile(pidFile);
  if (pid === null || !isRunning(pid)) return;
  process.kill(pid, "SIGTERM");
  await waitFor(() => !isRunning(pid), 20_000, `process ${pid} to exit`).catch(() => process.kill(pid, "SIGKILL"));
}

describe("hps upgrade", () => {
  test.each([1, 2])(
    "keep-alive clients looping through an upgrade see zero failed requests; the new process serves after (server.io_threads = %i)",
    async (ioThreads) => {
      const args = [...(await serverArgs(`zero${ioThreads}`)), "--set", `server.io_threads=${ioThreads}`];
      const pidFile = join(dir, `zero${ioThreads}.pid`);
      await using old = await startHpsProcess({ command: SOURCE_COMMAND, args });
      await waitFor(() => readPidFile(pidFile) === old.pid, 10_000, "the pid file");
      const loops = startKeepAliveLoops(old.port, "/", 8);
      try {
        await waitFor(() => loops.answered() > 200, 10_000, "the loops to get going");
        const upgrade = await runUpgrade(pidFile, args);
        expect(upgrade.output).toContain("done:");
        expect(upgrade.code).toBe(0);
        const oldExitedMs = performance.now();
        const newPid = readPidFile(pidFile);
        expect(newPid).not.toBeNull();
        expect(newPid).not.toBe(old.pid);
        expect(isRunning(old.pid)).toBe(false);
        expect(old.stderr()).toContain("SIGTERM received: draining");
        // The loops go on against the new process alone.
        const answeredAtExit = loops.answered();
        await waitFor(() => loops.answered() > answeredAtExit + 200, 10_000, "answers from the new process");
        const result = await loops.stop();
        expect(result.failures).toEqual([]);
        expect(result.failed).toBe(0);
        expect(result.bad).toBe(0);
        expect(result.answeredAtMs.filter((atMs) => atMs > oldExitedMs).length).toBeGreaterThan(200);
        // The drain told every keep-alive connection to close (each loop reconnected at least once).
        expect(result.connections).toBeGreaterThan(8);
        // The new process took the admin port over too (bound beside the old one's with reuse_port).
        const adminPort = args.find((arg) => arg.startsWith("admin.port="))!.slice("admin.port=".length);
        expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
      } finally {
        await loops.stop();
        await stopByPidFile(pidFile);
      }
      expect(readPidFile(pidFile)).toBeNull(); // removed by the process it named, at exit
    },
    90_000,
  );

  test("a new configuration with problems starts nothing; the old process keeps serving", async () => {
    const args = await serverArgs("bad");
    const pidFile = join(dir, "bad.pid");
    await using old = await startHpsProcess({ command: SOURCE_COMMAND, args });
    await waitFor(() => readPidFile(pidFile) === old.pid, 10_000, "the pid file");
    const upgrade = await runUpgrade(pidFile, [...args, "--set", "limits.max_connections=-5"]);
    expect(upgrade.code).toBe(1);
    expect(upgrade.output).toContain("limits.max_connections");
    expect(upgrade.output).toContain(`nothing was started, process ${old.pid} keeps serving`);
    expect(readPidFile(pidFile)).toBe(old.pid);
    expect((await fetch(`http://127.0.0.1:${old.port}/`)).status).toBe(200);
  }, 60_000);

  test("without server.reuse_port the new process cannot bind: the upgrade fails and the old process keeps serving", async () => {
    const args = await serverArgs("noreuse", false);
    const pidFile = join(dir, "noreuse.pid");
    await using old = await startHpsProcess({ command: SOURCE_COMMAND, args });
    await waitFor(() => readPidFile(pidFile) === old.pid, 10_000, "the pid file");
    const upgrade = await runUpgrade(pidFile, args);
    expect(upgrade.code).toBe(1);
    expect(upgrade.output).toContain("address already in use");
    expect(upgrade.output).toContain(`before it was ready; process ${old.pid} keeps serving`);
    expect(readPidFile(pidFile)).toBe(old.pid);
    expect((await fetch(`http://127.0.0.1:${old.port}/`)).status).toBe(200);
  }, 60_000);

  test("a stale pid file whose id now names another process is refused, and that process is left alone", async () => {
    // A server that crashed left its pid file an hour ago; its id has since been given to an unrelated process.
    const bystander = Bun.spawn(["sleep", "60"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    try {
      const pidFile = join(dir, "reused.pid");
      writeFileSync(pidFile, `${bystander.pid}\n`);
      const hourAgo = new Date(Date.now() - 3_600_000);
      utimesSync(pidFile, hourAgo, hourAgo);
      const upgrade = await runUpgrade(pidFile, await serverArgs("reused"));
      expect(upgrade.code).toBe(1);
      expect(upgrade.output).toContain(`process ${bystander.pid} started after ${pidFile} was written`);
      expect(upgrade.output).not.toContain("started process");
      expect(isRunning(bystander.pid)).toBe(true);
      expect(bystander.exitCode).toBeNull();
    } finally {
      bystander.kill("SIGKILL");
    }
  }, 30_000);

  test("two upgrades at once: one replaces the server, the other starts nothing", async () => {
    const args = await serverArgs("twice");
    const pidFile = join(dir, "twice.pid");
    await using old = await startHpsProcess({ command: SOURCE_COMMAND, args });
    await waitFor(() => readPidFile(pidFile) === old.pid, 10_000, "the pid file");
    const [first, second] = await Promise.all([runUpgrade(pidFile, args), runUpgrade(pidFile, args)]);
    const outcomes = [first, second].sort((a, b) => a.code - b.code);
    expect(outcomes.map(({ code }) => code)).toEqual([0, 1]);
    expect(outcomes[1]!.output).toContain("another hps upgrade");
    expect(outcomes[1]!.output).not.toContain("started process");
    // The winner's server is the one the pid file names, and the only hps left on the port.
    const newPid = readPidFile(pidFile)!;
    expect(outcomes[0]!.output).toContain(`done: process ${newPid} serves`);
    expect(isRunning(old.pid)).toBe(false);
    expect((await fetch(`http://127.0.0.1:${old.port}/`)).status).toBe(200);
    await stopByPidFile(pidFile);
    // With the upgraded server gone, nothing answers on the port (no second server was left running).
    const after = await fetch(`http://127.0.0.1:${old.port}/`).then(
      () => "answered",
      () => "refused",
    );
    expect(after).toBe("refused");
  }, 90_000);

  test("a pid file naming no running process is refused with the reason", async () => {
    const pidFile = join(dir, "stale.pid");
    writeFileSync(pidFile, "999999999\n");
    const upgrade = await runUpgrade(pidFile, await serverArgs("stale"));
    expect(upgrade.code).toBe(1);
    expect(upgrade.output).toContain("is not running: start hps normally");
  }, 30_000);
});
