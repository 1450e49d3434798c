// Command-line parsing shared by the benchmark tools: one place for the usage-error and --help answers.
import { parseArgs, type ParseArgsConfig } from "node:util";

export type ParsedArgs<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>;

/**
 * parseArgs, with the tools' common answers: a usage error prints `tool: message` and the usage to stderr and gives
 * exit code 2; `--help` (when the options define it) prints the usage to stdout and gives 0. Otherwise the result.
 */
export function parseToolArgs<T extends ParseArgsConfig>(
  tool: string,
  usage: string,
  config: T,
): ParsedArgs<T> | number {
  let parsed: ParsedArgs<T>;
  try {
    parsed = parseArgs(config);
  } catch (error) {
    process.stderr.write(`${tool}: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  if ((parsed.values as Record<string, unknown>).help === true) {
    process.stdout.write(usage);
    return 0;
  }
  return parsed;
}

/**
 * Whether output to `stream` gets ANSI colours: FORCE_COLOR forces them (unless "0" or "false"), a non-empty NO_COLOR
 * turns them off (https://no-color.org), and otherwise only a terminal gets them, never a file or a pipe.
 */
export function colorOutput(
  stream: { isTTY?: boolean },
  env: Record<string, string | undefined> = process.env,
): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== "") return force !== "0" && force !== "false";
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  return stream.isTTY === true;
}

/**
 * The environment for a child whose output goes where ours does, carrying our colour decision in the words children
 * read: mitata colours unless NO_COLOR is set (whatever the terminal), and takes any FORCE_COLOR, even "0", as yes.
 */
export function childColorEnv(
  colors: boolean,
  env: Record<string, string | undefined> = process.env,
): Record<string, string | undefined> {
  const { FORCE_COLOR: _force, NO_COLOR: _no, ...rest } = env;
  return colors ? { ...rest, FORCE_COLOR: "1" } : { ...rest, NO_COLOR: "1" };
}
