// Prints a configuration as commented TOML (--print-config, server.toml) and names the settings Bun cannot apply.
import { stringify } from "smol-toml";
import { LIST_NAMES, LISTS, type ListSpec, listPath, listValue } from "./lists.ts";
import { DEFAULT_CONFIG, SETTINGS, type Config } from "./schema.ts";
import type { SettingSpec } from "./settings/spec.ts";

const DEFAULTS = DEFAULT_CONFIG as unknown as Record<string, Record<string, unknown>>;

/** A value as TOML writes it (`"text"`, `16777216`, `["a", "b"]`); tables inside lists inline (`{ a = 1 }`). */
export function tomlValue(value: unknown): string {
  if (Array.isArray(value) && value.some((item) => typeof item === "object" && item !== null)) {
    return `[${value.map(tomlValue).join(", ")}]`;
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const fields = Object.entries(value).map(([key, item]) => `${key} = ${tomlValue(item)}`);
    return `{ ${fields.join(", ")} }`;
  }
  return stringify({ v: value }).replace(/^v = /, "").trim();
}

/** A server of an upstream group as written in the file: "host:port" when it has no weight or limit of its own. */
function compactServer(server: unknown): unknown {
  const { address, weight, max_connections } = server as { address: string; weight: number; max_connections: number };
  return weight === 1 && max_connections === 0 ? address : server;
}

/** The arrays of tables: each element as a [[name]] section; none given (with comments): the example, commented out. */
function listsToToml(config: Config, comments: boolean): string[] {
  const lines: string[] = [];
  for (const listName of LIST_NAMES) {
    const list: ListSpec = LISTS[listName];
    const name = listPath(list);
    const elements = (listValue(config, list) as Record<string, unknown>[] | undefined) ?? [];
    lines.push("");
    if (comments) {
      lines.push(`# [[${name}]]: ${list.doc}`);
      for (const [key, field] of Object.entries(list.fields)) {
        const unit = field.unit ? ` Unit: ${field.unit}.` : "";
        const fallback = field.isRequired ? " Required." : ` Default: ${tomlValue(field.schema.parse(undefined))}.`;
        lines.push(`#   ${key}: ${field.doc}${unit}${fallback}`);
      }
    }
    if (elements.length === 0) {
      if (!comments) continue;
      for (const example of list.example) {
        lines.push(`# [[${name}]]`);
        for (const [key, value] of Object.entries(example)) lines.push(`# ${key} = ${tomlValue(value)}`);
      }
      continue;
    }
    for (const element of elements) {
      lines.push(`[[${name}]]`);
      for (const [key, value] of Object.entries(element)) {
        const shown = key === "servers" ? (value as unknown[]).map(compactServer) : value;
        lines.push(`${key} = ${tomlValue(shown)}`);
      }
    }
  }
  return lines;
}

function settingEntries(): Array<[string, Array<[string, SettingSpec]>]> {
  return Object.entries(SETTINGS).map(([table, settings]) => [
    table,
    Object.entries(settings as Record<string, SettingSpec>),
  ]);
}

/** The configuration as TOML; with `comments`, each setting is preceded by its meaning, unit and default. */
export function configToToml(config: Config, comments = true): string {
  const values = config as unknown as Record<string, Record<string, unknown>>;
  const lines: string[] = [];
  for (const [table, settings] of settingEntries()) {
    if (lines.length > 0) lines.push("");
    lines.push(`[${table}]`);
    for (const [key, spec] of settings) {
      if (comments) {
        const unit = spec.unit ? ` Unit: ${spec.unit}.` : "";
        lines.push(`# ${spec.doc}${unit} Default: ${tomlValue(DEFAULTS[table]![key])}.`);
        if (spec.notAppliedBecause)
          lines.push(
            `# Only ${tomlValue(spec.runtimeValue)} can be honoured on this runtime: ${spec.notAppliedBecause}.`,
          );
      }
      lines.push(...assignment(spec, table, key, values[table]![key]));
    }
  }
  lines.push(...listsToToml(config, comments));
  return `${lines.join("\n")}\n`;
}

/**
 * `key = value`, or for a list of tables (SettingSpec.tableList) one `[[table.key]]` block per entry; an empty one is
 * shown as its commented example (`key = []` would forbid adding the blocks below it).
 */
function assignment(spec: SettingSpec, table: string, key: string, value: unknown): string[] {
  if (spec.tableList === undefined || !Array.isArray(value)) return [`${key} = ${tomlValue(value)}`];
  if (value.length === 0) return [...spec.tableList.example];
  return value.flatMap((entry: Record<string, unknown>) => [
    `[[${table}.${key}]]`,
    ...Object.entries(entry).map(([name, item]) => `${name} = ${tomlValue(item)}`),
  ]);
}

/** Settings whose configured value Bun cannot apply (it behaves as if set to another value), each as "key = value (reason)". */
export function unappliedSettings(config: Config): string[] {
  const values = config as unknown as Record<string, Record<string, unknown>>;
  const result: string[] = [];
  for (const [table, settings] of settingEntries()) {
    for (const [key, spec] of settings) {
      const value = values[table]![key];
      if (spec.notAppliedBecause && value !== spec.runtimeValue) {
        result.push(
          `${table}.${key} = ${tomlValue(value)} (${spec.notAppliedBecause}; it behaves as ${tomlValue(spec.runtimeValue)})`,
        );
      }
    }
  }
  return result;
}
