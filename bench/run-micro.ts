// `bun run bench`: runs every mitata microbenchmark in bench/micro/ (or those matching the arguments), one process each, in turn.
import { existsSync, readdirSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { childColorEnv, colorOutput, parseToolArgs } from "./cli.ts";

const MICRO_DIR = new URL("./micro/", import.meta.url).pathname;
const USAGE = `Usage: bun run bench [options] [name ...]

Runs bench/micro/*.bench.ts one after another (each in its own bun process) and prints mitata's tables.
A name selects the files whose name contains it (e.g. bun run bench arena frame); a path to a .bench.ts file
runs that file. Colours only on a terminal (NO_COLOR=1 turns them off, FORCE_COLOR=1 on).

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
  const paths = positionals
    .filter((wanted) => wanted.endsWith(".bench.ts") && existsSync(wanted))
    .map((p) => resolve(p));
  const names = positionals.filter((wanted) => !paths.includes(resolve(wanted)));
  const files = [
    ...(positionals.length === 0 ? all : all.filter((name) => names.some((wanted) => name.includes(wanted)))).map(
      (name) => join(MICRO_DIR, name),
    ),
    ...paths,
  ];
  if (values.list) {
    for (const name of all) process.stdout.write(`${name}\n`);
    return 0;
  }
  if (files.length === 0) {
    process.stderr.write(`bench: no benchmark in bench/micro/ matches ${positionals.join(", ")}; --list shows them\n`);
    return 2;
  }

  // the children write straight to our stdout: they colour it only when we would
  const env = childColorEnv(colorOutput(process.stdout));
  const failed: string[] = [];
  for (const path of files) {
    const name = basename(path);
    const argv = values.core === undefined ? ["bun", path] : ["taskset", "-c", values.core, "bun", path];
    process.stdout.write(`\n## ${relative(process.cwd(), path)}\n\n`);
    const startedMs = performance.now();
    const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "inherit", stderr: "inherit", env });
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
