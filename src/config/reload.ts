// What a reload does, derived from each setting's rule in the schema (src/config/reload-rule.ts): which changed
// settings take effect now, which wait for a restart, and which parts of the running server are built anew.
import {
  effectOf,
  hasPart,
  type ReloadEffect,
  type ReloadPart,
  type RunningShape,
  withContainers,
} from "./reload-rule.ts";
import { LIST_NAMES, LISTS, type ListSpec, listPath, listValue } from "./lists.ts";
import { type Config, configSchema, SETTINGS } from "./schema.ts";
import type { SettingSpec } from "./settings/spec.ts";

type TableName = keyof typeof SETTINGS;
type Values = Record<string, Record<string, unknown>>;

/** One setting of the schema, by name ("table.key"). */
interface NamedSetting {
  readonly table: TableName;
  readonly key: string;
  readonly name: string;
  readonly spec: SettingSpec;
}

/** Every setting, in schema order. */
const ALL_SETTINGS: readonly NamedSetting[] = (Object.keys(SETTINGS) as TableName[]).flatMap((table) =>
  Object.entries(SETTINGS[table] as Record<string, SettingSpec>).map(([key, spec]) => ({
    table,
    key,
    name: `${table}.${key}`,
    spec,
  })),
);

/** Every array of tables ([[upstreams]], [[http.routes]]), by name ("upstreams", "http.routes"). */
const ALL_LISTS: readonly { readonly name: string; readonly spec: ListSpec }[] = LIST_NAMES.map((name) => ({
  name: listPath(LISTS[name]),
  spec: LISTS[name],
}));

export interface ReloadPlan {
  /** What the server runs with after the reload: the new values of live settings, the running values of the rest. */
  readonly config: Config;
  /** Changed settings ("table.key", or a list such as "upstreams") that take effect now. */
  readonly applied: string[];
  /** Changed settings that keep their running values until a restart. */
  readonly needsRestart: string[];
}

/** What the rules of a server running `config` depend on. */
export function shapeOf(config: Config): RunningShape {
  return { protocol: config.server.protocol, ioThreads: config.server.io_threads };
}

/** The effect a change of `name` ("table.key") has on a server running `config`. */
export function reloadEffect(config: Config, name: string): ReloadEffect {
  const setting = ALL_SETTINGS.find((candidate) => candidate.name === name) ?? ALL_LISTS.find((l) => l.name === name);
  if (setting === undefined) throw new Error(`unknown setting ${name}`);
  return effectOf(setting.spec.reload, shapeOf(config));
}

/**
 * Compares the running configuration with a newly loaded one. Throws an Error naming the problems when the merged
 * configuration breaks a rule that spans settings (e.g. http.static_routes with a live setting it excludes while a
 * restart-only one keeps its old value).
 */
export function planReload(running: Config, next: Config): ReloadPlan {
  const shape = shapeOf(running);
  const applied: string[] = [];
  const needsRestart: string[] = [];
  const merged: Values = {};
  for (const table of Object.keys(SETTINGS)) merged[table] = { ...(running as unknown as Values)[table] };
  const mergedLists: Record<string, unknown> = {};
  for (const { name, spec } of ALL_LISTS) {
    const before = listValue(running, spec);
    const after = listValue(next, spec);
    let value = before;
    if (!sameValue(before, after)) {
      if (effectOf(spec.reload, shape) === "restart") {
        needsRestart.push(name);
      } else {
        value = after;
        applied.push(name);
      }
    }
    if (spec.table === null) mergedLists[spec.key] = value;
    else merged[spec.table]![spec.key] = value;
  }
  for (const { table, key, name, spec } of ALL_SETTINGS) {
    const nextValue = (next as unknown as Values)[table]![key];
    if (sameValue(merged[table]![key], nextValue)) continue;
    if (effectOf(spec.reload, shape) === "restart") {
      needsRestart.push(name);
    } else {
      merged[table]![key] = nextValue;
      applied.push(name);
    }
  }
  const checked = configSchema.safeParse({ ...merged, ...mergedLists });
  if (!checked.success) {
    const problems = checked.error.issues.map((issue) => `${issue.path.join(".") || "config"}: ${issue.message}`);
    throw new Error(
      `the reloaded configuration cannot run with the settings that need a restart kept at their running values: ${problems.join("; ")}`,
    );
  }
  return { config: Object.freeze(checked.data) as Config, applied, needsRestart };
}

/**
 * The parts a server running `before` builds anew to run `after` (a planned configuration: its restart-only
 * settings are the running ones): those named by the rules of the settings that differ, with the parts containing
 * them, as far as this server has them.
 */
export function changedParts(before: Config, after: Config): ReadonlySet<ReloadPart> {
  const shape = shapeOf(before);
  const parts = new Set<ReloadPart>();
  for (const { table, key, spec } of ALL_SETTINGS) {
    if (sameValue((before as unknown as Values)[table]![key], (after as unknown as Values)[table]![key])) continue;
    const effect = effectOf(spec.reload, shape);
    if (typeof effect === "string") continue;
    for (const part of effect.rebuild) {
      if (hasPart(part, shape)) for (const containing of withContainers(part)) parts.add(containing);
    }
  }
  for (const { spec } of ALL_LISTS) {
    if (sameValue(listValue(before, spec), listValue(after, spec))) continue;
    const effect = effectOf(spec.reload, shape);
    if (typeof effect === "string") continue;
    for (const part of effect.rebuild) {
      if (hasPart(part, shape)) for (const containing of withContainers(part)) parts.add(containing);
    }
  }
  return parts;
}

/** Settings are primitives, lists of strings or lists of tables (tls.certificates, [[upstreams]]): equal when they
 * print the same. */
function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
}
