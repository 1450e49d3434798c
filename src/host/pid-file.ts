// server.pid_file: written once the server is ready (so it names the process serving now), removed at exit only
// while it still names this process (after an upgrade it names the successor).
import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";

/** Writes `pid` to `path` atomically (a reader never sees a half-written file); throws when it cannot. */
export function writePidFile(path: string, pid = process.pid): void {
  const temporary = `${path}.${pid}.tmp`;
  try {
    writeFileSync(temporary, `${pid}\n`, { mode: 0o644 });
    renameSync(temporary, path);
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // Never created.
    }
    throw error;
  }
}

/** The process id in `path`, or null when there is no such file or it does not hold one. */
export function readPidFile(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** Removes `path` if it still names `pid`; leaves a successor's file alone. */
export function removePidFile(path: string, pid = process.pid): void {
  if (readPidFile(path) !== pid) return;
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

/** Whether a process with this id exists (signal 0 checks without sending anything). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** Linux reports process start times in these ticks (USER_HZ, 100 on every architecture). */
const TICKS_PER_SECOND = 100;
/** Clock granularity and file-system timestamps: a process is taken as younger only by more than this. */
const START_SLACK_SECONDS = 1;

/**
 * Whether the process `pid` started after `path` was last written, so it cannot be the process that wrote its id
 * there: a pid file left behind by a crash, whose id the kernel has since given to another process (a shell,
 * another server) that must not be signalled. False when this cannot be told (no /proc, no such file or process).
 */
export function startedAfterWritten(pid: number, path: string): boolean {
  try {
    const fileAgeSeconds = (Date.now() - statSync(path).mtimeMs) / 1000;
    // Both ages on one clock each: the process's from the boot clock, the file's from the wall clock.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const startTicks = Number(fields[19]);
    const uptimeSeconds = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(uptimeSeconds)) return false;
    const processAgeSeconds = uptimeSeconds - startTicks / TICKS_PER_SECOND;
    return processAgeSeconds < fileAgeSeconds - START_SLACK_SECONDS;
  } catch {
    return false;
  }
}
