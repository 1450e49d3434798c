// What start-up checks before it binds a port, in one list: startServer runs it and so does `--check`.
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { access, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { unappliedSettings } from "../config/print.ts";
import type { Config } from "../config/schema.ts";
import { rootProblem } from "../http/root.ts";
import { CertificateSetError } from "../tls/certificate-set.ts";
import { loadTlsState } from "../tls/tls-state.ts";
import { usedUpstreams } from "../upstream/upstreams.ts";
import { handlersProblem } from "./handlers-probe.ts";

/** Groups of [[upstreams]] the protocol running would never send to. */
function unusedUpstreams(config: Config): string[] {
  const used = new Set(usedUpstreams(config).map((group) => group.name));
  return config.upstreams.map((group) => group.name).filter((name) => !used.has(name));
}

/** One check of a configuration against the machine it is to run on (files, directories, modules). */
export interface StartupCheck {
  /** The settings it checks. */
  readonly settings: string;
  /** A problem (one line naming the setting and what to change), or null when there is none. */
  run(config: Config): Promise<string | null>;
}

/**
 * Every check start-up makes short of binding ports, in the order they run. A subsystem that needs one (TLS
 * certificates, upstream groups) adds it here: startServer and `--check` then both make it.
 */
export const STARTUP_CHECKS: readonly StartupCheck[] = [
  {
    settings: "http.root",
    run: async (config) => (config.server.protocol === "http" ? await rootProblem(config.http.root) : null),
  },
  {
    settings: "http.routes[].root",
    run: async (config) => {
      if (config.server.protocol !== "http") return null;
      for (const [index, route] of config.http.routes.entries()) {
        if (route.root === "") continue;
        const problem = await rootProblem(route.root);
        if (problem !== null) return problem.replaceAll("http.root", `http.routes[${index}].root`);
      }
      return null;
    },
  },
  {
    settings: "log.file",
    run: async (config) =>
      config.log.file === ""
        ? null
        : await appendProblem("log.file", config.log.file, "leave log.file empty for stderr"),
  },
  {
    settings: "log.access_file",
    run: async (config) =>
      config.server.protocol !== "http" || !config.log.access_log || config.log.access_file === ""
        ? null
        : await appendProblem("log.access_file", config.log.access_file, "leave it empty for stdout"),
  },
  {
    settings: "server.pid_file",
    run: async (config) => (config.server.pid_file === "" ? null : await pidFileProblem(config.server.pid_file)),
  },
  {
    // Every problem with the certificate files at once, one line each (src/tls/certificate-set.ts).
    settings: "tls.cert_file, tls.key_file, tls.ca_file, tls.certificates",
    run: async (config) => {
      try {
        await loadTlsState(config);
        return null;
      } catch (error) {
        if (error instanceof CertificateSetError) return error.problems.join("\n");
        throw error;
      }
    },
  },
  {
    settings: "custom.handlers",
    run: async (config) =>
      config.server.protocol === "custom" && config.custom.handlers !== ""
        ? await handlersProblem(config.custom.handlers)
        : null,
  },
];

/** The problems every start-up check finds in `config` (empty: it can start, ports permitting). */
export async function startupProblems(config: Config): Promise<string[]> {
  const problems: string[] = [];
  for (const check of STARTUP_CHECKS) {
    try {
      const problem = await check.run(config);
      if (problem !== null) problems.push(problem);
    } catch (error) {
      // What a check did not foresee (ELOOP, ENAMETOOLONG, EIO, ...) is still a problem with its setting, not a crash.
      problems.push(`${check.settings}: cannot be checked (${(error as Error).message})`);
    }
  }
  return problems;
}

/** What start-up warns about: settings this runtime cannot apply, and combinations that cannot work well. */
export function startupWarnings(config: Config): string[] {
  const warnings = unappliedSettings(config).map((setting) => `setting not applied on this runtime: ${setting}`);
  if (config.server.protocol === "custom" && config.limits.max_request_bytes > config.memory.arena_bytes) {
    warnings.push(
      `limits.max_request_bytes (${config.limits.max_request_bytes}) exceeds memory.arena_bytes (${config.memory.arena_bytes}): ` +
        "pool requests that large will always be answered busy; raise memory.arena_bytes or lower limits.max_request_bytes",
    );
  }
  const fleet = config.fleet;
  if (fleet.redis_url !== "" && !config.rate_limit.enabled && config.limits.max_connections_per_ip === 0) {
    warnings.push(
      "fleet.redis_url is set, but rate_limit.enabled is false and limits.max_connections_per_ip is 0: the fleet shares " +
        "only statistics; enable a limit to share it across instances",
    );
  }
  if (config.server.reuse_port && config.server.pid_file !== "" && readSysctl("net/ipv4/tcp_migrate_req") === "0") {
    warnings.push(
      "server.reuse_port with server.pid_file (an upgradable server): net.ipv4.tcp_migrate_req is 0, so a connection " +
        "still waiting in this process's accept queue when it stops listening is reset instead of handed to the " +
        "process sharing the port; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1, Linux 5.14 or later)",
    );
  }
  for (const unused of unusedUpstreams(config)) {
    warnings.push(
      `upstreams: ${unused} is not used (no http.routes entry names it${config.server.protocol === "tcp_proxy" ? " and proxy.upstream is another group" : ""}); it is not started`,
    );
  }
  return warnings;
}

/** A value under /proc/sys (trimmed), or null where it cannot be read. */
function readSysctl(name: string): string | null {
  try {
    return readFileSync(`/proc/sys/${name}`, "utf8").trim();
  } catch {
    return null;
  }
}

/** Why server.pid_file cannot be written: it is written to a temporary file in its directory, then renamed. */
async function pidFileProblem(file: string): Promise<string | null> {
  const cannot = (reason: string) =>
    `cannot write server.pid_file "${file}" (${reason}): fix the path or its permissions, or leave it empty`;
  if ((await stat(file).catch(() => null))?.isDirectory()) return cannot("it is a directory");
  return directoryProblem(dirname(file), cannot);
}

/** Why a new file cannot be made in `directory` (it must exist and be writable), said through `cannot`. */
async function directoryProblem(directory: string, cannot: (reason: string) => string): Promise<string | null> {
  try {
    if (!(await stat(directory)).isDirectory()) return cannot(`"${directory}" is not a directory`);
    await access(directory, constants.W_OK | constants.X_OK);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return cannot(`directory "${directory}" does not exist`);
    if (code === "EACCES" || code === "EPERM") return cannot(`permission denied in "${directory}"`);
    return cannot((error as Error).message);
  }
}

/**
 * Why `file` cannot be opened for appending, without creating it: an existing file must be writable, a new one
 * needs a writable directory.
 */
async function appendProblem(setting: string, file: string, alternative: string): Promise<string | null> {
  const cannot = (reason: string) =>
    `cannot open ${setting} "${file}" for appending (${reason}): fix the path or its permissions, or ${alternative}`;
  try {
    const info = await stat(file);
    if (info.isDirectory()) return cannot("it is a directory");
    await access(file, constants.W_OK);
    // A FIFO opens only while some process reads it (src/log/sink.ts refuses one without a reader).
    if (info.isFIFO()) closeSync(openSync(file, constants.O_WRONLY | constants.O_NONBLOCK));
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") return cannot("permission denied");
    if (code === "ENXIO") return cannot("it is a FIFO that no process has open for reading: start its reader first");
    if (code !== "ENOENT") return cannot((error as Error).message);
  }
  return directoryProblem(dirname(file), cannot);
}
