// The reload steps of one listener thread, the same in the main thread and in every I/O thread.
import { changedParts } from "../config/reload.ts";
import type { Listener, ServerContext } from "../context.ts";
import type { Logger, PreparedLogTarget } from "../log.ts";
import { NO_CHANGE, type PrepareStep } from "./two-phase.ts";

/**
 * A new log.file is opened first (a file that cannot be opened rejects the reload); the listener prepares what
 * `next.config` needs (a rejected prepare rejects the reload); at commit the log level (and its format and bound) and
 * the admission take the new configuration first (the listener's handler was built from the configuration, not the
 * admission), then the listener swaps in what it prepared.
 */
export function threadReloadSteps(listener: Listener, current: ServerContext, next: ServerContext): PrepareStep[] {
  const isNewLogFile = changedParts(current.config, next.config).has("log-file");
  return [
    () => (isNewLogFile ? prepareLogTarget(next.logger, next.config.log.file) : NO_CHANGE),
    () => ({
      commit() {
        next.logger.setLevel(next.config.log.level);
        next.logger.setFormat(next.config.log.format);
        next.logger.setMaxBufferedBytes(next.config.log.max_buffered_bytes);
        next.admission.reconfigure(next.config);
      },
      abort() {},
    }),
    () => listener.prepareReconfigure?.(next) ?? NO_CHANGE,
  ];
}

function prepareLogTarget(logger: Logger, file: string): PreparedLogTarget {
  try {
    return logger.prepareTarget(file);
  } catch (error) {
    throw new Error(`cannot open log.file "${file}" for appending (${(error as Error).message})`);
  }
}
