// RLIMIT_NOFILE at start: raised to what limits.max_connections needs when the hard limit allows it, a warning
// naming the fix when it does not, and a gauge (fileDescriptors: hardLimit, needed) beside the snapshot's
// fileDescriptorsUsed and fileDescriptorsLimit in /stats.
import { readdirSync, readFileSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import type { GaugeRegistry } from "../context.ts";
import type { Logger } from "../log.ts";
import { getResourceLimit, libc, RLIMIT_NOFILE, setResourceLimit } from "./libc.ts";

/**
 * Descriptors beyond one per connection: listeners, the admin port, log files, pool workers' and I/O threads'
 * event loops, files being sent, upgrades' notify sockets. Added to what is open at start.
 */
const RESERVE_FDS = 256;

/** Descriptors a server with `config` should be able to open: one per connection plus a reserve. */
export function fileDescriptorsNeeded(config: Config, openNow: number): number {
  return config.limits.max_connections + Math.max(0, openNow) + RESERVE_FDS;
}

export interface FdLimitReport {
  readonly needed: number;
  /** Soft and hard limits after the check (-1 when unknown). */
  readonly limit: number;
  readonly hardLimit: number;
  /** The soft limit before, when this check raised it; null when it did not. */
  readonly raisedFrom: number | null;
  /** Why the limit stays below what is needed; null when it is enough. */
  readonly problem: string | null;
}

/**
 * Raises the soft RLIMIT_NOFILE (and the hard one, which needs CAP_SYS_RESOURCE) to what `config` needs when it is
 * lower, and says what it did. Bun itself raises the soft limit to the hard one at start, so in practice only a
 * hard limit below the need remains: then the report names the fix.
 */
export function ensureFileDescriptors(config: Config): FdLimitReport {
  const needed = fileDescriptorsNeeded(config, countOpenFds());
  const c = libc();
  const before = c === null ? readLimitsFromProc() : getResourceLimit(c, RLIMIT_NOFILE);
  if (before === null) return { needed, limit: -1, hardLimit: -1, raisedFrom: null, problem: null };
  if (before.soft >= needed) {
    return { needed, limit: before.soft, hardLimit: before.hard, raisedFrom: null, problem: null };
  }
  if (c === null) {
    return { needed, limit: before.soft, hardLimit: before.hard, raisedFrom: null, problem: "cannot call setrlimit" };
  }
  let failure: string | null = null;
  if (before.hard < needed) {
    const errorNumber = setResourceLimit(c, RLIMIT_NOFILE, { soft: needed, hard: needed });
    if (errorNumber !== 0) {
      failure =
        errorNumber === 1 // EPERM
          ? `the hard limit is ${before.hard} and raising it needs CAP_SYS_RESOURCE`
          : `setrlimit failed (errno ${errorNumber})`;
    }
  }
  const current = getResourceLimit(c, RLIMIT_NOFILE) ?? before;
  if (current.soft < needed) {
    setResourceLimit(c, RLIMIT_NOFILE, { soft: Math.min(needed, current.hard), hard: current.hard });
  }
  const after = getResourceLimit(c, RLIMIT_NOFILE) ?? current;
  return {
    needed,
    limit: after.soft,
    hardLimit: after.hard,
    raisedFrom: after.soft > before.soft ? before.soft : null,
    problem: after.soft >= needed ? null : (failure ?? `the limit stays at ${after.soft}`),
  };
}

/** Logs what ensureFileDescriptors did and registers the fileDescriptors gauge. */
export function applyFileDescriptorLimit(config: Config, logger: Logger, gauges: GaugeRegistry): FdLimitReport {
  const report = ensureFileDescriptors(config);
  const connections = `limits.max_connections = ${config.limits.max_connections}`;
  if (report.raisedFrom !== null) {
    logger.info(
      `file descriptors: limit raised from ${report.raisedFrom} to ${report.limit} (${connections} needs about ${report.needed})`,
    );
  }
  if (report.problem !== null) {
    logger.warn(
      `file descriptors: ${connections} needs about ${report.needed} but this process may open only ${report.limit} (${report.problem}); ` +
        `connections past that fail with EMFILE: raise the limit (LimitNOFILE= in the systemd unit, ulimit -n before starting, ` +
        `docker run --ulimit nofile=${report.needed}:${report.needed}) or lower limits.max_connections`,
    );
  }
  gauges.set("fileDescriptors", () => ({ hardLimit: currentLimits().hard, needed: report.needed }));
  return report;
}

/** The limits now (they can change: a later raise, prlimit from outside). */
function currentLimits(): { soft: number; hard: number } {
  const c = libc();
  return (c === null ? readLimitsFromProc() : getResourceLimit(c, RLIMIT_NOFILE)) ?? { soft: -1, hard: -1 };
}

/** Open descriptors of this process; -1 without /proc. */
export function countOpenFds(): number {
  try {
    // readdir opens the directory itself, which then shows up in the listing.
    return readdirSync("/proc/self/fd").length - 1;
  } catch {
    return -1;
  }
}

function readLimitsFromProc(): { soft: number; hard: number } | null {
  try {
    const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(
      readFileSync("/proc/self/limits", "utf8"),
    );
    if (match === null) return null;
    const value = (text: string) => (text === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(text));
    return { soft: value(match[1]!), hard: value(match[2]!) };
  } catch {
    return null;
  }
}
