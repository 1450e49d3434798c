// server.pid_file: written once the server is ready (so it names the process serving now), removed at exit only
// while it still names this process (after an upgrade it names the successor).
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";

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
