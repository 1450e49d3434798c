// `bun run build`: compiles hps into one executable, dist/hps (Bun runtime included), with its thread entry points.
//
// Usage: bun scripts/build.ts [--outfile PATH] [--no-minify] [--no-bytecode] [--sourcemap] [--target bun-linux-arm64]
// The defaults are the flags measured best for size and start-up time (docs/deployment.md, "Run the binary").
import { statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { parseArgs } from "node:util";
import { THREAD_ENTRY_FILES } from "../src/entry-points.ts";
import { gitCommit } from "../src/version.ts";

const ROOT = dirname(import.meta.dir);
const MAIN_ENTRY = "src/main.ts";

export interface BuildOptions {
  readonly outfile: string;
  readonly minify: boolean;
  readonly bytecode: boolean;
  readonly sourcemap: boolean;
  /** A Bun compile target such as bun-linux-arm64; null for this machine. */
  readonly target: string | null;
}

export interface BuildResult {
  readonly outfile: string;
  readonly sizeBytes: number;
  readonly commit: string;
  readonly seconds: number;
}

/** Compiles the binary; throws with Bun's messages when the build fails. */
export async function buildBinary(options: BuildOptions): Promise<BuildResult> {
  const entrypoints = [MAIN_ENTRY, ...THREAD_ENTRY_FILES];
  // src/entry-points.ts finds the threads at the same paths relative to main in the binary as in src/: that holds
  // only while every entry point is under src/ and main.ts is at its top, so the common root of the bundle is src/.
  for (const entry of entrypoints) {
    if (!entry.startsWith("src/")) throw new Error(`build: entry point ${entry} must be under src/`);
  }
  // A build without .git (a container's build context) is told its commit through HPS_BUILD_COMMIT.
  const commit = process.env.HPS_BUILD_COMMIT || gitCommit();
  const epochSeconds = Number(process.env.SOURCE_DATE_EPOCH);
  const builtAt = new Date(Number.isFinite(epochSeconds) ? epochSeconds * 1000 : Date.now()).toISOString();
  const startedMs = performance.now();
  const result = await Bun.build({
    entrypoints: entrypoints.map((entry) => join(ROOT, entry)),
    compile: {
      outfile: options.outfile,
      ...(options.target === null ? {} : { target: options.target as Bun.Build.CompileTarget }),
      // A server must not change behaviour with the directory it is started in: no .env or bunfig.toml from there.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
    // ESM: hps uses top-level await (the default format for bytecode is CommonJS, which cannot have it).
    format: "esm",
    minify: options.minify,
    bytecode: options.bytecode,
    sourcemap: options.sourcemap ? "linked" : "none",
    define: { HPS_BUILD_COMMIT: JSON.stringify(commit), HPS_BUILD_TIME: JSON.stringify(builtAt) },
    throw: false,
  });
  if (!result.success) {
    throw new Error(`build failed:\n${result.logs.map((log) => String(log)).join("\n")}`);
  }
  return {
    outfile: options.outfile,
    sizeBytes: statSync(options.outfile).size,
    commit,
    seconds: (performance.now() - startedMs) / 1000,
  };
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      outfile: { type: "string", default: join(ROOT, "dist", "hps") },
      "no-minify": { type: "boolean" },
      "no-bytecode": { type: "boolean" },
      sourcemap: { type: "boolean" },
      target: { type: "string" },
    },
    strict: true,
  });
  const built = await buildBinary({
    outfile: values.outfile,
    minify: !values["no-minify"],
    bytecode: !values["no-bytecode"],
    sourcemap: values.sourcemap ?? false,
    target: values.target ?? null,
  });
  const where = relative(process.cwd(), built.outfile) || built.outfile;
  process.stdout.write(
    `built ${where}: ${(built.sizeBytes / 1024 / 1024).toFixed(1)} MiB, commit ${built.commit}, ${built.seconds.toFixed(1)} s\n`,
  );
  return 0;
}

if (import.meta.main) {
  try {
    process.exit(await main(Bun.argv.slice(2)));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  }
}
