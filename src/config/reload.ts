// Which settings a running server can take from a reloaded configuration, and the configuration it then runs with.
import { configSchema, SETTINGS, type Config } from "./schema.ts";

type TableName = keyof typeof SETTINGS;
type Protocol = Config["server"]["protocol"];
type SettingList = { readonly [T in TableName]?: "*" | readonly string[] };

/** Read once at start whatever the protocol: sockets, threads, the admin listener. */
const READ_AT_START: SettingList = {
  server: ["protocol", "bind", "port", "backlog", "reuse_port", "io_threads"],
  admin: "*",
};

/**
 * Read once at start by the listener of each protocol: Bun.serve's idleTimeout; the pool's workers (and the handlers
 * module loaded into them) and the arena. Everything else is applied by a reload: admission, rate limits, the HTTP
 * site (rebuilt, see src/http/serve.ts), the TCP listener's socket options, write cap, idle timeout, frame limit and
 * max_in_flight (src/tcp/listen.ts), log level and file, report interval and shutdown timeout. Settings a protocol does not
 * use are simply taken (there is nothing to apply them to).
 */
const READ_AT_START_BY_PROTOCOL: Record<Protocol, SettingList> = {
  http: { http: ["keepalive_timeout_s"] },
  echo: {},
  custom: { custom: ["handlers"], pool: "*", memory: "*" },
};

/** With several I/O threads, the shared per-address table is sized at start (src/net/shared-address-table.ts). */
const READ_AT_START_THREADED: SettingList = { rate_limit: ["max_tracked_ips"] };

export interface ReloadPlan {
  /** What the server runs with after the reload: the new values of live settings, the running values of the rest. */
  readonly config: Config;
  /** Changed settings ("table.key") that take effect now. */
  readonly applied: string[];
  /** Changed settings that keep their running values until a restart. */
  readonly needsRestart: string[];
}

/**
 * Compares the running configuration with a newly loaded one. Throws an Error naming the problems when the merged
 * configuration breaks a rule that spans settings (e.g. http.static_routes with a live setting it excludes while a
 * restart-only one keeps its old value).
 */
export function planReload(running: Config, next: Config): ReloadPlan {
  const atStart = READ_AT_START_BY_PROTOCOL[running.server.protocol];
  const threaded = running.server.io_threads > 1;
  const applied: string[] = [];
  const needsRestart: string[] = [];
  const merged: Record<string, Record<string, unknown>> = {};
  for (const table of Object.keys(SETTINGS) as TableName[]) {
    const runningTable = running[table] as Record<string, unknown>;
    const nextTable = next[table] as Record<string, unknown>;
    const out: Record<string, unknown> = { ...runningTable };
    for (const key of Object.keys(SETTINGS[table])) {
      if (sameValue(runningTable[key], nextTable[key])) continue;
      const name = `${table}.${key}`;
      if (
        isListed(READ_AT_START, table, key) ||
        isListed(atStart, table, key) ||
        (threaded && isListed(READ_AT_START_THREADED, table, key))
      ) {
        needsRestart.push(name);
      } else {
        out[key] = nextTable[key];
        applied.push(name);
      }
    }
    merged[table] = out;
  }
  const checked = configSchema.safeParse(merged);
  if (!checked.success) {
    const problems = checked.error.issues.map((issue) => `${issue.path.join(".") || "config"}: ${issue.message}`);
    throw new Error(
      `the reloaded configuration cannot run with the settings that need a restart kept at their running values: ${problems.join("; ")}`,
    );
  }
  return { config: Object.freeze(checked.data) as Config, applied, needsRestart };
}

function isListed(list: SettingList, table: TableName, key: string): boolean {
  const keys = list[table];
  return keys === "*" || keys?.includes(key) === true;
}

/** Settings are primitives or lists of strings. */
function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => item === b[i]);
  return a === b;
}
