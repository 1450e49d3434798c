// Loads the configuration: TOML file < environment (HPS_<TABLE>_<KEY>) < CLI (--set table.key=value), then validates.
import { stat } from "node:fs/promises";
import { parse as parseToml, TomlError } from "smol-toml";
import type { z } from "zod";
import { LIST_NAMES, LISTS, type ListSpec, listPath } from "./lists.ts";
import { type Config, configSchema, DEFAULT_CONFIG, REMOVED_SETTINGS, SETTINGS } from "./schema.ts";
import type { SettingSpec } from "./settings/spec.ts";
import type { RuleIssueParams } from "./cross-setting-rules.ts";
import { DURATION_SUFFIXES, parseByteSize, parseDuration } from "./units.ts";
import { suggest } from "./suggest.ts";

/** Every problem found in one run, each a sentence a person can act on. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

export interface LoadOptions {
  /** Path of the TOML file; a missing file means all defaults unless `requireFile`. */
  configPath: string;
  /** Fail when the file does not exist (the user named it explicitly). */
  requireFile?: boolean;
  /** Environment to read HPS_* overrides from. */
  env?: Record<string, string | undefined>;
  /** `table.key=value` overrides from the command line, in order. */
  sets?: readonly SetOverride[];
}

/**
 * One command-line override: `table.key=value` as --set gives it, or with the words the user typed for it (a
 * shorthand such as `--port 80`), which name it in problems and in the list of overrides.
 */
export type SetOverride = string | { readonly assignment: string; readonly given: string };

/** A loaded configuration and where it came from. */
export interface LoadedConfig {
  readonly config: Config;
  /** The file read, or null when there was none (all defaults, then the overrides). */
  readonly file: string | null;
  /** The overrides applied, in order: HPS_* variables, then `--set table.key=value` assignments. */
  readonly overrides: readonly string[];
}

type RawConfig = Record<string, Record<string, unknown>>;
type SettingKind = "string" | "number" | "boolean" | "list";
/** Which layer gave each setting its value ("table.key" -> "server.toml", "HPS_SERVER_PORT", "--set server.port=1"). */
type Origins = Map<string, string>;

const TABLE_NAMES = Object.keys(SETTINGS);
/** What an override that names a list is told: lists are written in the file only. */
const LIST_OVERRIDE_HINT = "arrays of tables are set in the configuration file only";
const DEFAULTS = DEFAULT_CONFIG as unknown as Record<string, Record<string, unknown>>;

function kindOf(table: string, key: string): SettingKind {
  const value = DEFAULTS[table]![key];
  if (Array.isArray(value)) return "list";
  return typeof value === "number" ? "number" : typeof value === "boolean" ? "boolean" : "string";
}

function hasSetting(table: string, key: string): boolean {
  return Object.hasOwn(SETTINGS, table) && Object.hasOwn(SETTINGS[table as keyof typeof SETTINGS], key);
}

/** Reads, merges and validates the configuration. Throws ConfigError listing every problem. */
export async function loadConfig(options: LoadOptions): Promise<Config> {
  return (await readConfig(options)).config;
}

/**
 * Reads, merges and validates the configuration, and says where it came from. Throws ConfigError listing every
 * problem, each prefixed by the layer that gave the value (the file, an HPS_* variable, a --set assignment).
 */
export async function readConfig(options: LoadOptions): Promise<LoadedConfig> {
  const problems: string[] = [];
  const source = options.configPath;
  const origins: Origins = new Map();
  const text = await readText(source, problems);
  const found = text !== null;
  let raw: RawConfig = {};
  if (found) {
    raw = parseFile(source, text, problems);
    noteOrigins(raw, source, origins);
  } else if (options.requireFile && problems.length === 0) {
    problems.push(
      `${source}: file not found (create it, or leave out --config to use ${"server.toml"} or the defaults)`,
    );
  }
  checkKnownKeys(raw, source, problems);
  const overrides = applyEnv(raw, options.env ?? {}, origins, problems);
  for (const set of options.sets ?? []) {
    const [assignment, given] = typeof set === "string" ? [set, `--set ${set}`] : [set.assignment, set.given];
    applySet(raw, assignment, given, origins, problems);
    overrides.push(given);
  }
  const config = validate(raw, origins, found ? source : "configuration", problems);
  if (problems.length > 0 || config === null) throw new ConfigError(problems);
  return { config, file: found ? source : null, overrides };
}

/** Validates an in-memory configuration object (tests, embedding). */
export function buildConfig(raw: Record<string, Record<string, unknown>>, source = "config"): Config {
  const problems: string[] = [];
  checkKnownKeys(raw, source, problems);
  const config = validate(raw, new Map(), source, problems);
  if (problems.length > 0 || config === null) throw new ConfigError(problems);
  return config;
}

/**
 * The text of the configuration file; null when there is none (or it cannot be read: the problem is then noted).
 * Not only regular files: `--config /dev/null` is an empty configuration.
 */
async function readText(path: string, problems: string[]): Promise<string | null> {
  try {
    if ((await stat(path)).isDirectory()) {
      problems.push(`${path}: is a directory, not a TOML file (give the path of the file itself)`);
      return null;
    }
    return await Bun.file(path).text();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    const reason = code === "EACCES" || code === "EPERM" ? "permission denied" : (error as Error).message;
    problems.push(`${path}: cannot be read (${reason})`);
    return null;
  }
}

function parseFile(path: string, text: string, problems: string[]): RawConfig {
  try {
    return parseToml(text) as RawConfig;
  } catch (error) {
    if (error instanceof TomlError) {
      problems.push(tomlProblem(path, text, error));
    } else {
      problems.push(`${path}: cannot be read: ${(error as Error).message}`);
    }
    return {};
  }
}

/**
 * A TOML syntax error as `path:line:column: TOML syntax error: reason`. smol-toml reports a string left open at the
 * end of its line as a control character (the newline) in a string: that is said as what it is, an unterminated
 * string, at the column where the string starts.
 */
function tomlProblem(path: string, text: string, error: TomlError): string {
  const reason = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
  const lineText = text.split("\n")[error.line - 1] ?? "";
  const atLineEnd = error.column > lineText.replace(/\r$/, "").length;
  if (reason === "unfinished string" || (reason.startsWith("control characters") && atLineEnd)) {
    const opened = openString(lineText);
    if (opened === null) return `${path}:${error.line}:${error.column}: TOML syntax error: unterminated string`;
    // A multi-line string (three quotes) may run on; the others must end on the line they start.
    const where = opened.quote.length === 3 ? "" : " on the same line";
    return `${path}:${error.line}:${opened.column}: TOML syntax error: unterminated string (close it with ${opened.quote}${where})`;
  }
  if (reason.startsWith("trying to redefine")) {
    // The line smol-toml points at is the second definition: a [table] header or a `key = value`.
    const definition = lineText.trim();
    const what = definition.startsWith("[")
      ? definition.replace(/\].*$/, "]").replace(/\s+/g, "")
      : definition.split("=")[0]!.trim();
    if (what !== "")
      return `${path}:${error.line}:${error.column}: TOML syntax error: ${what} is given twice (${reason})`;
  }
  return `${path}:${error.line}:${error.column}: TOML syntax error: ${reason}`;
}

/** The string still open at the end of `line`: its 1-based column and opening quote; null when none is. */
function openString(line: string): { column: number; quote: string } | null {
  let quote = "";
  let start = -1;
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!;
    if (quote === "") {
      if (char === "#") return null;
      if (char === '"' || char === "'") {
        quote = line.startsWith(char.repeat(3), i) ? char.repeat(3) : char;
        start = i;
        i += quote.length - 1;
      }
    } else if (quote === '"' && char === "\\") {
      i++; // an escape: the next character cannot close the string
    } else if (line.startsWith(quote, i)) {
      i += quote.length - 1;
      quote = "";
    }
  }
  return quote === "" ? null : { column: start + 1, quote };
}

function noteOrigins(raw: RawConfig, source: string, origins: Origins): void {
  for (const [table, values] of Object.entries(raw)) {
    if (typeof values !== "object" || values === null || Array.isArray(values)) continue;
    for (const key of Object.keys(values)) origins.set(`${table}.${key}`, source);
  }
}

/** The list at the top of the file or inside `table` with this key, if any. */
function listAt(table: string | null, key: string): ListSpec | undefined {
  return LIST_NAMES.map((name) => LISTS[name] as ListSpec).find((list) => list.table === table && list.key === key);
}

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

function checkKnownKeys(raw: RawConfig, source: string, problems: string[]): void {
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

/** The tables that have a setting named `key`. */
function tablesWith(key: string): string[] {
  return TABLE_NAMES.filter((table) => hasSetting(table, key));
}

/** Applies the HPS_* variables; returns their names. */
function applyEnv(
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
function applySet(raw: RawConfig, assignment: string, given: string, origins: Origins, problems: string[]): void {
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

/** Validates the merged layers; each problem is blamed on the layer that gave the value (else on `fallback`). */
function validate(raw: RawConfig, origins: Origins, fallback: string, problems: string[]): Config | null {
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

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return JSON.stringify(value);
  if (typeof value === "object" && value !== null) return "a table";
  return String(value);
}
