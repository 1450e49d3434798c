// Every setting of hps: its type, range, unit, default, meaning and how a reload treats it. The single source of defaults.
// The entries are kept by table group in src/config/settings/; the rules between settings in cross-setting-rules.ts.
import { z } from "zod";
import { crossSettingRules } from "./cross-setting-rules.ts";
import { checkLists } from "./list-rules.ts";
import { LISTS, listSchema } from "./lists.ts";
import { NET_SETTINGS, RATE_LIMIT_SETTINGS } from "./settings/admission.ts";
import { LIMITS_SETTINGS, PROXY_SETTINGS, SERVER_SETTINGS, TCP_SETTINGS } from "./settings/connections.ts";
import { HTTP_SETTINGS } from "./settings/http.ts";
import { ADMIN_SETTINGS, FLEET_SETTINGS, LOG_SETTINGS, STATS_SETTINGS } from "./settings/operations.ts";
import { CUSTOM_SETTINGS, MEMORY_SETTINGS, POOL_SETTINGS } from "./settings/pool.ts";
import { TLS_SETTINGS } from "./settings/tls.ts";
import type { SettingSpec } from "./settings/spec.ts";

/** The settings, table by table, in the order server.toml and the README show them. */
export const SETTINGS = {
  server: SERVER_SETTINGS,
  tcp: TCP_SETTINGS,
  limits: LIMITS_SETTINGS,
  http: HTTP_SETTINGS,
  tls: TLS_SETTINGS,
  custom: CUSTOM_SETTINGS,
  proxy: PROXY_SETTINGS,
  pool: POOL_SETTINGS,
  memory: MEMORY_SETTINGS,
  rate_limit: RATE_LIMIT_SETTINGS,
  net: NET_SETTINGS,
  log: LOG_SETTINGS,
  stats: STATS_SETTINGS,
  admin: ADMIN_SETTINGS,
  fleet: FLEET_SETTINGS,
} as const satisfies Record<string, Record<string, SettingSpec>>;

/**
 * Settings that existed in an earlier version, by "table.key": naming one is an error that says what replaced it
 * (a setting whose meaning changed is not silently mapped onto its successor).
 */
export const REMOVED_SETTINGS: Readonly<Record<string, string>> = {
  "tcp.max_buffered_bytes":
    "was removed: a connection is no longer cut when its output queue grows; the server stops reading it above tcp.write_high_water_bytes and disconnects a client that reads nothing for tcp.send_timeout_s. Use those two settings instead",
};

type Settings = typeof SETTINGS;
type TableShape<T extends Record<string, SettingSpec>> = { [K in keyof T]: T[K]["schema"] };

function tableSchema<T extends Record<string, SettingSpec>>(table: T) {
  const shape = Object.fromEntries(Object.entries(table).map(([key, spec]) => [key, spec.schema])) as TableShape<T>;
  // A missing table means all of its defaults; `{}` is valid input once defaults apply, which zod cannot see statically.
  return z.object(shape).prefault({} as never);
}

const tables = Object.fromEntries(Object.entries(SETTINGS).map(([name, table]) => [name, tableSchema(table)])) as {
  [K in keyof Settings]: ReturnType<typeof tableSchema<Settings[K]>>;
};

/** The value of every table of settings, before the lists of tables are added (what crossSettingRules reads). */
export type SettingValues = z.output<z.ZodObject<typeof tables>>;

/** The http table with its list of routes ([[http.routes]]). */
const httpTable = z
  .object({
    ...(Object.fromEntries(Object.entries(SETTINGS.http).map(([key, spec]) => [key, spec.schema])) as TableShape<
      Settings["http"]
    >),
    routes: listSchema(LISTS["http.routes"]),
  })
  .prefault({} as never);

/** The whole configuration, with the rules that span several settings. */
export const configSchema = z
  .object({ ...tables, http: httpTable, upstreams: listSchema(LISTS.upstreams) })
  .superRefine((config, ctx) => {
    checkLists(config, ctx);
    crossSettingRules(config, ctx);
  });

export type Config = z.output<typeof configSchema>;

/** Every setting at its default (what a missing file means). */
export const DEFAULT_CONFIG: Config = configSchema.parse({});
export type ConfigInput = z.input<typeof configSchema>;
export type Protocol = Config["server"]["protocol"];

/** Makes every nested property optional, for overrides in tests and code. */
export type ConfigOverrides = { [T in keyof Config]?: Partial<Config[T]> };
