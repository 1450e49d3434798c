// hps as a separate process (from source or the compiled binary): start it, read its log, signal it, stop it.
import type { Subprocess } from "bun";
import { join } from "node:path";

export const REPO_ROOT = join(import.meta.dir, "..", "..");
/** `bun src/main.ts`: hps run from source. */
export const SOURCE_COMMAND = [process.execPath, join(REPO_ROOT, "src", "main.ts")];

export interface HpsProcessOptions {
  /** The program and its first arguments (SOURCE_COMMAND, or the binary's path). */
  command: readonly string[];
  /** hps options: --set, --config, --port ... */
  args: readonly string[];
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** How long start-up may take before the start rejects. */
  startTimeoutMs?: number;
}

export interface HpsProcess extends AsyncDisposable {
  readonly process: Subprocess<"ignore", "pipe", "pipe">;
  readonly pid: number;
  /** The public port (from the "hps listening on" line). */
  readonly port: number;
  /** The admin port, or null when the admin listener is off. */
  readonly adminPort: number | null;
  /** Everything written to stderr (the server log) so far. */
  stderr(): string;
  /** Everything written to stdout (the access log) so far. */
  stdout(): string;
  /** Resolves with the first match of `pattern` in stderr (waiting for it); rejects after timeoutMs. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` and waits for the process to exit; resolves with its exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number>;
}

/** Collects a stream's text and lets callers wait for a pattern in it. */
class TextTap {
  text = "";
  private waiters: Array<() => void> = [];
  constructor(stream: ReadableStream<Uint8Array>) {
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this.text += decoder.decode(chunk, { stream: true });
        for (const waiter of this.waiters) waiter();
      }
    })();
  }

  wait(pattern: RegExp, timeoutMs: number, exited: Promise<number>, what: string): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const match = pattern.exec(this.text);
        if (match === null) return false;
        cleanup();
        resolve(match);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern} in ${what}:\n${this.text}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((waiter) => waiter !== onText);
      };
      const onText = () => void check();
      if (check()) return;
      this.waiters.push(onText);
      void exited.then((code) => {
        // Give the last chunk of output a moment to arrive through the pipe before giving up.
        setTimeout(() => {
          if (check()) return;
          cleanup();
          reject(new Error(`hps exited (code ${code}) before ${pattern} appeared in ${what}:\n${this.text}`));
        }, 100);
      });
    });
  }
}

const LISTENING = /hps listening on [^\s]+?:(\d+) \([^)]*\)(?:, admin on [^\s]+?:(\d+))?/;

/** Starts hps and resolves once it logged "hps listening" (its ports); rejects with its output if it does not. */
export async function startHpsProcess(options: HpsProcessOptions): Promise<HpsProcess> {
  const child = Bun.spawn([...options.command, ...options.args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const err = new TextTap(child.stderr);
  const out = new TextTap(child.stdout);
  const exited = child.exited;
  let match: RegExpMatchArray;
  try {
    match = await err.wait(LISTENING, options.startTimeoutMs ?? 15_000, exited, "stderr");
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const stop = async (signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<number> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`hps did not exit within ${timeoutMs} ms of ${signal}:\n${err.text}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([exited, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    process: child,
    pid: child.pid,
    port: Number(match[1]),
    adminPort: match[2] === undefined ? null : Number(match[2]),
    stderr: () => err.text,
    stdout: () => out.text,
    waitForLog: (pattern, timeoutMs = 10_000) => err.wait(pattern, timeoutMs, exited, "stderr"),
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop("SIGKILL").catch(() => {});
    },
  };
}
