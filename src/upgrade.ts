// `hps upgrade --pid-file PATH [server options]`: starts a new hps beside the running one (both bound with
// server.reuse_port), waits until it is ready, then asks the old one to drain (SIGTERM) and waits for it to go.
import { parseArgs } from "node:util";
import { unlinkSync, writeFileSync } from "node:fs";
import { isRunning, readPidFile, startedAfterWritten } from "./host/pid-file.ts";

export const UPGRADE_HELP = `Usage: hps upgrade --pid-file PATH [--timeout-s N] [server options]

Replaces the hps whose process id is in PATH by a new one without dropping connections:
  1. checks the server options (as --check does); nothing is started when they have problems
  2. starts a new hps (this program, so a binary or source replaced on disk is the new version) with the server
     options and --set server.pid_file=PATH; it binds the same ports beside the old one (server.reuse_port = true)
  3. waits until the new process is ready: it writes its id to PATH once its listeners are up
  4. sends SIGTERM to the old process, which drains (readiness 503, Connection: close, in-flight work finished)
     and exits; waits for that
If the new process fails or is not ready within the timeout, it is stopped and the old one keeps serving (exit 1).
Nothing is started when another upgrade of the same pid file runs (it holds PATH.upgrade), or when the process PATH
names started after PATH was written (a file left by a crash, its id since given to another program).
The new process keeps this command's stdout and stderr (the logs, unless log.file and log.access_file are set):
run it as \`hps upgrade ... >>/var/log/hps.out 2>&1\` when started by hand. Under systemd, see docs/deployment.md.

Options:
  --pid-file PATH   the running server's server.pid_file (required)
  --timeout-s N     how long the new process may take to become ready, and the old one to exit (default 60)
  server options    --config, --set, --port, --protocol: as for starting hps
`;

export interface UpgradeOptions {
  readonly pidFile: string;
  readonly timeoutSeconds: number;
  /** Options for the new server process. */
  readonly serverArgs: readonly string[];
  /** The program that starts hps: this executable (and the entry script when run from source). */
  readonly command: readonly string[];
  /** Progress lines and problems, for people. */
  readonly say: (line: string) => void;
}

/** How often the pid file and the old process are looked at while waiting. */
const POLL_MS = 20;

/** The command that runs this hps: the binary itself, or bun with the entry script. */
export function selfCommand(): string[] {
  return Bun.isStandaloneExecutable ? [process.execPath] : [process.execPath, Bun.main];
}

/** Parses `hps upgrade` arguments; throws an Error for people on bad ones. */
export function parseUpgradeArgs(argv: readonly string[]): {
  pidFile: string;
  timeoutSeconds: number;
  serverArgs: string[];
} {
  const { values, tokens } = parseArgs({
    args: [...argv],
    options: {
      "pid-file": { type: "string" },
      "timeout-s": { type: "string" },
      config: { type: "string" },
      set: { type: "string", multiple: true },
      port: { type: "string" },
      protocol: { type: "string" },
    },
    strict: true,
    allowPositionals: false,
    tokens: true,
  });
  const pidFile = values["pid-file"];
  if (pidFile === undefined || pidFile === "") throw new Error("--pid-file PATH is required");
  const timeoutSeconds = values["timeout-s"] === undefined ? 60 : Number(values["timeout-s"]);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new Error("--timeout-s must be a positive number");
  // The server options are passed on as written, in order.
  const serverArgs: string[] = [];
  for (const token of tokens) {
    if (token.kind !== "option" || token.name === "pid-file" || token.name === "timeout-s") continue;
    serverArgs.push(`--${token.name}`);
    if (token.value !== undefined) serverArgs.push(token.value);
  }
  return { pidFile, timeoutSeconds, serverArgs };
}

/** Runs the upgrade; resolves with the exit code (0: the new process serves and the old one was told to go). */
export async function runUpgrade(options: UpgradeOptions): Promise<number> {
  const { pidFile, say } = options;
  // One upgrade at a time: two would each start a server and stop the same old one, leaving one of theirs running
  // unnamed by the pid file (never stopped by the next upgrade).
  const lockFile = `${pidFile}.upgrade`;
  let holder: number | null;
  try {
    holder = takeLock(lockFile);
  } catch (error) {
    say(`hps upgrade: cannot create ${lockFile} (${(error as Error).message}); nothing was started`);
    return 1;
  }
  if (holder !== null) {
    say(
      `hps upgrade: another hps upgrade (process ${holder}, holding ${lockFile}) is replacing this server; ` +
        "nothing was started",
    );
    return 1;
  }
  try {
    return await upgradeLocked(options);
  } finally {
    if (readPidFile(lockFile) === process.pid) unlinkQuietly(lockFile);
  }
}

async function upgradeLocked(options: UpgradeOptions): Promise<number> {
  const { pidFile, say } = options;
  const oldPid = readPidFile(pidFile);
  if (oldPid === null) {
    say(`hps upgrade: ${pidFile} names no process: is hps running with server.pid_file = "${pidFile}"?`);
    return 1;
  }
  if (!isRunning(oldPid)) {
    say(`hps upgrade: process ${oldPid} (from ${pidFile}) is not running: start hps normally`);
    return 1;
  }
  if (startedAfterWritten(oldPid, pidFile)) {
    say(
      `hps upgrade: process ${oldPid} started after ${pidFile} was written, so it is not the hps that wrote it (the ` +
        "file was left behind, and its process id given to another program); nothing was started or signalled: " +
        "start hps normally",
    );
    return 1;
  }
  const serverArgs = [...options.serverArgs, "--set", `server.pid_file=${pidFile}`];

  const check = Bun.spawnSync([...options.command, "--check", ...serverArgs], { stdout: "pipe", stderr: "pipe" });
  if (check.exitCode !== 0) {
    say(`${check.stderr.toString()}${check.stdout.toString()}`.trimEnd());
    say(`hps upgrade: the new configuration has problems; nothing was started, process ${oldPid} keeps serving`);
    return 1;
  }

  const startedMs = performance.now();
  const child = Bun.spawn([...options.command, ...serverArgs], {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    // Its own session: a signal to this command's terminal or process group does not reach the new server.
    detached: true,
  });
  let exitCode: number | null = null;
  void child.exited.then((code) => {
    exitCode = code;
  });
  const deadlineMs = startedMs + options.timeoutSeconds * 1000;
  say(`hps upgrade: started process ${child.pid}; waiting for it to be ready (old: ${oldPid})`);
  while (readPidFile(pidFile) !== child.pid) {
    if (exitCode !== null) {
      say(
        `hps upgrade: the new process exited (code ${exitCode}) before it was ready; process ${oldPid} keeps serving`,
      );
      return 1;
    }
    if (performance.now() > deadlineMs) {
      child.kill("SIGTERM");
      say(
        `hps upgrade: the new process was not ready within ${options.timeoutSeconds} s and was stopped; process ${oldPid} keeps serving`,
      );
      return 1;
    }
    await Bun.sleep(POLL_MS);
  }
  const readyMs = performance.now() - startedMs;
  say(`hps upgrade: process ${child.pid} is ready (${readyMs.toFixed(0)} ms); asking process ${oldPid} to drain`);
  try {
    process.kill(oldPid, "SIGTERM");
  } catch (error) {
    say(`hps upgrade: cannot signal process ${oldPid}: ${(error as Error).message}`);
  }
  child.unref();
  const drainDeadlineMs = performance.now() + options.timeoutSeconds * 1000;
  while (isRunning(oldPid)) {
    if (performance.now() > drainDeadlineMs) {
      say(
        `hps upgrade: process ${oldPid} is still draining after ${options.timeoutSeconds} s; process ${child.pid} serves`,
      );
      return 0;
    }
    await Bun.sleep(POLL_MS);
  }
  say(`hps upgrade: done: process ${child.pid} serves, process ${oldPid} has exited`);
  return 0;
}

/**
 * Creates `path` holding this process's id, unless another live process holds it (returns that process's id). A lock
 * left by an upgrade that died is taken over.
 */
function takeLock(path: string): number | null {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx" });
      return null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = readPidFile(path);
    if (holder !== null && isRunning(holder) && !startedAfterWritten(holder, path)) return holder;
    unlinkQuietly(path);
  }
  return readPidFile(path) ?? 0;
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}
