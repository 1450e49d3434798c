// Whole-server tests: counters per protocol seen through the admin port, readiness during drain, several I/O threads.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HpsClient } from "../../src/client/hps-client.ts";
import { startServer, type Server } from "../../src/server.ts";
import type { Snapshot } from "../../src/stats/snapshot.ts";
import { Counter } from "../../src/stats/stats.ts";
import { FrameStatus, Opcode } from "../../src/tcp/frame.ts";
import { testConfig, waitFor } from "../helpers/common.ts";

const root = mkdtempSync(join(tmpdir(), "hps-server-stats-"));
writeFileSync(join(root, "index.html"), "x".repeat(1000));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ADMIN = { enabled: true, bind: "127.0.0.1", port: 0 } as const;

async function adminStats(server: Server): Promise<Snapshot> {
  const response = await fetch(`http://127.0.0.1:${server.adminPort}/stats`);
  expect(response.status).toBe(200);
  return (await response.json()) as Snapshot;
}

async function adminMetrics(server: Server): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
}

/** Sends `message` on a raw socket and resolves with the echo once `message.length` bytes arrived; rejects if the socket closes first. */
async function echoRoundTrip(port: number, message: Uint8Array): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let received = 0;
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      binaryType: "uint8array",
      data(_socket, chunk) {
        chunks.push(chunk);
        received += chunk.length;
        if (received >= message.length) resolve();
      },
      close: () => reject(new Error(`echo: connection closed after ${received} of ${message.length} bytes`)),
    },
  });
  socket.write(message);
  await promise;
  socket.end();
  return Buffer.concat(chunks);
}

describe("counters per protocol, read through the admin listener", () => {
  test("http: requests, status classes, bytes and latency", async () => {
    await using server = await startServer(testConfig({ http: { root }, admin: ADMIN }));
    const identity = { headers: { "Accept-Encoding": "identity" } };
    for (let i = 0; i < 5; i++)
      expect((await fetch(`http://127.0.0.1:${server.port}/index.html`, identity)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await fetch(`http://127.0.0.1:${server.port}/missing`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${server.port}/index.html`, { method: "DELETE" })).status).toBe(405);

    const snapshot = await adminStats(server);
    expect(snapshot.protocol).toBe("http");
    expect(snapshot.counters.requests).toBe(9);
    expect(snapshot.counters.http2xx).toBe(5);
    expect(snapshot.counters.http4xx).toBe(4);
    expect(snapshot.counters.http404).toBe(3);
    expect(snapshot.counters.bytesWritten).toBeGreaterThanOrEqual(5000);
    expect(snapshot.latency.count).toBe(9);
    expect(snapshot.latency.maxMicros).toBeGreaterThan(0);

    const metrics = await adminMetrics(server);
    expect(metrics).toMatch(/hps_requests_total\{protocol="http",code="2xx"\} 5\b/);
    expect(metrics).toMatch(/hps_requests_total\{protocol="http",code="4xx"\} 4\b/);
    expect(metrics).toMatch(/hps_request_duration_seconds_count 9\b/);
  });

  test("echo: connections opened and closed, bytes both ways", async () => {
    await using server = await startServer(testConfig({ server: { protocol: "echo" }, admin: ADMIN }));
    const message = new Uint8Array(100_000).map((_, i) => i & 0xff);
    for (let i = 0; i < 3; i++) expect(await echoRoundTrip(server.port, message)).toEqual(message);
    await waitFor(async () => (await adminStats(server)).counters.connectionsClosed === 3, 5000, "three closes");

    const snapshot = await adminStats(server);
    expect(snapshot.counters.connectionsAccepted).toBe(3);
    expect(snapshot.counters.activeConnections).toBe(0);
    expect(snapshot.counters.bytesRead).toBe(300_000);
    expect(snapshot.counters.bytesWritten).toBe(300_000);
    expect(await adminMetrics(server)).toMatch(/hps_connections_total\{result="accepted"\} 3\b/);
  });

  test("echo: refusals over max_connections are counted", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "echo" }, admin: ADMIN, limits: { max_connections: 1 } }),
    );
    const { promise: firstClosed, resolve: onFirstClosed } = Promise.withResolvers<void>();
    const first = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: { data() {}, close: () => onFirstClosed() },
    });
    await waitFor(async () => (await adminStats(server)).counters.connectionsAccepted === 1, 5000, "first accepted");
    const { promise: secondClosed, resolve: onSecondClosed } = Promise.withResolvers<void>();
    await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: { data() {}, close: () => onSecondClosed() },
    });
    await secondClosed;
    const snapshot = await adminStats(server);
    expect(snapshot.counters.connectionsRefused).toBe(1);
    expect(snapshot.counters.refusedMaxConnections).toBe(1);
    expect(await adminMetrics(server)).toMatch(/hps_connections_total\{result="refused"\} 1\b/);
    first.end();
    await firstClosed;
  });

  test("custom: frames counted as requests, pool tasks counted, errors counted", async () => {
    await using server = await startServer(testConfig({ server: { protocol: "custom" }, admin: ADMIN }));
    using client = await HpsClient.connect("127.0.0.1", server.port);
    expect((await client.request(Opcode.PING)).status).toBe(FrameStatus.OK);
    const hashed = await client.request(Opcode.HASH, new TextEncoder().encode("abc"));
    expect(hashed.status).toBe(FrameStatus.OK);
    expect(Buffer.from(hashed.payload).toString("hex")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    expect((await client.request(0x7f)).status).toBe(FrameStatus.UNKNOWN_OPCODE);

    await waitFor(async () => (await adminStats(server)).counters.requests === 3, 5000, "three frames counted");
    const snapshot = await adminStats(server);
    expect(snapshot.protocol).toBe("custom");
    expect(snapshot.counters.poolSubmitted).toBe(1);
    expect(snapshot.counters.poolCompleted).toBe(1);
    expect(snapshot.gauges.pool?.workers).toBe(2);
    expect(snapshot.gauges.arena?.capacityBytes).toBe(16 * 1024 * 1024);
    const metrics = await adminMetrics(server);
    expect(metrics).toMatch(/hps_requests_total\{protocol="custom",code="all"\} 3\b/);
    expect(metrics).toMatch(/hps_pool_tasks_total\{result="completed"\} 1\b/);
  });

  test("/readyz turns 503 as soon as a graceful stop begins, while an in-flight download completes", async () => {
    const bigPath = join(root, "big.bin");
    const bigBytes = 32 * 1024 * 1024;
    writeFileSync(bigPath, new Uint8Array(bigBytes));
    const server = await startServer(testConfig({ http: { root }, admin: ADMIN }));
    expect((await fetch(`http://127.0.0.1:${server.adminPort}/readyz`)).status).toBe(200);
    // A download whose body is read only later keeps the drain waiting.
    const response = await fetch(`http://127.0.0.1:${server.port}/big.bin`);
    expect(response.status).toBe(200);
    const stopping = server.stop({ graceful: true, timeoutMs: 10_000 });
    const readyz = await fetch(`http://127.0.0.1:${server.adminPort}/readyz`);
    expect(readyz.status).toBe(503);
    expect((await response.arrayBuffer()).byteLength).toBe(bigBytes);
    await stopping;
    rmSync(bigPath);
  });
});

describe("several I/O threads", () => {
  test("http with io_threads = 2 serves on one port and counts into the same stats", async () => {
    await using server = await startServer(testConfig({ http: { root }, admin: ADMIN, server: { io_threads: 2 } }));
    const responses = await Promise.all(
      Array.from({ length: 40 }, () =>
        fetch(`http://127.0.0.1:${server.port}/index.html`, { headers: { Connection: "close" } }),
      ),
    );
    for (const response of responses) expect((await response.text()).length).toBe(1000);
    await waitFor(async () => (await adminStats(server)).counters.requests === 40, 5000, "40 requests counted");
  });

  test("reopenLogs reaches the access log of every I/O thread", async () => {
    const accessPath = join(root, "access.log");
    const server = await startServer(
      testConfig({ http: { root }, server: { io_threads: 2 }, log: { access_log: true, access_file: accessPath } }),
    );
    const fetchAll = (count: number) =>
      Promise.all(
        Array.from({ length: count }, async () => {
          const response = await fetch(`http://127.0.0.1:${server.port}/index.html`, {
            headers: { Connection: "close" },
          });
          await response.arrayBuffer();
        }),
      );
    await fetchAll(20);
    await waitFor(() => server.stats.total(Counter.requests) === 20, 5000, "20 requests");
    renameSync(accessPath, `${accessPath}.1`);
    await server.reopenLogs();
    await fetchAll(20);
    await waitFor(() => server.stats.total(Counter.requests) === 40, 5000, "40 requests");
    await server.stop({ graceful: true, timeoutMs: 2000 });
    const lines = (path: string) =>
      readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line.includes('"GET /index.html')).length;
    expect(lines(`${accessPath}.1`)).toBe(20);
    expect(lines(accessPath)).toBe(20);
  });

  // 8 echo connections against a limit of 3, with two I/O threads: the limit spans both (one shared count / table).
  for (const [name, limits, refusal] of [
    ["limits.max_connections spans every I/O thread", { max_connections: 3 }, "refusedMaxConnections"],
    [
      "limits.max_connections_per_ip spans every I/O thread (one shared table)",
      { max_connections_per_ip: 3 },
      "refusedPerIp",
    ],
  ] as const) {
    test(name, async () => {
      await using server = await startServer(
        testConfig({ server: { protocol: "echo", io_threads: 2 }, admin: ADMIN, limits }),
      );
      let closedCount = 0;
      const sockets = await Promise.all(
        Array.from({ length: 8 }, () =>
          Bun.connect({
            hostname: "127.0.0.1",
            port: server.port,
            socket: { data() {}, close: () => void closedCount++ },
          }),
        ),
      );
      await waitFor(
        async () => {
          const counters = (await adminStats(server)).counters;
          return counters.connectionsAccepted + counters.connectionsRefused === 8;
        },
        5000,
        "every connection decided",
      );
      const counters = (await adminStats(server)).counters;
      expect(counters.connectionsAccepted).toBe(3);
      expect(counters[refusal]).toBe(5);
      await waitFor(() => closedCount === 5, 5000, "the refused connections closed");
      for (const socket of sockets) socket.end();
    });
  }

  test("rate_limit spans every I/O thread: one client gets its requests once, whichever thread answers", async () => {
    await using server = await startServer(
      testConfig({
        http: { root },
        admin: ADMIN,
        server: { io_threads: 2 },
        rate_limit: { enabled: true, requests: 5, window_s: 60 },
      }),
    );
    // A new connection per request, so the kernel spreads them over both threads.
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`http://127.0.0.1:${server.port}/index.html`, { headers: { Connection: "close" } });
      await response.arrayBuffer();
      statuses.push(response.status);
    }
    expect(statuses.filter((status) => status === 200).length).toBe(5);
    expect(statuses.filter((status) => status === 429).length).toBe(15);
  });

  test("echo with io_threads = 2 answers every connection", async () => {
    await using server = await startServer(testConfig({ server: { protocol: "echo", io_threads: 2 }, admin: ADMIN }));
    const message = new TextEncoder().encode("hello over several threads");
    const replies = await Promise.all(Array.from({ length: 20 }, () => echoRoundTrip(server.port, message)));
    for (const reply of replies) expect(reply).toEqual(message);
    await waitFor(async () => (await adminStats(server)).counters.connectionsAccepted === 20, 5000, "20 accepted");
  });
});
