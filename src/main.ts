// CLI entry for `bun run server` and `hps`: parse argv, load the configuration, start, stop on signals; `hps upgrade`.
import { parseArgs } from "node:util";
import { ConfigError, type LoadedConfig, readConfig, type SetOverride } from "./config/load.ts";
import { configToToml } from "./config/print.ts";
import { notifyServiceManager } from "./host/notify.ts";
import { DEFAULT_PROBE_URL, probe } from "./probe.ts";
import { type Server, StartupError, startServer } from "./server.ts";
import { startupProblems, startupWarnings } from "./startup/checks.ts";
import { parseUpgradeArgs, runUpgrade, selfCommand, UPGRADE_HELP } from "./upgrade.ts";
import { describeCertificate } from "./tls/certificate-pair.ts";
import { certificatesOf } from "./tls/certificate-set.ts";
import { loadTlsState } from "./tls/tls-state.ts";
import { versionText } from "./version.ts";

const HELP = `hps — a Bun-native high-performance server (HTTP static files, echo, HPS/1)

Usage: hps [options]                           start the server (from source: bun run server [options])
       hps upgrade --pid-file PATH [options]   start a new hps beside the running one, then drain the old one
                                               (hps upgrade --help for the steps)
       hps probe [URL]                         GET URL (default ${DEFAULT_PROBE_URL}); exit 0 on 2xx

Options:
  --config PATH        configuration file (default: server.toml if it exists, else built-in defaults)
  --set TABLE.KEY=VAL  override one setting; repeatable (e.g. --set limits.max_connections=500)
  --port N             shorthand for --set server.port=N
  --protocol P         shorthand for --set server.protocol=P (http, echo, custom, tcp_proxy)
  --check              make every check start-up makes short of binding ports (the settings, http.root, the
                       log files, the custom.handlers module, the [tls] certificate files), say which file was
                       read, exit 0 (ready) or 1
  --print-config       print the effective configuration as TOML and exit
  -v, --version        print the versions of hps and Bun and the git commit, and exit
  -h, --help           show this help

Values: sizes take units ("16 MiB", "64k"); durations (settings ending in _s, _ms, _us) take a number in the
        setting's unit or a duration ("500ms", "10s", "2m", "1h").
Environment: HPS_<TABLE>_<KEY>=value overrides the file (e.g. HPS_SERVER_PORT=9000); --set overrides both.
Signals: SIGINT/SIGTERM drain in-flight work (server.shutdown_timeout_s) and exit 0; a second signal exits at once.
         SIGHUP reopens log.file and log.access_file (for logrotate), then reloads the configuration from the same
         file, environment and options. Each setting reloads as docs/configuration.md says (at once, for new
         connections, or at the next restart, which a warning names); the [tls] certificate files are read again
         (new connections get the new ones); a configuration or certificate with problems is rejected and the
         running one kept.
Service managers: with $NOTIFY_SOCKET set (systemd Type=notify), READY=1 is sent once the server listens,
         RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 when a drain begins.
`;

/**
 * A stop signal this soon after the first is the same request arriving twice: a signal to the process group (systemd's
 * default KillMode, `timeout`, `kill -TERM -PGID`) reaches the server directly and again through `bun run server`,
 * which forwards SIGTERM. Only a later one means "exit at once".
 */
const DUPLICATE_SIGNAL_MS = 250;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === "upgrade") return await upgrade(argv.slice(1));
  if (argv[0] === "probe") {
    const result = await probe(argv[1] ?? DEFAULT_PROBE_URL);
    (result.code === 0 ? process.stdout : process.stderr).write(`${result.line}\n`);
    return result.code;
  }
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        set: { type: "string", multiple: true },
        port: { type: "string" },
        protocol: { type: "string" },
        check: { type: "boolean" },
        "print-config": { type: "boolean" },
        version: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    process.stderr.write(`hps: ${(error as Error).message}\nRun with --help for the options.\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.version) {
    process.stdout.write(versionText());
    return 0;
  }

  const sets: SetOverride[] = [...(args.set ?? [])];
  if (args.port !== undefined) sets.push({ assignment: `server.port=${args.port}`, given: `--port ${args.port}` });
  if (args.protocol !== undefined)
    sets.push({ assignment: `server.protocol=${args.protocol}`, given: `--protocol ${args.protocol}` });

  const configPath = args.config ?? "server.toml";
  const read = () => readConfig({ configPath, requireFile: args.config !== undefined, env: process.env, sets });
  const load = async () => (await read()).config;
  let loaded: LoadedConfig;
  try {
    loaded = await read();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) process.stderr.write(`${problem}\n`);
    process.stderr.write(
      `hps: ${error.problems.length} configuration problem${error.problems.length === 1 ? "" : "s"}; nothing started.\n`,
    );
    return 1;
  }

  const config = loaded.config;
  if (args.check) return await check(loaded, configPath);
  if (args["print-config"]) {
    process.stdout.write(configToToml(config));
    return 0;
  }

  let server: Server;
  try {
    server = await startServer(config);
  } catch (error) {
    if (error instanceof StartupError) {
      for (const problem of error.problems) process.stderr.write(`hps: ${problem}\n`);
      return 1;
    }
    throw error;
  }

  const notify = (fields: string[]): void => {
    try {
      notifyServiceManager(fields);
    } catch (error) {
      server.logger.warn((error as Error).message);
    }
  };
  const { protocol, bind } = server.context.config.server;
  const status = `STATUS=serving ${protocol} on ${bind}:${server.port}`;
  notify(["READY=1", `MAINPID=${process.pid}`, status]);

  return await new Promise<number>((resolve) => {
    let stopping = false;
    let stopSignalMs = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // The same request delivered twice, not a person asking to exit at once (see DUPLICATE_SIGNAL_MS).
        if (performance.now() - stopSignalMs < DUPLICATE_SIGNAL_MS) return;
        process.stderr.write(`hps: second ${signal}, exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      stopSignalMs = performance.now();
      notify(["STOPPING=1", "STATUS=draining"]);
      const shutdownTimeoutS = server.context.config.server.shutdown_timeout_s;
      server.logger.info(`${signal} received: draining (up to ${shutdownTimeoutS} s); send it again to exit at once`);
      server
        .stop({ graceful: true, timeoutMs: shutdownTimeoutS * 1000 })
        .then(() => resolve(0))
        .catch((error: unknown) => {
          process.stderr.write(`hps: error during shutdown: ${(error as Error).message}\n`);
          resolve(1);
        });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    let hangups = Promise.resolve();
    process.on("SIGHUP", () => {
      // One after another: a second SIGHUP during a reload reloads again afterwards.
      hangups = hangups
        .then(async () => {
          if (stopping) return;
          notify(["RELOADING=1", "STATUS=reloading"]);
          await server
            .reopenLogs()
            .catch((error: unknown) =>
              server.logger.error(`SIGHUP: cannot reopen log files: ${(error as Error).message}`),
            );
          let next;
          try {
            next = await load();
          } catch (error) {
            if (!(error instanceof ConfigError)) throw error;
            for (const problem of error.problems) server.logger.error(`SIGHUP: ${problem}`);
            server.logger.error("SIGHUP: configuration rejected; the running configuration is kept");
            return;
          }
          await server.reload(next).catch((error: unknown) => {
            server.logger.error(
              `SIGHUP: configuration not applied (${(error as Error).message}); the running configuration is kept`,
            );
          });
        })
        .catch((error: unknown) => server.logger.error(`SIGHUP: ${(error as Error).message}`))
        .finally(() => {
          if (!stopping) notify(["READY=1", status]);
        });
    });
  });
}

/**
 * `--check`: the start-up checks on a loaded configuration. Problems go to stderr (exit 1); warnings too (exit 0);
 * stdout says which file was read, or that there was none.
 */
async function check(loaded: LoadedConfig, configPath: string): Promise<number> {
  const problems = await startupProblems(loaded.config);
  for (const problem of problems) process.stderr.write(`${problem}\n`);
  if (problems.length > 0) {
    process.stderr.write(
      `hps: ${problems.length} start-up problem${problems.length === 1 ? "" : "s"}; the server would not start.\n`,
    );
    return 1;
  }
  for (const warning of startupWarnings(loaded.config)) process.stderr.write(`warning: ${warning}\n`);
  // What the certificates say about themselves (the check above has read them).
  const tls = await loadTlsState(loaded.config);
  if (tls !== null) {
    for (const { serverName, pair } of certificatesOf(tls.certificates)) {
      const which = serverName === "" ? "default certificate" : `certificate for ${serverName}`;
      process.stdout.write(`${which} (${pair.source.certFile}): ${describeCertificate(pair.summary)}\n`);
    }
    for (const warning of tls.certificates.warnings) process.stderr.write(`warning: ${warning}\n`);
  }
  const overrides = loaded.overrides.length > 0 ? ` (with ${loaded.overrides.join(", ")})` : "";
  if (loaded.file === null) {
    process.stdout.write(`no ${configPath} found; using the defaults${overrides}\nconfiguration is valid\n`);
  } else {
    process.stdout.write(`${loaded.file}: configuration is valid${overrides}\n`);
  }
  return 0;
}

/** `hps upgrade`: see src/upgrade.ts. */
async function upgrade(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(UPGRADE_HELP);
    return 0;
  }
  let parsed;
  try {
    parsed = parseUpgradeArgs(argv);
  } catch (error) {
    process.stderr.write(`hps upgrade: ${(error as Error).message}\nRun hps upgrade --help for the options.\n`);
    return 2;
  }
  return await runUpgrade({
    ...parsed,
    command: selfCommand(),
    say: (line) => process.stderr.write(`${line}\n`),
  });
}

process.exit(await main(Bun.argv.slice(2)));
