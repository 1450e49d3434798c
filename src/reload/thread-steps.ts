// The reload steps of one listener thread, the same in the main thread and in every I/O thread.
import type { Listener, ServerContext } from "../context.ts";
import { NO_CHANGE, type PrepareStep } from "./two-phase.ts";

/**
 * The listener prepares what `next.config` needs (a rejected prepare rejects the reload); at commit the log level
 * (and its format and bound) and the admission take the new configuration first (the listener's handler was built from the configuration, not
 * the admission), then the listener swaps in what it prepared.
 */
export function threadReloadSteps(listener: Listener, next: ServerContext): PrepareStep[] {
  return [
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
