// What the configuration loaders look up about settings: tables, defaults, lists, and a value as problems show it.
import { LIST_NAMES, LISTS, type ListSpec } from "./lists.ts";
import { DEFAULT_CONFIG, SETTINGS } from "./schema.ts";

export type RawConfig = Record<string, Record<string, unknown>>;
/** Which layer gave each setting its value ("table.key" -> "server.toml", "HPS_SERVER_PORT", "--set server.port=1"). */
export type Origins = Map<string, string>;

export const TABLE_NAMES = Object.keys(SETTINGS);
export const DEFAULTS = DEFAULT_CONFIG as unknown as Record<string, Record<string, unknown>>;

export function hasSetting(table: string, key: string): boolean {
  return Object.hasOwn(SETTINGS, table) && Object.hasOwn(SETTINGS[table as keyof typeof SETTINGS], key);
}

/** The list at the top of the file or inside `table` with this key, if any. */
export function listAt(table: string | null, key: string): ListSpec | undefined {
  return LIST_NAMES.map((name) => LISTS[name] as ListSpec).find((list) => list.table === table && list.key === key);
}

/** The tables that have a setting named `key`. */
export function tablesWith(key: string): string[] {
  return TABLE_NAMES.filter((table) => hasSetting(table, key));
}

/** A value as problems show it: strings and lists as written, a table as "a table". */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return JSON.stringify(value);
  if (typeof value === "object" && value !== null) return "a table";
  return String(value);
}
