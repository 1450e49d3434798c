// Stop signals in the CLI: one stop request delivered twice (the process group and `bun run`, which forwards SIGTERM)
// still drains; a second signal sent later exits at once.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const main = join(import.meta.dir, "../../src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "hps-signals-"));
const BIG_FILE_BYTES = 32 * 1024 * 1024;
writeFileSync(join(dir, "big.bin"), new Uint8Array(BIG_FILE_BYTES));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `bun src/main.ts` serving `dir` on a free loopback port; resolves once it listens, with its port. */
async function startCli() {
  const child = Bun.spawn(
    [
      "bun",
      main,
      "--port",
      "0",
      "--set",
      "server.bind=127.0.0.1",
      "--set",
      `http.root=${dir}`,
      "--set",
      "admin.enabled=false",
      "--set",
      "log.access_log=false",
    ],
    { cwd: dir, stdout: "ignore", stderr: "pipe" },
  );
  const reader = child.stderr.getReader();
  const decoder = new TextDecoder();
  let log = "";
  const deadline = Date.now() + 15_000;
  while (!/listening on 127\.0\.0\.1:\d+/.test(log) && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => null)]);
    if (chunk === null || chunk.done) break;
    log += decoder.decode(chunk.value, { stream: true });
  }
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(log)?.[1]);
  // The rest of the log, read to the end in the background.
  const rest = (async () => {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return log;
      log += decoder.decode(chunk.value, { stream: true });
    }
  })();
  return { child, port, log: () => rest };
}

/** A download of big.bin whose reader stops after the first bytes, keeping the response in flight. */
async function pausedDownload(port: number): Promise<{ socket: Socket; done: Promise<number> }> {
  const socket = connect({ host: "127.0.0.1", port });
  let received = 0;
  let paused = false;
  const { promise: started, resolve: onStart } = Promise.withResolvers<void>();
  const { promise: done, resolve: onDone } = Promise.withResolvers<number>();
  socket.on("data", (chunk: Buffer) => {
    received += chunk.length;
    if (!paused) {
      paused = true;
      socket.pause();
      onStart();
    }
  });
  socket.on("close", () => onDone(received));
  socket.on("error", () => onDone(received));
  socket.write("GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  await started;
  return { socket, done };
}

/** Whether the child is still running `ms` after now (it is draining). */
async function stillRunningAfter(child: { exited: Promise<number> }, ms: number): Promise<boolean> {
  return await Promise.race([child.exited.then(() => false), Bun.sleep(ms).then(() => true)]);
}

describe("stop signals", () => {
  test("the same SIGTERM delivered twice within moments is one stop request: the drain goes on, exit 0", async () => {
    const { child, port, log } = await startCli();
    try {
      expect(port).toBeGreaterThan(0);
      const download = await pausedDownload(port);
      // What a signal to the process group does under `bun run server`: it arrives directly, and forwarded a few
      // milliseconds later (two kill() calls in a row would be merged by the kernel into one delivery).
      child.kill("SIGTERM");
      await Bun.sleep(20);
      child.kill("SIGTERM");
      expect(await stillRunningAfter(child, 600)).toBe(true);
      download.socket.resume();
      expect(await download.done).toBeGreaterThan(BIG_FILE_BYTES);
      expect(await child.exited).toBe(0);
      expect(await log()).not.toContain("second SIGTERM");
    } finally {
      child.kill("SIGKILL");
    }
  }, 30_000);

  test("a second SIGTERM sent later exits at once, status 130", async () => {
    const { child, port, log } = await startCli();
    try {
      const download = await pausedDownload(port);
      child.kill("SIGTERM");
      expect(await stillRunningAfter(child, 600)).toBe(true);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(130);
      expect(await log()).toContain("second SIGTERM, exiting now");
      download.socket.destroy();
    } finally {
      child.kill("SIGKILL");
    }
  }, 30_000);
});
