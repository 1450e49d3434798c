// Start-up failures a person can act on: a port in use or not allowed, named with the setting that chose it.

/** An expected start-up failure (port in use, root missing): main prints each problem alone, no stack. */
export class StartupError extends Error {
  override readonly name = "StartupError";
  /** Each a line naming the setting and what to change. */
  readonly problems: readonly string[];

  constructor(problems: string | readonly string[]) {
    const list = typeof problems === "string" ? [problems] : problems;
    super(list.join("\n"));
    this.problems = list;
  }
}

/** Runs `start` (which binds `where`), turning the usual bind errors into a StartupError naming `setting`. */
export async function withListenErrors<T>(where: string, setting: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if (error instanceof StartupError) throw error; // already names its setting
    const code = (error as NodeJS.ErrnoException).code;
    const message = (error as Error).message ?? "";
    if (code === "EADDRINUSE" || /in use/i.test(message)) {
      throw new StartupError(
        `cannot listen on ${where}: address already in use — stop the other process or choose another port with ${setting}`,
      );
    }
    if (code === "EACCES" || /permission denied|EACCES/i.test(message)) {
      throw new StartupError(
        `cannot listen on ${where}: permission denied — ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another with ${setting}`,
      );
    }
    if (code === "EADDRNOTAVAIL" || /not available/i.test(message)) {
      throw new StartupError(
        `cannot listen on ${where}: address not available on this machine — check server.bind / admin.bind`,
      );
    }
    throw error;
  }
}
