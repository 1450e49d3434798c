// Bench-only launcher: hps's custom protocol with HASH run inline on the I/O thread (no pool). Usage: bun bench/baselines/hps-custom-inline.ts [--config PATH] [--set table.key=value ...]
// The same listener, codec and admission as `bun run server --protocol custom`; only the OpRunner differs, so the pair measures the pool.
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Admission } from "../../src/net/admission.ts";
import { Stats } from "../../src/stats/stats.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";

const args = parseArgs({
  args: Bun.argv.slice(2),
  options: { config: { type: "string" }, set: { type: "string", multiple: true } },
  strict: true,
}).values;

let config;
try {
  config = await loadConfig({
    configPath: args.config ?? "server.toml",
    requireFile: args.config !== undefined,
    env: process.env,
    sets: [...(args.set ?? []), "server.protocol=custom"],
  });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  for (const problem of error.problems) process.stderr.write(`${problem}\n`);
  process.exit(1);
}

const logger = new Logger({ level: config.log.level, file: config.log.file });
const stats = Stats.create();
const gauges = new Map<string, () => Record<string, number>>();
const context: ServerContext = { config, stats, logger, gauges, admission: new Admission(config, stats, gauges) };
const listener = await startTcp(context, new InlineRunner());
logger.info(`hps-custom-inline listening on ${config.server.bind}:${listener.port} (HASH inline, no pool)`);

const stop = (): void => {
  void listener.stop({ graceful: false, timeoutMs: 0 }).then(async () => {
    await logger.close();
    process.exit(0);
  });
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
