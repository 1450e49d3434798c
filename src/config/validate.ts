// The merged layers validated by the schema; each problem is a sentence blamed on the layer that gave the value.
import type { z } from "zod";
import type { RuleIssueParams } from "./cross-setting-rules.ts";
import { type Config, configSchema, SETTINGS } from "./schema.ts";
import type { SettingSpec } from "./settings/spec.ts";
import { DEFAULTS, describe, hasSetting, listAt, type Origins, type RawConfig } from "./setting-lookup.ts";
import { DURATION_SUFFIXES, parseByteSize, parseDuration } from "./units.ts";

/** Validates the merged layers; each problem is blamed on the layer that gave the value (else on `fallback`). */
export function validate(raw: RawConfig, origins: Origins, fallback: string, problems: string[]): Config | null {
  const result = configSchema.safeParse(raw);
  if (result.success) return Object.freeze(result.data) as Config;
  for (const issue of result.error.issues) {
    const [table, key] = issue.path as string[];
    // A rule spanning settings whose own setting no layer set is blamed on the layer that set one it compares with.
    const related = issue.code === "custom" ? ((issue.params as RuleIssueParams | undefined)?.alsoFrom ?? []) : [];
    const origin =
      [`${table}.${key}`, ...related].map((name) => origins.get(name)).find((found) => found !== undefined) ?? fallback;
    problems.push(`${origin}: ${describeIssue(issue, raw)}`);
  }
  return null;
}

/** What a number setting also accepts as text, by its unit. */
const NUMBER_FORMS: Record<string, string> = {
  bytes: 'a number of bytes or a size like "16 MiB"',
  seconds: `a number of seconds or a duration like "10s", "500ms", "2m", "1h" (${DURATION_SUFFIXES})`,
  milliseconds: `a number of milliseconds or a duration like "500ms", "2s", "1m" (${DURATION_SUFFIXES})`,
  microseconds: `a number of microseconds or a duration like "100us", "1ms" (${DURATION_SUFFIXES})`,
};

/** A setting's path as people write it: "server.port", "upstreams[1].servers[0]", "http.routes[0].path_prefix". */
export function settingPath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text === "" ? String(part) : `.${String(part)}`;
  }
  return text;
}

/** The unit of the setting or list field at `path`, if it has one. */
function unitAt(path: readonly PropertyKey[]): string | undefined {
  const [table, key] = path as string[];
  if (table !== undefined && key !== undefined && hasSetting(table, key)) {
    return (SETTINGS[table as keyof typeof SETTINGS] as Record<string, SettingSpec>)[key]!.unit;
  }
  const field = path.findLast((part) => typeof part === "string") as string | undefined;
  const list = listAt(null, String(table)) ?? listAt(String(table), String(key));
  return field === undefined ? undefined : (list?.fields[field] as { unit?: string } | undefined)?.unit;
}

function describeIssue(issue: z.core.$ZodIssue, raw: RawConfig): string {
  const name = settingPath(issue.path);
  const given = issue.path.reduce<unknown>(
    (value, part) => (value as Record<PropertyKey, unknown> | undefined)?.[part as PropertyKey],
    raw,
  );
  const [table, key] = issue.path as string[];
  const unit = unitAt(issue.path);
  // A setting left at its default (a rule across settings blamed it); a list's elements have no such default.
  const fallback =
    issue.path.length === 2 && table !== undefined && key !== undefined ? DEFAULTS[table]?.[key] : undefined;
  const got =
    given === undefined && fallback !== undefined
      ? ` (got ${describe(fallback)}, the default)`
      : ` (got ${describe(given)}${cameTo(given, unit)})`;
  const inUnit = unit ? ` ${unit}` : "";
  switch (issue.code) {
    case "invalid_type":
      if (given === undefined && issue.path.some((part) => typeof part === "number")) return `${name} is required`;
      if (issue.expected === "array" && issue.path.at(-1) === "servers")
        return `${name} must be a list of servers like ["127.0.0.1:9001"]${got}`;
      if (issue.expected === "object" && typeof issue.path.at(-1) === "number") return `${name} must be a table${got}`;
      if (issue.expected === "number") return `${name} must be ${NUMBER_FORMS[unit ?? ""] ?? "a number"}${got}`;
      if (issue.expected === "int") return `${name} must be a whole number${unit ? ` of ${unit}` : ""}${got}`;
      return `${name} must be ${article(issue.expected)}${got}`;
    case "too_small":
      return `${name} must be at least ${issue.minimum}${inUnit}${got}`;
    case "too_big":
      return `${name} must be at most ${issue.maximum}${inUnit}${got}`;
    case "invalid_value":
      return `${name} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}${got}`;
    case "custom":
      return `${name} ${issue.message}${got}`;
    case "unrecognized_keys": {
      const hint = issue.path.includes("servers")
        ? ' (a server is "host:port" or { address, weight, max_connections })'
        : "";
      return `${name}: unknown ${issue.keys.length === 1 ? "key" : "keys"} ${issue.keys.join(", ")}${hint}`;
    }
    default:
      if (issue.code === "invalid_format" || issue.message.includes("integer"))
        return `${name} must be a whole number${unit ? ` of ${unit}` : ""}${got}`;
      return `${name}: ${issue.message}${got}`;
  }
}

/** ", which is 1.5 seconds" for a size or duration written with units; "" when there is nothing to add. */
function cameTo(given: unknown, unit: string | undefined): string {
  if (typeof given !== "string" || unit === undefined) return "";
  const value =
    unit === "bytes"
      ? parseByteSize(given)
      : unit === "seconds" || unit === "milliseconds" || unit === "microseconds"
        ? parseDuration(given, unit)
        : Number.NaN;
  return Number.isFinite(value) && String(value) !== given.trim() ? `, which is ${value} ${unit}` : "";
}

function article(expected: string): string {
  if (expected === "int") return "a whole number";
  if (expected === "array") return "a list of strings";
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}
