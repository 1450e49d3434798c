// Server lifecycle: check, build the shared resources, start the listener for config.protocol, reload, drain on stop.
import type { Config } from "./config/schema.ts";
import { changedParts, planReload } from "./config/reload.ts";
import { createContext, type Listener, type ServerContext, type StopOptions } from "./context.ts";
import { startAdmin } from "./http/admin.ts";
import { applyFileDescriptorLimit } from "./host/fd-limit.ts";
import { removePidFile, writePidFile } from "./host/pid-file.ts";
import { startIoThreads } from "./io-thread.ts";
import type { Logger } from "./log.ts";
import { poolThreadsPerIoThread, startProtocolListener } from "./protocol-listener.ts";
import { threadReloadSteps } from "./reload/thread-steps.ts";
import { type PrepareStep, prepareAll } from "./reload/two-phase.ts";
import { StartupError, withListenErrors } from "./listen-errors.ts";
import { startupProblems, startupWarnings } from "./startup/checks.ts";
import { startReporter } from "./stats/report.ts";
import type { Stats } from "./stats/stats.ts";
import { CertificateSetError } from "./tls/certificate-set.ts";
import { expiryGauges, loadTlsState, logCertificates, sameTls, type TlsState } from "./tls/tls-state.ts";

export { StartupError } from "./listen-errors.ts";

/** What a configuration reload did: the changed settings, by name ("table.key"). */
export interface ReloadReport {
  /** Took effect for the requests and connections that follow. */
  readonly applied: string[];
  /** Read only at start: they keep their running values until the next start. */
  readonly needsRestart: string[];
  /** The certificate or key files (tls.enabled) read anew differ from the running ones: listeners serve the new ones. */
  readonly certificatesChanged: boolean;
}

export interface Server {
  /** The public port actually bound (config port 0 picks one). */
  readonly port: number;
  /** The admin port, or null when the admin listener is disabled. */
  readonly adminPort: number | null;
  readonly stats: Stats;
  readonly logger: Logger;
  /** The shared resources and the configuration running now (a reload replaces the configuration). */
  readonly context: ServerContext;
  /** false from the moment a graceful stop begins (/readyz answers 503). */
  isReady(): boolean;
  stop(options?: Partial<StopOptions>): Promise<void>;
  /** Reopens log.file and the access log by path (SIGHUP, after logrotate moved them). */
  reopenLogs(): Promise<void>;
  /**
   * Applies a newly loaded configuration (SIGHUP): admission, rate limits, the HTTP site and access log, the TCP
   * listener's options and limits, log level, report interval and shutdown timeout change at once; settings read only
   * at start (their reload rule in src/config/schema.ts) are reported and keep their running values. Rejects,
   * changing nothing, when a listener cannot take it (an unusable http.root, an access log that cannot be opened, an
   * I/O thread that fails) or the merged configuration is invalid. Reloads run one at a time.
   */
  reload(config: Config): Promise<ReloadReport>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Several I/O threads share the port through SO_REUSEPORT. */
function withThreadSettings(config: Config): Config {
  return config.server.io_threads > 1 ? { ...config, server: { ...config.server, reuse_port: true } } : config;
}

export async function startServer(requested: Config): Promise<Server> {
  const config = withThreadSettings(requested);
  const problems = await startupProblems(config);
  if (problems.length > 0) throw new StartupError(problems);
  const tls = await loadTlsAtStart(config);
  const { context, shared } = openContext(config, tls);
  const { stats, logger } = context;
  for (const warning of startupWarnings(config)) logger.warn(warning);
  applyFileDescriptorLimit(config, logger, context.gauges);
  if (tls !== null) logCertificates(logger, tls);

  const started: Array<{ stop(options: StopOptions): Promise<void> }> = [];
  const stopStarted = async (options: StopOptions) => {
    for (const resource of started.reverse()) await resource.stop(options).catch(() => {});
  };

  const ioThreadCount = config.server.io_threads;
  const poolThreads = ioThreadCount > 1 ? poolThreadsPerIoThread(config.pool.threads, ioThreadCount) : 0;
  let listener: Listener;
  let admin: Listener | null = null;
  try {
    // The fleet answers (or is known to be down) before the first connection is admitted.
    await context.fleet?.start();
    // Everything is bound before anything says it serves: a port in use fails the start with nothing claimed.
    listener = await listen(config, () => startProtocolListener(context, poolThreads));
    started.push(listener);
    const ioThreads =
      ioThreadCount > 1
        ? await startIoThreads(context, { port: listener.port, count: ioThreadCount - 1, poolThreads, shared })
        : null;
    if (ioThreads) started.push(ioThreads);
    let ready = true;
    if (config.admin.enabled) {
      admin = await listenAdmin(config, () => startAdmin(context, { isReady: () => ready }));
      started.push(admin);
    }
    const pidFile = config.server.pid_file;
    if (pidFile !== "") writeServerPidFile(pidFile);
    const reporter = startReporter(context);
    context.fleet?.publish(context, listener.port);
    const serving = config.server.protocol === "http" ? `, serving ${config.http.root}` : "";
    logger.info(
      `hps listening on ${config.server.bind}:${listener.port} (${config.server.protocol}${serving}` +
        (ioThreads ? `, ${ioThreadCount} I/O threads)` : ")") +
        (admin ? `, admin on ${config.admin.bind}:${admin.port}` : ""),
    );

    let current = context;
    context.gauges.set("tlsCertificateExpiry", () => expiryGauges(current.tls ?? null));
    let stopping: Promise<void> | null = null;
    const stop = (options: Partial<StopOptions> = {}) => {
      stopping ??= (async () => {
        ready = false;
        const full: StopOptions = {
          graceful: options.graceful ?? true,
          timeoutMs: options.timeoutMs ?? current.config.server.shutdown_timeout_s * 1000,
        };
        await Promise.all([listener.stop(full), ioThreads?.stop(full)]);
        await context.fleet?.stop();
        reporter.stop();
        if (admin) await admin.stop({ graceful: false, timeoutMs: 0 });
        if (pidFile !== "") removePidFile(pidFile);
        await logger.close();
      })();
      return stopping;
    };
    const applyReload = async (requestedNext: Config): Promise<ReloadReport> => {
      if (stopping !== null) throw new Error("the server is stopping");
      const plan = planReload(current.config, withThreadSettings(requestedNext));
      // The certificate files are read on every reload, whether or not the configuration changed (renewed in place).
      const nextTls = await loadTlsForReload(plan.config);
      const certificatesChanged = !sameTls(current.tls ?? null, nextTls);
      const report: ReloadReport = { applied: plan.applied, needsRestart: plan.needsRestart, certificatesChanged };
      if (plan.needsRestart.length > 0) {
        logger.warn(
          `configuration reload: changed but read only at start (running values kept until a restart): ${plan.needsRestart.join(", ")}`,
        );
      }
      if (plan.applied.length === 0 && !certificatesChanged) {
        logger.info("configuration reload: no setting that applies now has changed, nor the certificates");
        return report;
      }
      for (const setting of unappliedWarnings(plan.config, plan.applied)) logger.warn(setting);
      // Two phases (src/reload/two-phase.ts), in turn: this thread's parts, then every I/O thread, check and build what
      // the new configuration needs, changing nothing; only when all could does each swap it in, in this order.
      const next: ServerContext = { ...current, config: plan.config, tls: nextTls };
      const changed = changedParts(current.config, plan.config);
      const steps: PrepareStep[] = [
        ...threadReloadSteps(listener, current, next),
        () => ({
          commit() {
            current = next;
            if (changed.has("report-timer")) {
              reporter.reschedule(plan.config.stats.interval_s);
              context.fleet?.reschedule(plan.config.stats.interval_s);
            }
          },
          abort() {},
        }),
      ];
      // Last: the I/O threads commit after this thread (whose admission clears shared rate state, once).
      if (ioThreads !== null) steps.push(() => ioThreads.prepareReload(plan.config, nextTls));
      const prepared = await prepareAll(steps);
      if (stopping !== null) {
        await prepared.abort();
        throw new Error("the server is stopping");
      }
      await prepared.commit();
      if (certificatesChanged && nextTls !== null) {
        logCertificates(logger, nextTls);
        await admin?.applyTls?.(nextTls);
      }
      const what = [...plan.applied, ...(certificatesChanged ? ["the certificates"] : [])];
      logger.info(`configuration reloaded: ${what.join(", ")}`);
      return report;
    };
    let reloading: Promise<unknown> = Promise.resolve();
    const reload = (next: Config): Promise<ReloadReport> => {
      const run = reloading.then(() => applyReload(next));
      reloading = run.catch(() => {});
      return run;
    };

    return {
      port: listener.port,
      adminPort: admin?.port ?? null,
      stats,
      logger,
      get context() {
        return current;
      },
      isReady: () => ready,
      reload,
      stop,
      async reopenLogs() {
        // Each file on its own: one that cannot be reopened (its directory gone) does not keep the others from it.
        const failures: string[] = [];
        for (const reopen of [() => logger.reopen(), () => listener.reopenLogs?.(), () => ioThreads?.reopenLogs()]) {
          await Promise.resolve()
            .then(reopen)
            .catch((error: unknown) => void failures.push((error as Error).message));
        }
        if (failures.length > 0) throw new Error(failures.join("; "));
        logger.info("log files reopened");
      },
      [Symbol.asyncDispose]: () => stop({ graceful: false, timeoutMs: 0 }),
    };
  } catch (error) {
    await stopStarted({ graceful: false, timeoutMs: 0 });
    await context.fleet?.stop();
    await logger.close();
    throw error;
  }
}

/** Writes server.pid_file, naming the setting when it cannot. */
function writeServerPidFile(path: string): void {
  try {
    writePidFile(path);
  } catch (error) {
    throw new StartupError(
      `cannot write server.pid_file "${path}" (${(error as Error).message}): fix the path or its permissions, or leave it empty`,
    );
  }
}

/** Warnings for the settings a reload applies that this runtime cannot honour. */
function unappliedWarnings(config: Config, applied: readonly string[]): string[] {
  return startupWarnings(config).filter((warning) =>
    applied.some((name) => warning.startsWith(`setting not applied on this runtime: ${name} `)),
  );
}

/** The reload's new log.file, opened before anything changes: a path that cannot be opened rejects the reload. */
/** The certificates at start; every problem with them is a StartupError (nothing starts). */
async function loadTlsAtStart(config: Config): Promise<TlsState | null> {
  try {
    return await loadTlsState(config);
  } catch (error) {
    if (!(error instanceof CertificateSetError)) throw error;
    throw new StartupError(error.problems);
  }
}

/** The certificates for a reload; every problem rejects it (the running certificates stay), each named. */
async function loadTlsForReload(config: Config): Promise<TlsState | null> {
  try {
    return await loadTlsState(config);
  } catch (error) {
    if (!(error instanceof CertificateSetError)) throw error;
    throw new Error(`certificates not reloaded: ${error.problems.join("; ")}`);
  }
}

/** The main thread's context; a log.file that cannot be opened (after the check passed: a race) is a StartupError. */
function openContext(config: Config, tls: TlsState | null): ReturnType<typeof createContext> {
  try {
    return createContext(config, null, tls);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "EACCES" ? "permission denied" : (error as Error).message;
    throw new StartupError(
      `cannot open log.file "${config.log.file}" for appending (${reason}): fix the path or its permissions, or leave log.file empty for stderr`,
    );
  }
}

function listen<T>(config: Config, start: () => Promise<T>): Promise<T> {
  return withListenErrors(`${config.server.bind}:${config.server.port}`, "server.port / --port", start);
}

function listenAdmin<T>(config: Config, start: () => Promise<T>): Promise<T> {
  return withListenErrors(`${config.admin.bind}:${config.admin.port}`, "admin.port (or admin.enabled = false)", start);
}
