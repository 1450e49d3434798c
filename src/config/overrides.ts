// The environment (HPS_<TABLE>_<KEY>) and command-line (--set table.key=value) layers, text made the setting's kind.
import { LIST_NAMES, LISTS, type ListSpec, listPath } from "./lists.ts";
import { REMOVED_SETTINGS, SETTINGS } from "./schema.ts";
import type { SettingSpec } from "./settings/spec.ts";
import {
  DEFAULTS,
  hasSetting,
  listAt,
  type Origins,
  type RawConfig,
  TABLE_NAMES,
  tablesWith,
} from "./setting-lookup.ts";
import { suggest } from "./suggest.ts";

type SettingKind = "string" | "number" | "boolean" | "list";
/** What an override that names a list is told: lists are written in the file only. */
const LIST_OVERRIDE_HINT = "arrays of tables are set in the configuration file only";

function kindOf(table: string, key: string): SettingKind {
  const value = DEFAULTS[table]![key];
  if (Array.isArray(value)) return "list";
  return typeof value === "number" ? "number" : typeof value === "boolean" ? "boolean" : "string";
}

/** Applies the HPS_* variables; returns their names. */
export function applyEnv(
  raw: RawConfig,
  env: Record<string, string | undefined>,
  origins: Origins,
  problems: string[],
): string[] {
  const applied: string[] = [];
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith("HPS_") || text === undefined) continue;
    const rest = name.slice(4).toLowerCase();
    const table = TABLE_NAMES.filter((t) => rest.startsWith(`${t}_`)).sort((a, b) => b.length - a.length)[0];
    const key = table === undefined ? "" : rest.slice(table.length + 1);
    const list = LIST_NAMES.map((n) => LISTS[n] as ListSpec).find((l) =>
      rest.startsWith(listPath(l).replace(".", "_")),
    );
    if (list !== undefined) {
      problems.push(
        `environment: ${name}: ${listPath(list)} cannot be set from the environment (${LIST_OVERRIDE_HINT})`,
      );
      continue;
    }
    if (table === undefined || !hasSetting(table, key)) {
      const all = TABLE_NAMES.flatMap((t) =>
        Object.keys(SETTINGS[t as keyof typeof SETTINGS]).map((k) => `HPS_${t}_${k}`.toUpperCase()),
      );
      const removed = table === undefined ? undefined : REMOVED_SETTINGS[`${table}.${key}`];
      problems.push(
        removed === undefined
          ? `environment: unknown setting ${name}${suggest(name, all)}`
          : `environment ${name}: ${table}.${key} ${removed}`,
      );
      continue;
    }
    setValue(raw, table, key, text, name, problems);
    origins.set(`${table}.${key}`, name);
    applied.push(name);
  }
  return applied;
}

/** Applies one `table.key=value`; `given` is how the user wrote it ("--set a.b=1", "--port 80"). */
export function applySet(
  raw: RawConfig,
  assignment: string,
  given: string,
  origins: Origins,
  problems: string[],
): void {
  const equals = assignment.indexOf("=");
  const path = equals < 0 ? assignment : assignment.slice(0, equals);
  const [table = "", key = "", ...extra] = path.trim().split(".");
  const list = listAt(null, table.replace(/\[.*$/, "")) ?? listAt(table, key.replace(/\[.*$/, ""));
  if (list !== undefined) {
    problems.push(`${given}: ${listPath(list)} cannot be set on the command line (${LIST_OVERRIDE_HINT})`);
    return;
  }
  const known = extra.length === 0 && hasSetting(table, key);
  if (equals < 0 && known) {
    problems.push(`${given}: no value (expected --set ${path.trim()}=value)`);
    return;
  }
  if (path.trim() === "") {
    problems.push(`${given}: no setting name before = (expected --set table.key=value)`);
    return;
  }
  if (equals < 0 || !known) {
    const all = TABLE_NAMES.flatMap((t) => Object.keys(SETTINGS[t as keyof typeof SETTINGS]).map((k) => `${t}.${k}`));
    // A key without its table ("port"): every table that has it; otherwise the closest full name.
    const tables = path.includes(".") ? [] : tablesWith(path.trim());
    const hint =
      tables.length > 0
        ? ` (did you mean ${tables.map((t) => `${t}.${path.trim()}`).join(" or ")}?)`
        : equals < 0
          ? " (expected --set table.key=value)"
          : suggest(path, all);
    const removed = REMOVED_SETTINGS[path.trim()];
    problems.push(
      removed === undefined ? `${given}: unknown setting ${path}${hint}` : `${given}: ${path.trim()} ${removed}`,
    );
    return;
  }
  setValue(raw, table, key, assignment.slice(equals + 1), given, problems);
  origins.set(`${table}.${key}`, given);
}

/** Converts override text to the setting's kind; what cannot be converted is left for the schema to reject. */
function setValue(raw: RawConfig, table: string, key: string, text: string, origin: string, problems: string[]): void {
  if ((SETTINGS[table as keyof typeof SETTINGS] as Record<string, SettingSpec>)[key]!.tableList !== undefined) {
    problems.push(`${origin}: ${table}.${key} is set in the configuration file only, as [[${table}.${key}]] tables`);
    return;
  }
  const target = (raw[table] ??= {});
  const trimmed = text.trim();
  switch (kindOf(table, key)) {
    case "number": {
      const value = trimmed === "" ? Number.NaN : Number(trimmed);
      // Byte sizes and durations also accept "16MiB", "10s"; keep the text so the schema can parse it.
      target[key] = Number.isNaN(value) ? trimmed : value;
      break;
    }
    case "boolean":
      if (/^(true|1|yes|on)$/i.test(trimmed)) target[key] = true;
      else if (/^(false|0|no|off)$/i.test(trimmed)) target[key] = false;
      else problems.push(`${origin}: ${table}.${key} must be true or false (got "${text}")`);
      break;
    case "list":
      target[key] = trimmed === "" ? [] : trimmed.split(",").map((item) => item.trim());
      break;
    case "string":
      target[key] = text;
      break;
  }
}
