// Where the thread entry points are, from source (`bun src/main.ts`) and from the compiled binary (`dist/hps`).
//
// This file sits in src/, beside main.ts, on purpose. Run from source, import.meta.url is this file, so the paths
// below are relative to src/. In the binary every module is bundled into main's chunk, whose import.meta.url is the
// root of the embedded file system, and the build (scripts/build.ts) lays out its entry points relative to their
// common directory, src/: the same relative paths name the same files in both cases. A module in a subfolder could
// not do this (its `./worker.ts` would name a file at the root of the binary), so every `new Worker` of hps takes
// its URL from here, and scripts/build.ts lists the same files as entry points.

/** Pool worker (src/pool/worker.ts). */
export const POOL_WORKER_URL = new URL("./pool/worker.ts", import.meta.url);
/** Extra I/O thread (src/io-thread.ts). */
export const IO_THREAD_URL = new URL("./io-thread.ts", import.meta.url);
/** Log writer thread (src/log/writer-thread.ts). */
export const LOG_WRITER_URL = new URL("./log/writer-thread.ts", import.meta.url);
/** Throwaway worker that loads custom.handlers at start-up (src/startup/handlers-probe-worker.ts). */
export const HANDLERS_PROBE_URL = new URL("./startup/handlers-probe-worker.ts", import.meta.url);

/** Source files of the entry points above, relative to the repository: the build compiles each into the binary. */
export const THREAD_ENTRY_FILES = [
  "src/pool/worker.ts",
  "src/io-thread.ts",
  "src/log/writer-thread.ts",
  "src/startup/handlers-probe-worker.ts",
] as const;
