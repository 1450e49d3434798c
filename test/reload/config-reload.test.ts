// Configuration reload: which settings apply at once (planReload), Server.reload end to end, and SIGHUP in the CLI.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HpsClient } from "../../src/client/hps-client.ts";
import { planReload } from "../../src/config/reload.ts";
import { configSchema, type Config, type ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { encodeFrame, FrameDecoder, FrameStatus, Opcode } from "../../src/tcp/frame.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { keptConnection } from "../helpers/http.ts";

const repo = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "hps-reload-"));
const siteA = join(dir, "a");
const siteB = join(dir, "b");
mkdirSync(siteA);
mkdirSync(siteB);
writeFileSync(join(siteA, "page.txt"), "from A");
writeFileSync(join(siteB, "page.txt"), "from B");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The same overrides on top of a base, as a whole configuration. */
function configWith(base: ConfigOverrides, changes: ConfigOverrides): Config {
  const merged: Record<string, object> = {};
  for (const table of new Set([...Object.keys(base), ...Object.keys(changes)])) {
    const before = (base as Record<string, object>)[table];
    const change = (changes as Record<string, object>)[table];
    // Arrays of tables ([[upstreams]]) replace; tables merge key by key.
    merged[table] = Array.isArray(before) || Array.isArray(change) ? (change ?? before)! : { ...before, ...change };
  }
  return configSchema.parse(merged);
}

const GET_PAGE = "GET /page.txt HTTP/1.1\r\nHost: t\r\n\r\n";

/** Sends "ping" on a new echo connection; resolves with what came back before the close ("" when refused). */
function echoPing(port: number): Promise<string> {
  return new Promise<string>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let received = "";
    socket.on("connect", () => socket.write("ping"));
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString();
      if (received.length >= 4) socket.end();
    });
    socket.on("close", () => resolve(received));
    socket.on("error", () => {});
  });
}

describe("planReload", () => {
  const base: ConfigOverrides = { server: { protocol: "http", port: 8080 }, http: { root: siteA } };

  test("nothing changed: nothing applied, nothing to restart, the same values", () => {
    const running = configWith(base, {});
    const plan = planReload(running, configWith(base, {}));
    expect(plan.applied).toEqual([]);
    expect(plan.needsRestart).toEqual([]);
    expect(plan.config).toEqual(running);
  });

  test("live settings take their new values; settings read at start keep their running values and are named", () => {
    const running = configWith(base, {});
    const next = configWith(base, {
      server: { protocol: "http", port: 9999, shutdown_timeout_s: 3 },
      limits: { max_connections: 50 },
      rate_limit: { enabled: true, requests: 7 },
      net: { deny: ["10.0.0.0/8"] },
      http: { root: siteB, keepalive_timeout_s: 30, cache_control: "no-store" },
      log: { level: "debug", file: "/tmp/elsewhere.log" },
      admin: { port: 9191 },
      stats: { interval_s: 5 },
    });
    const plan = planReload(running, next);
    expect(plan.applied.sort()).toEqual([
      "http.cache_control",
      "http.root",
      "limits.max_connections",
      "log.file",
      "log.level",
      "net.deny",
      "rate_limit.enabled",
      "rate_limit.requests",
      "server.shutdown_timeout_s",
      "stats.interval_s",
    ]);
    expect(plan.needsRestart.sort()).toEqual(["admin.port", "http.keepalive_timeout_s", "server.port"]);
    expect(plan.config.server.port).toBe(8080);
    expect(plan.config.admin.port).toBe(running.admin.port);
    expect(plan.config.log.file).toBe("/tmp/elsewhere.log");
    expect(plan.config.http.keepalive_timeout_s).toBe(running.http.keepalive_timeout_s);
    expect(plan.config.http.root).toBe(siteB);
    expect(plan.config.net.deny).toEqual(["10.0.0.0/8"]);
    expect(plan.config.rate_limit.requests).toBe(7);
  });

  test("with several I/O threads, rate_limit.max_tracked_ips needs a restart (the shared table is sized at start)", () => {
    const threaded: ConfigOverrides = { server: { io_threads: 2 } };
    const plan = planReload(
      configWith(threaded, {}),
      configWith(threaded, { rate_limit: { max_tracked_ips: 5, requests: 3 } }),
    );
    expect(plan.needsRestart).toEqual(["rate_limit.max_tracked_ips"]);
    expect(plan.applied).toEqual(["rate_limit.requests"]);
    expect(planReload(configWith({}, {}), configWith({}, { rate_limit: { max_tracked_ips: 5 } })).applied).toEqual([
      "rate_limit.max_tracked_ips",
    ]);
  });

  test("custom: the pool, the arena and the handlers module need a restart; the TCP listener's settings apply", () => {
    const custom: ConfigOverrides = { server: { protocol: "custom" } };
    const changes: ConfigOverrides = {
      pool: { threads: 3 },
      memory: { arena_bytes: 1 << 20 },
      custom: { max_in_flight: 8, handlers: "./examples/handlers.ts" },
      limits: { max_request_bytes: 4096, connection_timeout_s: 5 },
      tcp: { nodelay: false, write_high_water_bytes: 2 << 20, send_timeout_s: 5 },
    };
    const plan = planReload(configWith(custom, {}), configWith(custom, changes));
    expect(plan.needsRestart.sort()).toEqual(["custom.handlers", "memory.arena_bytes", "pool.threads"]);
    expect(plan.applied.sort()).toEqual([
      "custom.max_in_flight",
      "limits.connection_timeout_s",
      "limits.max_request_bytes",
      "tcp.nodelay",
      "tcp.send_timeout_s",
      "tcp.write_high_water_bytes",
    ]);
    expect(plan.config.pool.threads).toBe(configWith(custom, {}).pool.threads);
    expect(plan.config.custom.max_in_flight).toBe(8);
  });

  test("a list setting is compared by its items", () => {
    const running = configWith(base, { net: { allow: ["10.0.0.0/8", "192.168.0.0/16"] } });
    expect(planReload(running, configWith(base, { net: { allow: ["10.0.0.0/8", "192.168.0.0/16"] } })).applied).toEqual(
      [],
    );
    expect(planReload(running, configWith(base, { net: { allow: ["192.168.0.0/16", "10.0.0.0/8"] } })).applied).toEqual(
      ["net.allow"],
    );
  });
});

describe("Server.reload", () => {
  test("http: a new root, rate limit and log level apply to the next requests; the port stays; nothing is restarted", async () => {
    const config = testConfig({ http: { root: siteA }, log: { access_log: false, level: "warn" } });
    await using server = await startServer(config);
    const url = `http://127.0.0.1:${server.port}/page.txt`;
    expect(await (await fetch(url)).text()).toBe("from A");

    const next = configWith(config, {
      http: { root: siteB },
      rate_limit: { enabled: true, requests: 2, window_s: 60 },
      log: { level: "debug" },
      server: { port: server.port + 1 },
    });
    const report = await server.reload(next);
    expect(report.applied.sort()).toEqual([
      "http.root",
      "log.level",
      "rate_limit.enabled",
      "rate_limit.requests",
      "rate_limit.window_s",
    ]);
    expect(report.needsRestart).toEqual(["server.port"]);
    expect(server.context.config.http.root).toBe(siteB);
    expect(server.context.config.server.port).toBe(config.server.port);
    expect(server.logger.isEnabled("debug")).toBe(true);

    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await fetch(url);
      statuses.push(response.status);
      if (response.status === 200) expect(await response.text()).toBe("from B");
      else await response.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 429]);
    expect(server.stats.total(Counter.rateLimited)).toBe(1);
  });

  test("a missing root is refused: the reload rejects and the running site, limits and log level stay", async () => {
    const config = testConfig({ http: { root: siteA }, log: { access_log: false, level: "warn" } });
    await using server = await startServer(config);
    const next = configWith(config, {
      http: { root: join(dir, "missing") },
      rate_limit: { enabled: true, requests: 1, window_s: 60 },
      log: { level: "debug" },
    });
    await expect(server.reload(next)).rejects.toThrow(/does not exist/);
    for (let i = 0; i < 3; i++)
      expect(await (await fetch(`http://127.0.0.1:${server.port}/page.txt`)).text()).toBe("from A");
    expect(server.context.config.http.root).toBe(siteA);
    expect(server.logger.isEnabled("debug")).toBe(false);
  });

  test("log.file applies on reload: later lines go to the new file (appended), earlier ones stay; an unopenable path is rejected", async () => {
    const first = join(dir, "server-1.log");
    const second = join(dir, "server-2.log");
    writeFileSync(second, "an existing line\n");
    const config = testConfig({ http: { root: siteA }, log: { access_log: false, level: "info", file: first } });
    await using server = await startServer(config);
    server.logger.info("before the reload");
    await server.reload(configWith(config, { log: { file: second } }));
    server.logger.info("after the reload");
    await server.logger.flush();
    const firstText = readFileSync(first, "utf8");
    const secondText = readFileSync(second, "utf8");
    expect(firstText).toContain("before the reload");
    expect(firstText).not.toContain("after the reload");
    expect(secondText.startsWith("an existing line\n")).toBe(true); // appended, not overwritten
    expect(secondText).toContain("after the reload");
    expect(secondText).toContain("configuration reloaded: log.file");
    expect(server.context.config.log.file).toBe(second);

    const unopenable = join(dir, "no-such-dir", "server.log");
    await expect(
      server.reload(configWith(config, { log: { file: unopenable }, rate_limit: { enabled: true } })),
    ).rejects.toThrow(/log\.file/);
    expect(server.context.config.log.file).toBe(second);
    expect(server.context.config.rate_limit.enabled).toBe(false); // nothing else applied either
    server.logger.info("still here");
    await server.logger.flush();
    expect(readFileSync(second, "utf8")).toContain("still here");
    expect(existsSync(unopenable)).toBe(false);

    await server.reload(configWith(config, { log: { file: "" } })); // back to stderr
    server.logger.info("on stderr now");
    await server.logger.flush();
    expect(readFileSync(second, "utf8")).not.toContain("on stderr now");
  });

  test("a reload the listener cannot prepare (access log file unopenable) changes nothing: the rate limiter keeps its state", async () => {
    const config = testConfig({
      http: { root: siteA },
      log: { access_log: false },
      rate_limit: { enabled: true, requests: 1, window_s: 60 },
    });
    await using server = await startServer(config);
    const url = `http://127.0.0.1:${server.port}/page.txt`;
    expect((await fetch(url)).status).toBe(200);
    expect((await fetch(url)).status).toBe(429);
    const next = configWith(config, {
      rate_limit: { window_s: 30 },
      log: { access_log: true, access_file: join(dir, "no-such-dir", "access.log") },
    });
    await expect(server.reload(next)).rejects.toThrow(/log\.access_file/);
    expect(server.context.config.rate_limit.window_s).toBe(60);
    expect((await fetch(url)).status).toBe(429); // the spent token is still spent: the limiter was not replaced
  });

  test("connections counted under http.connection_limits stay open and counted across reloads that do not change how they are counted", async () => {
    const config = testConfig({
      http: { root: siteA, connection_limits: true },
      limits: { max_connections: 2 },
      log: { access_log: false },
    });
    await using server = await startServer(config);
    const a = await keptConnection(server.port);
    const b = await keptConnection(server.port);
    const c = await keptConnection(server.port);
    try {
      expect((await a.request(GET_PAGE)).status).toBe(200);
      expect((await b.request(GET_PAGE)).status).toBe(200);
      expect((await c.request(GET_PAGE)).status).toBe(503);
      for (const changes of [
        { log: { level: "debug" as const } },
        { http: { root: siteA, connection_limits: true, cache_control: "no-store" } },
      ]) {
        await server.reload(configWith(config, changes));
        // A newcomer first: a and b are still open and counted, so it is refused.
        const d = await keptConnection(server.port);
        try {
          expect((await d.request(GET_PAGE)).status).toBe(503);
        } finally {
          d.end();
        }
        const fromA = await a.request(GET_PAGE);
        expect(fromA.status).toBe(200);
        expect(fromA.headers.get("connection")).not.toBe("close");
        expect((await b.request(GET_PAGE)).status).toBe(200);
      }
    } finally {
      a.end();
      b.end();
      c.end();
    }
  });

  test("a deny list applied by reload refuses the next request of an open keep-alive connection, with or without http.connection_limits", async () => {
    for (const connection_limits of [false, true]) {
      const config = testConfig({ http: { root: siteA, connection_limits }, log: { access_log: false } });
      await using server = await startServer(config);
      const kept = await keptConnection(server.port);
      try {
        expect((await kept.request(GET_PAGE)).status).toBe(200);
        const report = await server.reload(configWith(config, { net: { deny: ["127.0.0.0/8"] } }));
        expect(report.applied).toEqual(["net.deny"]);
        // Counted connections were admitted once, under the old lists: the reload recounts them, so the next request
        // of this one is admitted anew (refused, and the connection closed); uncounted ones are checked per request.
        expect((await kept.request(GET_PAGE)).status).toBe(403);
      } finally {
        kept.end();
      }
    }
  });

  test("echo: a deny list applied by reload closes new connections from that address at once, counted", async () => {
    const config = testConfig({ server: { protocol: "echo" } });
    await using server = await startServer(config);
    const echoOnce = () => echoPing(server.port);
    expect(await echoOnce()).toBe("ping");
    const report = await server.reload(configWith(config, { net: { deny: ["127.0.0.0/8"] } }));
    expect(report.applied).toEqual(["net.deny"]);
    expect(await echoOnce()).toBe("");
    expect(server.stats.total(Counter.refusedDenied)).toBe(1);
    await server.reload(config);
    expect(await echoOnce()).toBe("ping");
  });
});

describe("Server.reload of the TCP listener", () => {
  test("custom: a lower frame limit applies to new connections (the old one keeps its own); an idle timeout turned on cuts a quiet connection", async () => {
    const config = testConfig({
      server: { protocol: "custom" },
      limits: { max_request_bytes: 1 << 16, connection_timeout_s: 0 },
      pool: { threads: 1 },
    });
    await using server = await startServer(config);
    const before = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    try {
      const report = await server.reload(
        configWith(config, {
          limits: { max_request_bytes: 1024, connection_timeout_s: 0.3 },
          custom: { max_in_flight: 2 },
        }),
      );
      expect(report.applied.sort()).toEqual([
        "custom.max_in_flight",
        "limits.connection_timeout_s",
        "limits.max_request_bytes",
      ]);
      expect(report.needsRestart).toEqual([]);
      const payload = new Uint8Array(4000).fill(7);
      const echoed = await before.request(Opcode.ECHO, payload); // opened under the old limit
      expect(echoed.status).toBe(FrameStatus.OK);
      // A connection opened now: the same frame is over the new limit (a connection-level error frame, id 0).
      const frames: { status: number; requestId: number; text: string }[] = [];
      const decoder = new FrameDecoder(1 << 20);
      const after = await Bun.connect({
        hostname: "127.0.0.1",
        port: server.port,
        socket: {
          binaryType: "uint8array",
          data: (_socket, chunk) => {
            decoder.push(
              chunk,
              (_opcode, status, requestId, body) =>
                void frames.push({ status, requestId, text: new TextDecoder().decode(body) }),
            );
          },
        },
      });
      try {
        after.write(encodeFrame(Opcode.ECHO, 0, 9, payload));
        await waitFor(() => frames.length > 0, 5000, "the error frame");
        expect(frames[0]).toMatchObject({ status: FrameStatus.TOO_LARGE, requestId: 0 });
        expect(frames[0]!.text).toContain("at most 1024");
      } finally {
        after.end();
      }
      // The idle timeout now closes a quiet connection (it was 0: never).
      const timedOutBefore = server.stats.total(Counter.connectionsTimedOut);
      await waitFor(
        () => server.stats.total(Counter.connectionsTimedOut) > timedOutBefore,
        5000,
        "the idle connection cut",
      );
    } finally {
      before.close();
    }
  });

  test("echo: tcp.send_timeout_s lowered cuts a client that reads nothing after the new timeout", async () => {
    const config = testConfig({ server: { protocol: "echo" }, tcp: { send_timeout_s: 3600 } });
    await using server = await startServer(config);
    await server.reload(configWith(config, { tcp: { send_timeout_s: 0.3 } }));
    const before = server.stats.total(Counter.disconnectedSlowReader);
    const socket = connect({ host: "127.0.0.1", port: server.port });
    socket.on("error", () => {});
    socket.pause(); // never reads: the echo queues up on the server
    const chunk = Buffer.alloc(256 * 1024, 1);
    try {
      await new Promise<void>((resolve) => socket.on("connect", () => resolve()));
      for (let i = 0; i < 64 && server.stats.total(Counter.disconnectedSlowReader) === before; i++) {
        socket.write(chunk);
        await Bun.sleep(5);
      }
      await waitFor(
        () => server.stats.total(Counter.disconnectedSlowReader) > before,
        5000,
        "the slow reader cut after the new timeout",
      );
    } finally {
      socket.destroy();
    }
  });
});

describe("Server.reload with several I/O threads", () => {
  test("every thread applies the reload: a deny list refuses connections whichever thread accepts them", async () => {
    const config = testConfig({ server: { protocol: "echo", io_threads: 2 } });
    await using server = await startServer(config);
    const echoOnce = () => echoPing(server.port);
    const CONNECTIONS = 12; // spread over both threads by the kernel
    expect(await Promise.all(Array.from({ length: CONNECTIONS }, echoOnce))).toEqual(Array(CONNECTIONS).fill("ping"));
    expect((await server.reload(configWith(config, { net: { deny: ["127.0.0.0/8"] } }))).applied).toEqual(["net.deny"]);
    expect(await Promise.all(Array.from({ length: CONNECTIONS }, echoOnce))).toEqual(Array(CONNECTIONS).fill(""));
    await waitFor(() => server.stats.total(Counter.refusedDenied) === CONNECTIONS, 2000, "every refusal counted");
  });
});

describe("SIGHUP", () => {
  test("reloads the configuration file; a broken file is rejected and the server keeps serving", async () => {
    const configPath = join(dir, "reload.toml");
    const logPath = join(dir, "reload.log");
    const write = (extra: string) =>
      writeFileSync(
        configPath,
        `[server]\nbind = "127.0.0.1"\nport = 0\n[http]\nroot = "${siteA}"\n[admin]\nenabled = false\n[log]\nfile = "${logPath}"\naccess_log = false\n${extra}`,
      );
    write("");
    const child = Bun.spawn(["bun", "src/main.ts", "--config", configPath], {
      cwd: repo,
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      const log = () => (existsSync(logPath) ? readFileSync(logPath, "utf8") : "");
      await waitFor(() => /listening on 127\.0\.0\.1:\d+/.test(log()), 15_000, "the server to listen");
      const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(log())![1]);

      write("[rate_limit]\nenabled = true\nrequests = 1\nwindow_s = 60\n");
      child.kill("SIGHUP");
      await waitFor(
        () => log().includes("configuration reloaded: rate_limit.enabled"),
        10_000,
        "the reload to be logged",
      );
      const first = await fetch(`http://127.0.0.1:${port}/page.txt`);
      expect(first.status).toBe(200);
      expect(await first.text()).toBe("from A");
      const second = await fetch(`http://127.0.0.1:${port}/page.txt`);
      expect(second.status).toBe(429);
      await second.arrayBuffer();

      writeFileSync(configPath, "[server\nport = ");
      child.kill("SIGHUP");
      await waitFor(() => log().includes("configuration rejected"), 10_000, "the rejection to be logged");
      expect(log()).toMatch(/SIGHUP: .*reload\.toml/);
      expect((await fetch(`http://127.0.0.1:${port}/page.txt`)).status).toBe(429); // still the running configuration
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
