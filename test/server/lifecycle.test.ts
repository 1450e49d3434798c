// Lifecycle: startServer handles, the bun run server CLI, start-up errors, signals (SIGTERM drain, SIGHUP log reopen).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { HpsClient } from "../../src/client/hps-client.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { testConfig, waitFor } from "../helpers/common.ts";

const repo = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "hps-lifecycle-"));
const BIG_FILE_BYTES = 48 * 1024 * 1024;
writeFileSync(join(dir, "index.html"), "<h1>hello</h1>");
const big = new Uint8Array(BIG_FILE_BYTES);
for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
writeFileSync(join(dir, "big.bin"), big);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `bun run server ...` in the repo; returns the child and a reader over its combined output. */
function spawnServer(args: string[], env: Record<string, string> = {}) {
  return Bun.spawn(["bun", "run", "server", ...args], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
}

/**
 * Ends a `bun run server` child for good. `bun run` forwards SIGTERM to the server it started but cannot forward
 * SIGKILL, which would leave the server running: so SIGTERM first, SIGKILL only if it does not exit.
 */
async function stopChild(child: ReturnType<typeof spawnServer>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
  if (!exited) child.kill("SIGKILL");
}

/** Reads a stream until `pattern` appears (or the stream ends / time runs out); returns all text read. */
async function readUntil(stream: ReadableStream<Uint8Array>, pattern: RegExp, timeoutMs: number): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    while (!pattern.test(text)) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const chunk = await Promise.race([reader.read(), Bun.sleep(remaining).then(() => null)]);
      if (chunk === null || chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

describe("startServer", () => {
  test("a server under `await using` serves and then stops cleanly", async () => {
    let port: number;
    {
      await using server = await startServer(testConfig({ http: { root: dir } }));
      port = server.port;
      expect(port).toBeGreaterThan(0);
      const response = await fetch(`http://127.0.0.1:${port}/`);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe("<h1>hello</h1>");
    }
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });

  test("echo answers on its own port 0", async () => {
    await using server = await startServer(testConfig({ server: { protocol: "echo" } }));
    const received: Uint8Array[] = [];
    const { promise, resolve } = Promise.withResolvers<void>();
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        data(_socket, chunk) {
          received.push(new Uint8Array(chunk));
          if (Buffer.concat(received).toString() === "ping") resolve();
        },
      },
    });
    socket.write("ping");
    await promise;
    socket.end();
  });

  test("a graceful stop keeps one deadline for the listener and the pool together", async () => {
    const server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        pool: { threads: 1 },
        custom: { handlers: join(import.meta.dir, "../fixtures", "pool-handlers.ts") },
      }),
    );
    const client = await HpsClient.connect("127.0.0.1", server.port);
    // 16 tasks of 250 ms on one worker: 4 s of work, far past the 1 s deadline.
    const answers = Array.from({ length: 16 }, () => client.request(0x87, new Uint8Array([250])).catch(() => null));
    await waitFor(() => server.stats.total(Counter.poolSubmitted) === 16, 5000, "tasks submitted");
    const startedMs = performance.now();
    await server.stop({ graceful: true, timeoutMs: 1000 });
    const elapsedMs = performance.now() - startedMs;
    expect(elapsedMs).toBeGreaterThanOrEqual(900);
    expect(elapsedMs).toBeLessThan(1800);
    await Promise.all(answers);
    client.close();
  });

  test("the port in use gives one clear error", async () => {
    await using first = await startServer(testConfig({ http: { root: dir } }));
    await expect(startServer(testConfig({ http: { root: dir }, server: { port: first.port } }))).rejects.toThrow(
      /cannot listen on 127\.0\.0\.1:\d+: address already in use/,
    );
  });

  test("a missing document root is refused before listening", async () => {
    await expect(startServer(testConfig({ http: { root: join(dir, "missing") } }))).rejects.toThrow(
      /http.root ".*missing" does not exist/,
    );
  });
});

describe("bun run server", () => {
  test("--check exits 0 for a valid configuration and 1 with the problems otherwise", async () => {
    const good = join(dir, "good.toml");
    writeFileSync(good, "[server]\nport = 9100\n");
    const ok = spawnServer(["--check", "--config", good]);
    expect(await ok.exited).toBe(0);
    expect(await new Response(ok.stdout).text()).toContain("configuration is valid");

    const bad = join(dir, "bad.toml");
    writeFileSync(bad, "[server]\nport = -3\n[limits]\nmax_conections = 1\n");
    const failed = spawnServer(["--check", "--config", bad]);
    expect(await failed.exited).toBe(1);
    const errors = await new Response(failed.stderr).text();
    expect(errors).toContain("server.port must be at least 0 (got -3)");
    expect(errors).toContain("did you mean limits.max_connections?");
    expect(errors).toContain("2 configuration problems");
  });

  test("--print-config prints the effective TOML with overrides applied", async () => {
    const child = spawnServer(
      ["--print-config", "--config", join(dir, "good.toml"), "--set", "limits.max_connections=77"],
      { HPS_SERVER_BIND: "127.0.0.1" },
    );
    expect(await child.exited).toBe(0);
    const text = await new Response(child.stdout).text();
    expect(text).toContain("port = 9100");
    expect(text).toContain("max_connections = 77");
    expect(text).toContain('bind = "127.0.0.1"');
  });

  test("--help lists the flags; an unknown flag exits 2", async () => {
    const help = spawnServer(["--help"]);
    expect(await help.exited).toBe(0);
    const text = await new Response(help.stdout).text();
    for (const flag of ["--config", "--set", "--port", "--protocol", "--check", "--print-config"])
      expect(text).toContain(flag);
    const wrong = spawnServer(["--frobnicate"]);
    expect(await wrong.exited).toBe(2);
  });

  test("a start-up failure prints one line and no stack trace", async () => {
    const child = spawnServer([
      "--set",
      `http.root=${join(dir, "nowhere")}`,
      "--port",
      "0",
      "--set",
      "admin.enabled=false",
    ]);
    expect(await child.exited).toBe(1);
    const errors = (await new Response(child.stderr).text()).trim();
    expect(errors.split("\n").filter((line) => line.startsWith("hps:"))).toHaveLength(1);
    expect(errors).toContain("does not exist");
    expect(errors).not.toContain("    at ");
  });

  test("a setting Bun cannot honour is named in the start-up log", async () => {
    const child = spawnServer([
      "--port",
      "0",
      "--set",
      `http.root=${dir}`,
      "--set",
      "admin.enabled=false",
      "--set",
      "server.bind=127.0.0.1",
      "--set",
      "tcp.cork=true",
      "--set",
      "server.backlog=2048",
    ]);
    try {
      const startup = await readUntil(child.stderr, /listening on/, 15_000);
      expect(startup).toContain("setting not applied on this runtime: tcp.cork = true");
      expect(startup).toContain("setting not applied on this runtime: server.backlog = 2048");
      expect(startup).not.toContain("tcp.recv_buffer_bytes");
    } finally {
      await stopChild(child);
    }
  });

  test("SIGHUP reopens log.file after it was moved away", async () => {
    const logPath = join(dir, "server.log");
    const child = spawnServer([
      "--port",
      "0",
      "--set",
      `http.root=${dir}`,
      "--set",
      "admin.enabled=false",
      "--set",
      "server.bind=127.0.0.1",
      "--set",
      `log.file=${logPath}`,
    ]);
    try {
      const { existsSync, readFileSync, renameSync } = await import("node:fs");
      const logSays = (text: string) => () => existsSync(logPath) && readFileSync(logPath, "utf8").includes(text);
      await waitFor(logSays("listening on"), 15_000, "the server to log that it listens");
      renameSync(logPath, `${logPath}.1`);
      child.kill("SIGHUP");
      await waitFor(logSays("log files reopened"), 10_000, "the reopened log file");
      expect(readFileSync(logPath, "utf8")).toContain("log files reopened");
      expect(readFileSync(`${logPath}.1`, "utf8")).toContain("listening on");
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    } finally {
      await stopChild(child);
    }
  });

  test("with I/O threads every thread logs to log.file, and SIGHUP makes each of them reopen it", async () => {
    const logPath = join(dir, "threads.log");
    // The server itself (not `bun run`, which writes a line of its own to stderr): its descriptors are looked at.
    const child = Bun.spawn(
      [
        process.execPath,
        join(repo, "src", "main.ts"),
        "--port",
        "0",
        "--set",
        `http.root=${dir}`,
        "--set",
        "admin.enabled=false",
        "--set",
        "server.bind=127.0.0.1",
        "--set",
        "server.io_threads=2",
        "--set",
        `log.file=${logPath}`,
      ],
      { cwd: repo, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    let stderr = "";
    void (async () => {
      for await (const chunk of child.stderr) stderr += new TextDecoder().decode(chunk);
    })();
    try {
      const { existsSync, readFileSync, readdirSync, readlinkSync, renameSync } = await import("node:fs");
      const logSays = (text: string) => () => existsSync(logPath) && readFileSync(logPath, "utf8").includes(text);
      await waitFor(logSays("listening on"), 15_000, "the server to log that it listens");
      // Each listener thread says at start that HTTP connections are not counted: both lines reach the file.
      await waitFor(
        () => readFileSync(logPath, "utf8").split("limits.max_connections_per_ip are not applied").length - 1 === 2,
        10_000,
        "the I/O thread's line in log.file",
      );
      expect(stderr).toBe("");
      renameSync(logPath, `${logPath}.1`);
      child.kill("SIGHUP");
      await waitFor(logSays("log files reopened"), 10_000, "the reopened log file");
      // No thread still holds the file that was moved away (logrotate may compress or delete it next).
      const open = readdirSync(`/proc/${child.pid}/fd`).map((fd) => {
        try {
          return readlinkSync(`/proc/${child.pid}/fd/${fd}`);
        } catch {
          return "";
        }
      });
      expect(open.filter((target) => target === `${logPath}.1`)).toEqual([]);
      expect(open.filter((target) => target === logPath).length).toBe(2);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    } finally {
      await stopChild(child);
    }
  });

  test("SIGTERM with a download in flight: the download completes and the exit code is 0", async () => {
    const child = spawnServer([
      "--port",
      "0",
      "--set",
      `http.root=${dir}`,
      "--set",
      "admin.enabled=false",
      "--set",
      "server.bind=127.0.0.1",
      "--set",
      "log.access_log=false",
    ]);
    try {
      const startup = await readUntil(child.stderr, /listening on 127\.0\.0\.1:(\d+)/, 15_000);
      const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(startup)?.[1]);
      expect(port).toBeGreaterThan(0);

      // A raw socket that stops reading after the first bytes keeps the response in flight while the signal arrives.
      const socket = connect({ host: "127.0.0.1", port });
      let head = Buffer.alloc(0);
      let bodyBytes = -1;
      let paused = false;
      const { promise: firstBytes, resolve: gotFirstBytes } = Promise.withResolvers<void>();
      const { promise: closed, resolve: onClose } = Promise.withResolvers<void>();
      socket.on("data", (chunk: Buffer) => {
        if (bodyBytes < 0) {
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf("\r\n\r\n");
          if (end >= 0) bodyBytes = head.length - end - 4;
        } else bodyBytes += chunk.length;
        if (bodyBytes >= 0 && !paused) {
          paused = true;
          socket.pause();
          gotFirstBytes();
        }
      });
      socket.on("close", () => onClose());
      socket.on("error", () => onClose());
      socket.write("GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      await firstBytes;
      child.kill("SIGTERM");
      // The drain must wait for the paused download: the process is still there a moment after the signal.
      const exitedEarly = await Promise.race([child.exited.then(() => true), Bun.sleep(300).then(() => false)]);
      expect(exitedEarly).toBe(false);
      socket.resume();
      await Promise.race([
        closed,
        Bun.sleep(20_000).then(() => Promise.reject(new Error(`download stalled at ${bodyBytes} bytes`))),
      ]);
      expect(head.toString("latin1").toLowerCase()).toContain(`content-length: ${BIG_FILE_BYTES}`);
      expect(bodyBytes).toBe(BIG_FILE_BYTES);
      expect(await child.exited).toBe(0);
    } finally {
      await stopChild(child);
    }
  });
});
