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
