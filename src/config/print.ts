// Prints a configuration as commented TOML (--print-config, server.toml) and names the settings Bun cannot apply.
import { stringify } from "smol-toml";
import { DEFAULT_CONFIG, SETTINGS, type Config, type SettingSpec } from "./schema.ts";

const DEFAULTS = DEFAULT_CONFIG as unknown as Record<string, Record<string, unknown>>;

/** A value as TOML writes it (`"text"`, `16777216`, `["a", "b"]`). */
export function tomlValue(value: unknown): string {
  return stringify({ v: value }).replace(/^v = /, "").trim();
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
