// Names checked in a layer: unknown tables and settings (with did-you-mean hints), removed settings, list fields.
import { type ListSpec, listPath } from "./lists.ts";
import { REMOVED_SETTINGS, SETTINGS } from "./schema.ts";
import { describe, listAt, type RawConfig, TABLE_NAMES, tablesWith } from "./setting-lookup.ts";
import { suggest } from "./suggest.ts";

/**
 * An array of tables ([[upstreams]], [[http.routes]]): it must be one, and each element may only use the list's
 * fields. Returns false (the caller drops the value) when it is not an array of tables.
 */
function checkListKeys(list: ListSpec, value: unknown, source: string, problems: string[]): boolean {
  const name = listPath(list);
  if (!Array.isArray(value) || value.some((item) => typeof item !== "object" || item === null || Array.isArray(item))) {
    problems.push(`${source}: ${name} must be an array of tables ([[${name}]] sections), got ${describe(value)}`);
    return false;
  }
  const fields = Object.keys(list.fields);
  value.forEach((element: Record<string, unknown>, index) => {
    for (const key of Object.keys(element)) {
      if (fields.includes(key)) continue;
      problems.push(`${source}: unknown setting ${name}[${index}].${key}${suggest(key, fields, `${name}[${index}].`)}`);
      delete element[key];
    }
  });
  return true;
}

export function checkKnownKeys(raw: RawConfig, source: string, problems: string[]): void {
  for (const [table, values] of Object.entries(raw)) {
    const topList = listAt(null, table);
    if (topList !== undefined) {
      if (!checkListKeys(topList, values, source, problems)) delete raw[table];
      continue;
    }
    if (!Object.hasOwn(SETTINGS, table)) {
      problems.push(
        typeof values === "object" && values !== null && !Array.isArray(values)
          ? `${source}: unknown table [${table}]${suggest(table, TABLE_NAMES)}`
          : outsideTables(source, table, values),
      );
      delete raw[table];
      continue;
    }
    if (typeof values !== "object" || values === null || Array.isArray(values)) {
      problems.push(`${source}: ${table} must be a table ([${table}]), got ${describe(values)}`);
      delete raw[table];
      continue;
    }
    const keys = Object.keys(SETTINGS[table as keyof typeof SETTINGS]);
    for (const key of Object.keys(values)) {
      const list = listAt(table, key);
      if (list !== undefined) {
        if (!checkListKeys(list, values[key], source, problems)) delete values[key];
        continue;
      }
      if (!keys.includes(key)) {
        const removed = REMOVED_SETTINGS[`${table}.${key}`];
        problems.push(
          removed === undefined
            ? `${source}: unknown setting ${table}.${key}${suggest(key, keys, `${table}.`)}`
            : `${source}: ${table}.${key} ${removed}`,
        );
        delete values[key];
      }
    }
  }
}

/** A `key = value` line above every [table] header: the tables that have such a setting. */
function outsideTables(source: string, key: string, value: unknown): string {
  const tables = tablesWith(key);
  const line = `${source}: ${key} = ${describe(value)} is outside any table`;
  if (tables.length === 0) return `${line}, and no table has a setting of that name`;
  return `${line}: put it under ${tables.map((table) => `[${table}]`).join(" or ")} (settings live in tables, e.g. [${tables[0]}] ${key})`;
}
