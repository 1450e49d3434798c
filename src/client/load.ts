// CLI entry of `bun run load`: parse flags, run, print progress (stderr) and the table or JSON (stdout).
import { LOAD_USAGE, LoadUsageError, parseLoadArgs, type LoadOptions } from "./options.ts";
import { formatHeader, formatProgress, formatReport } from "./report.ts";
import { runLoad } from "./run.ts";

/** Runs the CLI; resolves with the process exit code (0 ok, 1 the run failed, 2 bad command line). */
export async function loadMain(argv: readonly string[]): Promise<number> {
  let options: LoadOptions | null;
  try {
    options = parseLoadArgs(argv);
  } catch (error) {
    if (!(error instanceof LoadUsageError)) throw error;
    process.stderr.write(`load: ${error.message}\n\n${LOAD_USAGE}`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(LOAD_USAGE);
    return 0;
  }
  const showProgress = options.progress || process.stderr.isTTY === true;
  if (!options.json) process.stderr.write(`${formatHeader(options)}\n`);
  const report = await runLoad(options, {
    onProgress: showProgress ? (sample) => process.stderr.write(`${formatProgress(sample)}\n`) : undefined,
  });
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  if (report.failure === null) return 0;
  process.stderr.write(`load: ${report.failure}\n`);
  return 1;
}

if (import.meta.main) {
  process.exitCode = await loadMain(process.argv.slice(2));
}
