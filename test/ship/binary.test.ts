// The compiled binary (scripts/build.ts): run from an empty directory, its threads, a handlers module given by path,
// the dashboard and --version all work with nothing but the file itself.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../../package.json" with { type: "json" };
import { buildBinary } from "../../scripts/build.ts";
import { HpsClient } from "../../src/client/hps-client.ts";
import { gitCommit } from "../../src/version.ts";
import type { Snapshot } from "../../src/stats/snapshot.ts";
import { waitFor } from "../helpers/common.ts";
import { REPO_ROOT, startHpsProcess } from "../helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-binary-"));
const binary = join(dir, "bin", "hps");
/** The directory the binary runs in: nothing in it, no server.toml, no node_modules, no src/. */
const emptyDir = join(dir, "empty");
const handlersDir = join(dir, "handlers");
const siteDir = join(dir, "site");

beforeAll(async () => {
  mkdirSync(emptyDir);
  mkdirSync(handlersDir);
  mkdirSync(siteDir);
  copyFileSync(join(REPO_ROOT, "examples", "handlers.ts"), join(handlersDir, "handlers.ts"));
  writeFileSync(join(siteDir, "hello.txt"), "hello from the binary\n");
  // Defaults of `bun run build` (minify, bytecode): the binary the project ships.
  await buildBinary({ outfile: binary, minify: true, bytecode: true, sourcemap: false, target: null });
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE_ARGS = ["--set", "server.bind=127.0.0.1", "--port", "0", "--set", "admin.port=0", "--set", "log.level=info"];

test("--version names the package version, the Bun inside and the commit the binary was built from", async () => {
  const result = Bun.spawnSync([binary, "--version"], { cwd: emptyDir });
  expect(result.exitCode).toBe(0);
  const text = result.stdout.toString();
  expect(text).toMatch(
    new RegExp(
      `^hps ${packageJson.version}\nBun ${Bun.version}\ncommit ${gitCommit()}\nbuilt \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\n$`,
    ),
  );
});

describe("custom protocol from the binary", () => {
  test("pool workers, I/O threads and a handlers module given by path serve frames; the dashboard and /events work", async () => {
    await using server = await startHpsProcess({
      command: [binary],
      args: [
        ...BASE_ARGS,
        "--protocol",
        "custom",
        "--set",
        "server.io_threads=2",
        "--set",
        "pool.threads=2",
        "--set",
        `custom.handlers=${join(handlersDir, "handlers.ts")}`,
      ],
      cwd: emptyDir,
    });
    const payload = new TextEncoder().encode("three little words");
    // Several connections: the kernel spreads them over both I/O threads (each with its own pool).
    const clients = await Promise.all(Array.from({ length: 6 }, () => HpsClient.connect("127.0.0.1", server.port)));
    try {
      for (const client of clients) {
        const hash = await client.request(0x02, payload, { timeoutMs: 10_000 });
        expect(hash.status).toBe(0);
        expect(Buffer.from(hash.payload).toString("hex")).toBe(
          new Bun.CryptoHasher("sha256").update(payload).digest("hex"),
        );
        const words = await client.request(0x80, payload, { timeoutMs: 10_000 });
        expect(words.status).toBe(0);
        expect(new DataView(words.payload.buffer, words.payload.byteOffset).getUint32(0)).toBe(3);
      }
    } finally {
      for (const client of clients) client.close();
    }

    const admin = `http://127.0.0.1:${server.adminPort}`;
    const page = await fetch(`${admin}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain(`new EventSource("events")`);
    const events = await fetch(`${admin}/events`);
    const reader = events.body!.getReader();
    let text = "";
    while (!text.includes("\n\n", text.indexOf("data: "))) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    const data = JSON.parse(text.slice(text.indexOf("data: ") + 6, text.indexOf("\n\n", text.indexOf("data: "))));
    expect(data.counters.poolCompleted).toBeGreaterThanOrEqual(12);
    expect(await server.stop("SIGTERM")).toBe(0);
  }, 60_000);
});

test("http from the binary: a root given by path, the JSON access log on stdout", async () => {
  await using server = await startHpsProcess({
    command: [binary],
    args: [...BASE_ARGS, "--set", `http.root=${siteDir}`, "--set", "log.access_format=json"],
    cwd: emptyDir,
  });
  const response = await fetch(`http://127.0.0.1:${server.port}/hello.txt`, {
    headers: { "User-Agent": "binary-test" },
  });
  expect(await response.text()).toBe("hello from the binary\n");
  expect(await server.stop("SIGTERM")).toBe(0);
  const line = JSON.parse(server.stdout().trim().split("\n").at(-1)!);
  expect(line).toMatchObject({ method: "GET", path: "/hello.txt", status: 200, user_agent: "binary-test" });
}, 60_000);

test("bun:ffi from the binary: READY=1 reaches $NOTIFY_SOCKET and RLIMIT_NOFILE is read (fileDescriptors in /stats)", async () => {
  const socketPath = join(dir, "notify.sock");
  const receiver = Bun.spawn(["socat", "-u", `UNIX-RECV:${socketPath}`, "-"], { stdout: "pipe" });
  let received = "";
  void (async () => {
    for await (const chunk of receiver.stdout) received += new TextDecoder().decode(chunk);
  })();
  try {
    await waitFor(() => existsSync(socketPath), 5000, "socat's socket");
    const quoted = [binary, ...BASE_ARGS, "--protocol", "echo"].map((arg) => `'${arg}'`).join(" ");
    await using server = await startHpsProcess({
      command: ["sh", "-c", `ulimit -Sn 1024 && ulimit -Hn 4096 && exec ${quoted}`],
      args: [],
      cwd: emptyDir,
      env: { NOTIFY_SOCKET: socketPath },
    });
    await waitFor(() => received.includes("READY=1"), 5000, "READY=1");
    expect(received).toContain(`MAINPID=${server.pid}`);
    const stats = (await (await fetch(`http://127.0.0.1:${server.adminPort}/stats`)).json()) as Snapshot;
    expect(stats.gauges.fileDescriptors?.hardLimit).toBe(4096);
  } finally {
    receiver.kill();
  }
}, 60_000);
