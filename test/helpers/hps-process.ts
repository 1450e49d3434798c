// hps as a separate process (bun src/main.ts), as a fleet runs it: its ports from its log, its log kept, stopped by PID.
import type { Subprocess } from "bun";
import { join } from "node:path";
import { waitFor } from "./common.ts";

const REPO = join(import.meta.dir, "../..");
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export interface HpsProcess {
  readonly pid: number;
  readonly port: number;
  /** The admin port (admin.enabled is on: port 0, loopback). */
  readonly adminPort: number;
  /** Everything written to stderr so far (the log). */
  log(): string;
  /** SIGTERM (a graceful stop); SIGKILL after STOP_TIMEOUT_MS. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts `bun src/main.ts` in the repository (so with its server.toml: the defaults) on 127.0.0.1 (public and admin
 * ports 0), with `sets` (TABLE.KEY=VALUE) on top of settings for tests (no access log, no periodic report);
 * resolves once it logged both ports.
 */
export async function startHpsProcess(sets: readonly string[]): Promise<HpsProcess> {
  const base = [
    "server.bind=127.0.0.1",
    "server.port=0",
    "admin.enabled=true",
    "admin.bind=127.0.0.1",
    "admin.port=0",
    "log.access_log=false",
    "log.level=info",
    "stats.interval_s=0",
    "pool.threads=1",
  ];
  const child: Subprocess<"ignore", "ignore", "pipe"> = Bun.spawn(
    ["bun", join(REPO, "src/main.ts"), ...[...base, ...sets].flatMap((set) => ["--set", set])],
    { cwd: REPO, stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  let text = "";
  // Read all along so the child never blocks on a full pipe.
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(STOP_TIMEOUT_MS).then(() => false)]);
    if (!exited) {
      child.kill("SIGKILL");
      await child.exited;
    }
  };
  const listening = /hps listening on 127\.0\.0\.1:(\d+) .*admin on 127\.0\.0\.1:(\d+)/;
  try {
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`hps exited with ${child.exitCode}:\n${text}`);
        return listening.test(text);
      },
      START_TIMEOUT_MS,
      "hps to log its ports",
    );
  } catch (error) {
    await stop();
    throw error;
  }
  const match = listening.exec(text)!;
  const process: HpsProcess = {
    pid: child.pid,
    port: Number(match[1]),
    adminPort: Number(match[2]),
    log: () => text,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return process;
}

/** Reads one metric's value from an instance's /metrics (NaN when it is not there). */
export async function metric(adminPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}
