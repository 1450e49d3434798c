// Loads the configuration: TOML file < environment (HPS_<TABLE>_<KEY>) < CLI (--set table.key=value), then validates.
import { checkKnownKeys } from "./known-keys.ts";
import { applyEnv, applySet } from "./overrides.ts";
import type { Config } from "./schema.ts";
import type { Origins, RawConfig } from "./setting-lookup.ts";
import { noteOrigins, parseFile, readText } from "./toml-file.ts";
import { validate } from "./validate.ts";

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
