// `bun run bench`: runs every mitata microbenchmark in bench/micro/ (or those matching the arguments), one process each, in turn.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parseToolArgs } from "./cli.ts";

const MICRO_DIR = new URL("./micro/", import.meta.url).pathname;
const USAGE = `Usage: bun run bench [options] [name ...]

Runs bench/micro/*.bench.ts one after another (each in its own bun process) and prints mitata's tables.
A name selects the files whose name contains it (e.g. bun run bench arena frame).

Options:
  --core N       pin each benchmark to core N with taskset (steadier numbers on a busy machine)
  --timeout S    stop a benchmark that runs longer than S seconds and count it as failed (default 600)
  --list         print the benchmark files and exit
  -h, --help     this text
`;

async function main(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("bench", USAGE, {
    args: argv,
    options: {
      core: { type: "string" },
      timeout: { type: "string", default: "600" },
      list: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const timeoutSeconds = Number(values.timeout);
  if (!(timeoutSeconds > 0)) {
    process.stderr.write(`bench: --timeout must be a number of seconds > 0 (got "${values.timeout}")\n`);
    return 2;
  }
  const all = readdirSync(MICRO_DIR)
    .filter((name) => name.endsWith(".bench.ts"))
    .sort();
  const files =
    positionals.length === 0 ? all : all.filter((name) => positionals.some((wanted) => name.includes(wanted)));
  if (values.list) {
    for (const name of all) process.stdout.write(`${name}\n`);
    return 0;
  }
  if (files.length === 0) {
    process.stderr.write(`bench: no benchmark in bench/micro/ matches ${positionals.join(", ")}; --list shows them\n`);
    return 2;
  }

  const failed: string[] = [];
  for (const name of files) {
    const path = join(MICRO_DIR, name);
    const argv = values.core === undefined ? ["bun", path] : ["taskset", "-c", values.core, "bun", path];
    process.stdout.write(`\n## bench/micro/${name}\n\n`);
    const startedMs = performance.now();
    const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutSeconds * 1000);
    const exitCode = await proc.exited;
    clearTimeout(timer);
    const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
    if (exitCode !== 0) {
      failed.push(name);
      process.stderr.write(
        `bench: ${name} ${timedOut ? `ran past ${timeoutSeconds} s and was stopped` : `exited with code ${exitCode}`} after ${seconds} s\n`,
      );
    } else {
      process.stderr.write(`bench: ${name} done in ${seconds} s\n`);
    }
  }
  if (failed.length > 0) {
    process.stderr.write(`bench: ${failed.length} of ${files.length} benchmarks failed: ${failed.join(", ")}\n`);
    return 1;
  }
  return 0;
}

process.exitCode = await main(Bun.argv.slice(2));
