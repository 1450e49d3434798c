// Two-phase reloads: prepareAll commits every part in order or none, and a reload one part refuses changes nothing on
// any I/O thread.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configSchema, type ConfigOverrides } from "../../src/config/schema.ts";
import { createContext } from "../../src/context.ts";
import { startIoThreads } from "../../src/io-thread.ts";
import { startProtocolListener } from "../../src/protocol-listener.ts";
import { type PreparedChange, type PrepareStep, prepareAll } from "../../src/reload/two-phase.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { testConfig } from "../helpers/common.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-two-phase-"));
writeFileSync(join(dir, "page.txt"), "page");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A step that records what happens to it in `log`, under `name`; `fails`: its prepare rejects. */
function step(log: string[], name: string, fails = false): PrepareStep {
  return async () => {
    await Bun.sleep(0); // a prepare that takes a turn of the event loop, as real ones do
    log.push(`prepare ${name}`);
    if (fails) throw new Error(`${name} cannot`);
    const change: PreparedChange = {
      commit: async () => void log.push(`commit ${name}`),
      abort: () => void log.push(`abort ${name}`),
    };
    return change;
  };
}

describe("prepareAll", () => {
  test("all prepared: commits each in the order of the steps, once", async () => {
    const log: string[] = [];
    const prepared = await prepareAll([step(log, "a"), step(log, "b"), step(log, "c")]);
    expect(log.filter((line) => line.startsWith("commit"))).toEqual([]);
    await prepared.commit();
    await prepared.commit();
    await prepared.abort(); // settled: nothing more happens
    expect(log.filter((line) => !line.startsWith("prepare"))).toEqual(["commit a", "commit b", "commit c"]);
  });

  test("in turn, one fails: the steps after it are not asked, those before are aborted, nothing commits", async () => {
    const log: string[] = [];
    await expect(prepareAll([step(log, "a"), step(log, "b"), step(log, "c", true), step(log, "d")])).rejects.toThrow(
      "c cannot",
    );
    expect(log).toEqual(["prepare a", "prepare b", "prepare c", "abort b", "abort a"]);
  });

  test("at once, some fail: every step is asked, the others aborted (last first), the first failure in step order is the error", async () => {
    const log: string[] = [];
    const steps = [step(log, "a"), step(log, "b", true), step(log, "c"), step(log, "d", true)];
    await expect(prepareAll(steps, "at-once")).rejects.toThrow("b cannot");
    expect(log.filter((line) => line.startsWith("prepare")).sort()).toEqual([
      "prepare a",
      "prepare b",
      "prepare c",
      "prepare d",
    ]);
    expect(log.filter((line) => !line.startsWith("prepare"))).toEqual(["abort c", "abort a"]);
  });

  test("abort after prepare: every part aborted, even when one abort throws", async () => {
    const log: string[] = [];
    const throwing: PrepareStep = () => ({
      commit() {},
      abort() {
        throw new Error("abort failed");
      },
    });
    const prepared = await prepareAll([step(log, "a"), throwing, step(log, "b")]);
    await prepared.abort();
    expect(log.filter((line) => !line.startsWith("prepare"))).toEqual(["abort b", "abort a"]);
  });

  test("a step that throws synchronously is a failed prepare like any other", async () => {
    const log: string[] = [];
    const sync: PrepareStep = () => {
      throw new Error("at once");
    };
    await expect(prepareAll([step(log, "a"), sync])).rejects.toThrow("at once");
    expect(log).toContain("abort a");
  });
});

/** Opens a connection and sends one request for /page.txt; resolves with the status (0 when the connection failed). */
function status(port: number): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let received = "";
    socket.on("connect", () => socket.write("GET /page.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    socket.on("data", (chunk: Buffer) => void (received += chunk.toString("latin1")));
    socket.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0)));
    socket.on("error", () => {});
  });
}

describe("a refused reload with several I/O threads", () => {
  test("an access log no thread can open: the reload rejects and no thread applies the deny list", async () => {
    const base: ConfigOverrides = { server: { io_threads: 2 }, http: { root: dir } };
    const config = testConfig(base);
    await using server = await startServer(config);
    const CONNECTIONS = 12; // spread over both threads by the kernel
    const next = configSchema.parse({
      ...config,
      net: { ...config.net, deny: ["127.0.0.0/8"] },
      log: { ...config.log, access_log: true, access_file: join(dir, "missing", "access.log") },
    });
    // Not `expect(...).rejects`: its wait misses the I/O thread's answer (docs/upstream/expect-settles-worker-message.md).
    let refusal = "";
    await server.reload(next).catch((error: Error) => void (refusal = error.message));
    expect(refusal).toContain("log.access_file");
    expect(await Promise.all(Array.from({ length: CONNECTIONS }, () => status(server.port)))).toEqual(
      Array(CONNECTIONS).fill(200),
    );
    expect(server.stats.total(Counter.refusedDenied)).toBe(0);
    expect(server.context.config.net.deny).toEqual([]);
    // The same deny list in a reload that can be made applies on every thread.
    await server.reload(configSchema.parse({ ...config, net: { ...config.net, deny: ["127.0.0.0/8"] } }));
    expect(await Promise.all(Array.from({ length: CONNECTIONS }, () => status(server.port)))).toEqual(
      Array(CONNECTIONS).fill(403),
    );
  });
});

describe("the I/O threads' part of a reload", () => {
  test("every thread prepares; a refusal rejects with its reason, an abort or a commit reaches every thread", async () => {
    const config = testConfig({ server: { io_threads: 3, reuse_port: true }, http: { root: dir } });
    const { context, shared } = createContext(config, null);
    // The main thread's listener binds the port, then leaves it to the two I/O threads alone.
    const main = await startProtocolListener(context);
    const threads = await startIoThreads(context, { port: main.port, count: 2, poolThreads: 0, shared });
    try {
      await main.stop({ graceful: false, timeoutMs: 0 });
      const CONNECTIONS = 12;
      const statuses = () => Promise.all(Array.from({ length: CONNECTIONS }, () => status(main.port)));
      const withDeny = configSchema.parse({ ...config, net: { ...config.net, deny: ["127.0.0.0/8"] } });
      // Not `expect(...).rejects` (docs/upstream/expect-settles-worker-message.md).
      let refusal = "";
      await threads
        .prepareReload(configSchema.parse({ ...withDeny, http: { ...config.http, root: join(dir, "gone") } }))
        .catch((error: Error) => void (refusal = error.message));
      expect(refusal).toMatch(/^an I\/O thread cannot apply the configuration: http\.root ".*gone" does not exist/);
      expect(await statuses()).toEqual(Array(CONNECTIONS).fill(200));

      await (await threads.prepareReload(withDeny)).abort();
      expect(await statuses()).toEqual(Array(CONNECTIONS).fill(200));

      await (await threads.prepareReload(withDeny)).commit();
      expect(await statuses()).toEqual(Array(CONNECTIONS).fill(403));
    } finally {
      await threads.stop({ graceful: false, timeoutMs: 0 });
      await context.logger.close();
    }
  });
});
