// Child processes for benchmarks and the stress run: spawn (optionally pinned to a core), wait for a port, CPU time, stop by PID.
import type { Subprocess } from "bun";
import { closeSync, openSync, readFileSync } from "node:fs";
import { connect } from "node:net";

/** Clock ticks per second of /proc/<pid>/stat utime/stime (USER_HZ; 100 on every Linux build that matters). */
const TICKS_PER_SECOND = 100;
const PORT_POLL_MS = 25;

export interface StartOptions {
  /** A short name for messages ("hps-http", "nginx"). */
  name: string;
  argv: string[];
  /** Core to pin the process (and its threads and children) to with taskset; null = not pinned. */
  core: number | null;
  /** The process is ready when this TCP port on 127.0.0.1 accepts a connection. */
  readyPort: number;
  readyTimeoutMs: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Where stdout and stderr go; "ignore" discards them. A path keeps them for a failure message. */
  logPath: string | "ignore";
}

/** A child process that this program started and will stop. */
export class Child {
  readonly name: string;
  readonly proc: Subprocess;
  readonly logPath: string | "ignore";
  private stopped: Promise<number> | null = null;

  constructor(name: string, proc: Subprocess, logPath: string | "ignore") {
    this.name = name;
    this.proc = proc;
    this.logPath = logPath;
  }

  get pid(): number {
    return this.proc.pid;
  }

  get isRunning(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** CPU seconds used so far by the process, its threads and its live children (nginx workers). */
  cpuSeconds(): number {
    let ticks = 0;
    for (const pid of [this.pid, ...childPids(this.pid)]) ticks += processTicks(pid);
    return ticks / TICKS_PER_SECOND;
  }

  /** Sends `signal` to this PID only, waits up to timeoutMs for the exit, then SIGKILLs. Resolves with the exit code. */
  stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 5000): Promise<number> {
    this.stopped ??= (async () => {
      if (this.isRunning) this.proc.kill(signal);
      const exited = await within(this.proc.exited, timeoutMs);
      if (exited === null) {
        this.proc.kill("SIGKILL");
        await this.proc.exited;
        return -9;
      }
      return exited;
    })();
    return this.stopped;
  }

  /** The last lines of the child's log, for a failure message. */
  logTail(lines = 20): string {
    if (this.logPath === "ignore") return "";
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }
}

/** Resolves with the promise's value, or null after timeoutMs; the timer is cleared either way (it never holds the process open). */
export async function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every child started and not yet stopped: stopped (by PID) on exit paths via stopAll. */
const children = new Set<Child>();

/** Starts a child, pinned when asked, and waits until its port accepts connections (or it exits, or the time is up). */
export async function startChild(options: StartOptions): Promise<Child> {
  const argv = options.core === null ? options.argv : ["taskset", "-c", String(options.core), ...options.argv];
  // One append-mode descriptor for both streams, so stdout and stderr interleave instead of overwriting each other.
  const output = options.logPath === "ignore" ? "ignore" : openSync(options.logPath, "a");
  const proc = Bun.spawn(argv, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdin: "ignore",
    stdout: output,
    stderr: output,
  });
  if (typeof output === "number") closeSync(output);
  const child = new Child(options.name, proc, options.logPath);
  children.add(child);
  void proc.exited.then(() => children.delete(child));
  const deadline = Date.now() + options.readyTimeoutMs;
  while (!(await portAccepts(options.readyPort))) {
    if (!child.isRunning) {
      throw new Error(
        `${options.name} exited (code ${proc.exitCode ?? proc.signalCode}) before listening on ${options.readyPort}:\n${child.logTail()}`,
      );
    }
    if (Date.now() > deadline) {
      await child.stop("SIGKILL");
      throw new Error(
        `${options.name} did not listen on port ${options.readyPort} within ${options.readyTimeoutMs} ms:\n${child.logTail()}`,
      );
    }
    await Bun.sleep(PORT_POLL_MS);
  }
  return child;
}

/** Stops every child still running, each by its own PID. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((child) => child.stop("SIGTERM", 3000)));
}

/** Stops every child when this process is interrupted, then exits with the conventional code. */
export function stopChildrenOnSignals(): void {
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping child processes\n`);
    void stopAll().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
}

/** Whether 127.0.0.1:port accepts a TCP connection now. */
export function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Distinct free TCP ports on 127.0.0.1 (bound at once so the kernel cannot hand out the same one twice). */
export function freePorts(count: number): number[] {
  const listeners = [];
  for (let i = 0; i < count; i++) {
    listeners.push(Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  }
  const ports = listeners.map((listener) => listener.port);
  for (const listener of listeners) listener.stop(true);
  return ports;
}

/** utime + stime of a process (all its threads), in clock ticks; 0 when it is gone. */
function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

function childPids(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    return text === "" ? [] : text.split(" ").map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds a finished Bun.spawn child used (user + system), from its rusage. */
export function finishedCpuSeconds(proc: Subprocess): number {
  const usage = proc.resourceUsage();
  return usage === undefined ? 0 : Number(usage.cpuTime.total) / 1e6;
}

export interface ToolRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** CPU seconds the tool used (its own rusage). */
  cpuSeconds: number;
  wallSeconds: number;
}

/** Runs a bounded tool (wrk, the load tester) to its end, pinned when asked; killed by PID after timeoutMs. */
export async function runTool(argv: string[], core: number | null, timeoutMs: number, cwd?: string): Promise<ToolRun> {
  const full = core === null ? argv : ["taskset", "-c", String(core), ...argv];
  const startedMs = performance.now();
  const proc = Bun.spawn(full, { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return {
    exitCode,
    stdout,
    stderr,
    cpuSeconds: finishedCpuSeconds(proc),
    wallSeconds: (performance.now() - startedMs) / 1000,
  };
}

/** Whether a command is on PATH. */
export function hasCommand(name: string): boolean {
  return Bun.which(name) !== null;
}

/** Installs Debian packages when a command is missing: one apt-get update, then apt-get install -y. */
export async function ensurePackages(needs: ReadonlyArray<{ command: string; pkg: string }>): Promise<void> {
  const missing = needs.filter(
    (need) => !hasCommand(need.command) && !(need.command === "nginx" && hasCommand("/usr/sbin/nginx")),
  );
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((need) => need.pkg))];
  process.stderr.write(`installing ${pkgs.join(", ")} with apt-get\n`);
  for (const argv of [
    ["apt-get", "update"],
    ["apt-get", "install", "-y", ...pkgs],
  ]) {
    const proc = Bun.spawn(argv, {
      stdout: "inherit",
      stderr: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if ((await proc.exited) !== 0) throw new Error(`${argv.join(" ")} failed: install ${pkgs.join(" ")} by hand`);
  }
}
