// HPS/1 flow control and answers owed, over real sockets with the worker pool: large results stream out, a pipelined
// burst of large frames is answered whole, answers accepted before a bad frame are sent before its error frame, and
// requests still running at the shutdown deadline get a frame.
import { describe, expect, test } from "bun:test";
import { HpsClient } from "../../src/client/hps-client.ts";
import { FrameStatus, Opcode } from "../../src/protocol/hps1.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { FRAME_HEADER_BYTES, encodeFrame } from "../../src/tcp/frame.ts";
import { rawConnect, testConfig, waitFor, type RawClient } from "../helpers/common.ts";

const HANDLERS = new URL("../fixtures/pool-handlers.ts", import.meta.url).pathname;
/** The fixture's handler answering with a result of the size its payload names (4 bytes, big-endian). */
const SIZED_RESULT = 0x8b;
/** The fixture's handler that never returns. */
const HANG = 0x83;
const MiB = 1024 * 1024;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function sizePayload(size: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, size);
  return payload;
}

function withVersion(frame: Uint8Array, version: number): Uint8Array {
  frame[4] = version;
  return frame;
}

/** [requestId, status] of every frame a raw client received, in order. */
const answers = (client: RawClient) => client.frames().map((frame) => [frame.requestId, frame.status]);

describe("large responses", () => {
  test("a 24 MiB handler result reaches a reading client with tcp.write_high_water_bytes at 1 MiB", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        tcp: { write_high_water_bytes: MiB },
        custom: { handlers: HANDLERS, max_response_bytes: 32 * MiB },
        pool: { threads: 1 },
      }),
    );
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 20_000 });
    const size = 24 * MiB;
    const reply = await client.request(SIZED_RESULT, sizePayload(size));
    expect(reply.status).toBe(FrameStatus.OK);
    expect(reply.payload.length).toBe(size);
    let mismatches = 0;
    for (let i = 0; i < size; i++) if (reply.payload[i] !== ((i * 7) & 0xff)) mismatches++;
    expect(mismatches).toBe(0);
    expect(server.stats.total(Counter.disconnectedSlowReader)).toBe(0);
    // Streamed out of one held copy: the output was over the mark, so the socket was not read meanwhile.
    expect((await client.request(Opcode.PING)).status).toBe(FrameStatus.OK);
  }, 30_000);

  test("a result over custom.max_response_bytes is answered with status 6 naming the setting; the connection goes on", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        custom: { handlers: HANDLERS, max_response_bytes: 64 * 1024 },
        pool: { threads: 1 },
      }),
    );
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 10_000 });
    const over = await client.request(SIZED_RESULT, sizePayload(64 * 1024 + 1));
    expect(over.status).toBe(FrameStatus.INTERNAL);
    expect(text(over.payload)).toContain("custom.max_response_bytes (65536)");
    const within = await client.request(SIZED_RESULT, sizePayload(64 * 1024));
    expect([within.status, within.payload.length]).toEqual([FrameStatus.OK, 64 * 1024]);
    // Built-in HASH is not a handler result: not subject to the limit.
    expect((await client.request(Opcode.HASH, new Uint8Array(3))).status).toBe(FrameStatus.OK);
  });

  test("64 ECHO frames of 1 MiB pipelined in one burst, read as they come, get 64 answers", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "custom" }, limits: { max_request_bytes: 2 * MiB } }),
    );
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 30_000 });
    const payloads = Array.from({ length: 64 }, (_, n) => new Uint8Array(MiB).fill(n));
    const replies = await Promise.all(payloads.map((payload) => client.request(Opcode.ECHO, payload)));
    expect(replies.length).toBe(64);
    replies.forEach((reply, n) => {
      expect([n, reply.status, reply.payload.length, reply.payload[0], reply.payload[MiB - 1]]).toEqual([
        n,
        FrameStatus.OK,
        MiB,
        n,
        n,
      ]);
    });
    expect(server.stats.total(Counter.disconnectedSlowReader)).toBe(0);
    expect(server.stats.total(Counter.errorsSystem)).toBe(0);
  }, 60_000);
});

describe("answers owed before a connection-level error", () => {
  for (const [name, badFrame] of [
    ["a bad frame", withVersion(encodeFrame(Opcode.PING, 0, 9), 9)],
    ["a frame over limits.max_request_bytes", encodeFrame(Opcode.ECHO, 0, 9, new Uint8Array(8192))],
  ] as const) {
    test(`HASH (id 3) + PING (id 4) + ${name} in one write: HASH and PING answered, then the error frame, 10 of 10`, async () => {
      await using server = await startServer(
        testConfig({ server: { protocol: "custom" }, limits: { max_request_bytes: 4096 }, pool: { threads: 1 } }),
      );
      const expectedStatus = name === "a bad frame" ? FrameStatus.BAD_FRAME : FrameStatus.TOO_LARGE;
      for (let round = 0; round < 10; round++) {
        const client = await rawConnect(server.port);
        client.socket.write(
          Buffer.concat([
            encodeFrame(Opcode.HASH, 0, 3, new Uint8Array(1000).fill(round)),
            encodeFrame(Opcode.PING, 0, 4),
            badFrame.subarray(0, Math.min(badFrame.length, FRAME_HEADER_BYTES + 16)),
          ]),
        );
        await waitFor(() => client.isClosed(), 5000, `round ${round}: the close`);
        const received = answers(client);
        // The PING is answered inline at once, the HASH when the pool answers; the error frame is always last.
        expect(received.toSorted((a, b) => a[0]! - b[0]!)).toEqual([
          [0, expectedStatus],
          [3, FrameStatus.OK],
          [4, FrameStatus.OK],
        ]);
        expect(received.at(-1)).toEqual([0, expectedStatus]);
        const hash = client.frames().find((frame) => frame.requestId === 3)!;
        expect(Buffer.from(hash.payload).toString("hex")).toBe(
          Bun.CryptoHasher.hash("sha256", new Uint8Array(1000).fill(round), "hex"),
        );
      }
      expect(server.stats.total(Counter.errorsProtocol)).toBe(10);
    });
  }

  test("the error frame waits for a running request (bounded by pool.task_timeout_ms), reading stops meanwhile", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        pool: { threads: 1, task_timeout_ms: 300 },
        custom: { handlers: HANDLERS },
      }),
    );
    const client = await rawConnect(server.port);
    const bad = encodeFrame(Opcode.PING, 0, 2);
    bad[4] = 7;
    client.socket.write(Buffer.concat([encodeFrame(HANG, 0, 1, new Uint8Array(1)), bad]));
    await waitFor(() => server.stats.total(Counter.errorsProtocol) === 1, 5000, "the bad frame seen");
    // Frames after the bad one are never answered (framing is lost), however long the wait.
    client.socket.write(encodeFrame(Opcode.PING, 0, 5));
    await waitFor(() => client.isClosed(), 5000, "the close");
    expect(answers(client)).toEqual([
      [1, FrameStatus.TIMEOUT],
      [0, FrameStatus.BAD_FRAME],
    ]);
  });
});

describe("busy answers are never held", () => {
  test("frames held at custom.max_in_flight are answered busy as soon as the pool is full, not when a task ends", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        // Room for A's two tasks even before the worker starts one, so A stops at its limit with the pool not full.
        pool: { threads: 1, max_queue: 3, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS, max_in_flight: 2 },
      }),
    );
    // A's tasks never end by themselves (the stop at the end answers them), so none can end during the test.
    const hangingTask = (requestId: number) => encodeFrame(HANG, 0, requestId, new Uint8Array(1));
    // A: two tasks accepted (its limit; the pool still has room), four frames held unread behind them.
    const first = await rawConnect(server.port);
    first.socket.write(Buffer.concat([1, 2, 3, 4, 5, 6].map(hangingTask)));
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(() => tcp().inFlight === 2 && tcp().pausedReads === 1, 5000, "A at its in-flight limit");
    // B fills the pool: one of its tasks at least is refused, which wakes A; A's held frames are answered busy at once.
    const second = await rawConnect(server.port);
    second.socket.write(Buffer.concat([11, 12, 13].map(hangingTask)));
    await waitFor(() => first.frames().length === 4, 5000, "A's held frames answered");
    expect(answers(first)).toEqual([3, 4, 5, 6].map((id) => [id, FrameStatus.BUSY]));
    await waitFor(() => second.frames().length > 0, 5000, "B's busy answer");
    expect(answers(second).every(([, status]) => status === FrameStatus.BUSY)).toBe(true);
    // While the pool stays full, A reads on (its frames are answered at once) though its two tasks are still out.
    first.socket.write(encodeFrame(Opcode.PING, 0, 7));
    await waitFor(() => first.frames().length === 5, 5000, "a PING after");
    expect(answers(first).at(-1)).toEqual([7, FrameStatus.OK]);
    expect(tcp().inFlight).toBeGreaterThanOrEqual(3);
  });
});

describe("shutdown deadline", () => {
  test("a request still running when the deadline passes gets status 7 'server shutting down' before the close", async () => {
    const server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        pool: { threads: 1, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS },
      }),
    );
    const client = await rawConnect(server.port);
    client.socket.write(Buffer.concat([encodeFrame(HANG, 0, 41, new Uint8Array(1)), encodeFrame(Opcode.PING, 0, 42)]));
    await waitFor(() => client.frames().length === 1, 5000, "the PING answer");
    const startedMs = performance.now();
    await server.stop({ graceful: true, timeoutMs: 300 });
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(250);
    await waitFor(() => client.isClosed(), 5000, "the close");
    expect(answers(client)).toEqual([
      [42, FrameStatus.OK],
      [41, FrameStatus.TIMEOUT],
    ]);
    expect(text(client.frames()[1]!.payload)).toBe("server shutting down");
  });
});
