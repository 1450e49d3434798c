// HPS/1 at the shutdown deadline (server.shutdown_timeout_s), over real sockets with the worker pool: every request
// the server accepted gets exactly one frame (held behind custom.max_in_flight, queued on the pool, or running), the
// connection then ends with a FIN after its frames (never a reset that discards them, even for a client that reads
// late), and a request sent on an open connection while the server drains is served as usual.
import { describe, expect, test } from "bun:test";
import { FrameStatus, Opcode } from "../../src/protocol/hps1.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { FrameDecoder, encodeFrame } from "../../src/tcp/frame.ts";
import { rawConnect, testConfig, waitFor, type RawClient, type RawFrame } from "../helpers/common.ts";

const HANDLERS = new URL("../fixtures/pool-handlers.ts", import.meta.url).pathname;
/** The fixture's handlers: bytes reversed; never returns; busy payload[0] ms then echoes; a result of a given size. */
const REVERSE = 0x80;
const HANG = 0x83;
const BUSY_FOR = 0x87;
const SIZED_RESULT = 0x8b;
const MiB = 1024 * 1024;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function sizePayload(size: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, size);
  return payload;
}

/** request id → statuses of the frames answering it (each id must appear once). */
function statusesById(frames: RawFrame[]): Map<number, number[]> {
  const byId = new Map<number, number[]>();
  for (const frame of frames) byId.set(frame.requestId, [...(byId.get(frame.requestId) ?? []), frame.status]);
  return byId;
}

/**
 * A client that reads nothing until `resume()` (its socket is paused, so TCP flow control backs the server up), then
 * records frames as they arrive, and how the connection ended: a FIN ("end") or an error such as a reset.
 */
async function pausedClient(port: number) {
  const frames: RawFrame[] = [];
  const decoder = new FrameDecoder(1 << 30);
  let ending: "end" | "close" | `error: ${string}` | null = null;
  let closed = false;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_socket, chunk) =>
        void decoder.push(new Uint8Array(chunk), (opcode, status, requestId, payload) =>
          frames.push({ opcode, status, requestId, payload: payload.slice() }),
        ),
      end: () => void (ending ??= "end"),
      close: (_socket, error) => {
        ending ??= error === undefined ? "close" : `error: ${error.message}`;
        closed = true;
      },
      error: (_socket, error) => {
        ending ??= `error: ${error.message}`;
        closed = true;
      },
    },
  });
  socket.pause();
  return {
    socket,
    frames: () => frames,
    resume: () => socket.resume(),
    ending: () => ending,
    isClosed: () => closed,
  };
}

describe("every accepted request gets one frame at the deadline", () => {
  test("frames held behind custom.max_in_flight: status 7 for pool requests, the usual answer for inline ones", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        pool: { threads: 1, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS, max_in_flight: 1 },
      }),
    );
    const client = await rawConnect(server.port);
    // HANG takes the connection's one slot; the three frames after it are read but held undecoded.
    client.socket.write(
      Buffer.concat([
        encodeFrame(HANG, 0, 1, new Uint8Array(1)),
        encodeFrame(Opcode.HASH, 0, 2, new Uint8Array(16)),
        encodeFrame(Opcode.PING, 0, 3),
        encodeFrame(REVERSE, 0, 4, new Uint8Array([1, 2, 3])),
      ]),
    );
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(() => tcp().inFlight === 1 && tcp().pausedReads === 1, 5000, "the connection at its limit");
    expect(client.frames()).toEqual([]);
    await server.stop({ graceful: true, timeoutMs: 300 });
    await waitFor(() => client.isClosed(), 5000, "the close");
    const byId = statusesById(client.frames());
    expect([...byId.entries()].toSorted(([a], [b]) => a - b)).toEqual([
      [1, [FrameStatus.TIMEOUT]],
      [2, [FrameStatus.TIMEOUT]],
      [3, [FrameStatus.OK]],
      [4, [FrameStatus.TIMEOUT]],
    ]);
    // In request order among themselves where the protocol promises it: PING (inline) before the held pool requests
    // after it would not be promised, so only the messages are checked.
    for (const frame of client.frames()) {
      if (frame.status === FrameStatus.TIMEOUT) expect(text(frame.payload)).toBe("server shutting down");
    }
  });

  test("requests queued on the pool behind a running one get status 7 too", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        pool: { threads: 1, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS },
      }),
    );
    const client = await rawConnect(server.port);
    client.socket.write(
      Buffer.concat([
        encodeFrame(HANG, 0, 1, new Uint8Array(1)),
        ...[2, 3, 4, 5].map((id) => encodeFrame(REVERSE, 0, id, new Uint8Array([id]))),
      ]),
    );
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(() => tcp().inFlight === 5, 5000, "five requests on the pool");
    await server.stop({ graceful: true, timeoutMs: 300 });
    await waitFor(() => client.isClosed(), 5000, "the close");
    const byId = statusesById(client.frames());
    expect([...byId.entries()].toSorted(([a], [b]) => a - b)).toEqual(
      [1, 2, 3, 4, 5].map((id) => [id, [FrameStatus.TIMEOUT]]),
    );
  });
});

describe("the connection ends with a FIN after its frames", () => {
  for (const ioThreads of [1, 2]) {
    test(`a client that reads only after the deadline gets every frame, then a clean end (io_threads = ${ioThreads})`, async () => {
      await using server = await startServer(
        testConfig({
          server: { protocol: "custom", io_threads: ioThreads },
          tcp: { write_high_water_bytes: MiB, send_timeout_s: 10 },
          // A worker per task even with every connection on one I/O thread (a task waiting in the ring of a worker
          // stuck in HANG would never start).
          pool: { threads: 4 * ioThreads, task_timeout_ms: 0 },
          custom: { handlers: HANDLERS, max_response_bytes: 32 * MiB },
        }),
      );
      const size = 8 * MiB;
      // Two connections: with two I/O threads the kernel often gives each thread one.
      const clients = await Promise.all(Array.from({ length: 2 }, () => pausedClient(server.port)));
      for (const client of clients) {
        client.socket.write(
          Buffer.concat([
            encodeFrame(SIZED_RESULT, 0, 1, sizePayload(size)),
            encodeFrame(HANG, 0, 2, new Uint8Array(1)),
            // Read (or left in the kernel) behind the large answer the client does not read yet.
            ...[3, 4, 5].map((id) => encodeFrame(Opcode.PING, 0, id)),
          ]),
        );
      }
      const deadlineMs = 3000;
      const stopping = server.stop({ graceful: true, timeoutMs: deadlineMs });
      // The clients read nothing until well after the deadline: the server holds their frames meanwhile.
      await Bun.sleep(deadlineMs + 500);
      for (const client of clients) client.resume();
      await stopping;
      for (const client of clients) {
        await waitFor(() => client.isClosed(), 10_000, "the close");
        expect(client.ending()).toBe("end");
        const byId = statusesById(client.frames());
        expect(byId.get(1)).toEqual([FrameStatus.OK]);
        expect(byId.get(2)).toEqual([FrameStatus.TIMEOUT]);
        expect(client.frames().find((frame) => frame.requestId === 1)!.payload.length).toBe(size);
        // PINGs are answered if they were read before the deadline, never twice.
        for (const id of [3, 4, 5]) expect(byId.get(id) ?? [FrameStatus.OK]).toEqual([FrameStatus.OK]);
      }
      expect(server.stats.total(Counter.disconnectedSlowReader)).toBe(0);
    }, 30_000);
  }

  test("a client that never reads is cut by tcp.send_timeout_s after the deadline: shutdown does not wait for it", async () => {
    // (send_timeout_s 1 s, deadline 0.5 s: the wait after the deadline is the shorter of the two.)
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        tcp: { write_high_water_bytes: MiB, send_timeout_s: 1 },
        pool: { threads: 1, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS, max_response_bytes: 32 * MiB },
      }),
    );
    const client = await pausedClient(server.port);
    client.socket.write(
      Buffer.concat([
        encodeFrame(SIZED_RESULT, 0, 1, sizePayload(16 * MiB)),
        encodeFrame(HANG, 0, 2, new Uint8Array(1)),
      ]),
    );
    // The large answer is made and waits for the client, beyond what the kernel's buffers take.
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(() => (tcp().queuedBytes ?? 0) > 0 && tcp().inFlight === 1, 10_000, "the large answer queued");
    const startedMs = performance.now();
    await server.stop({ graceful: true, timeoutMs: 500 });
    const tookMs = performance.now() - startedMs;
    // The deadline, then at most the send timeout (swept about four times per timeout) for the output to move.
    expect(tookMs).toBeGreaterThanOrEqual(450);
    expect(tookMs).toBeLessThan(500 + 1250 + 1000);
    expect(server.stats.total(Counter.disconnectedSlowReader)).toBe(1);
    client.resume();
    await waitFor(() => client.isClosed(), 5000, "the close");
  });

  test("socat, reading through a pipe that a slow consumer empties late, gets every frame and exits 0", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        tcp: { write_high_water_bytes: MiB },
        pool: { threads: 1, task_timeout_ms: 0 },
        custom: { handlers: HANDLERS, max_response_bytes: 32 * MiB },
      }),
    );
    const size = 8 * MiB;
    const requests = Buffer.concat([
      encodeFrame(SIZED_RESULT, 0, 1, sizePayload(size)),
      encodeFrame(HANG, 0, 2, new Uint8Array(1)),
      encodeFrame(Opcode.PING, 0, 3),
    ]);
    // socat writes what it reads to a pipe whose reader starts late: socat blocks on the pipe and stops reading the
    // socket, so the server's frames wait in its buffers across the deadline. -t: after its input ends, socat waits
    // for the server's end (it does not half-close and leave at once).
    const child = Bun.spawn(["sh", "-c", `socat -t 20 - TCP:127.0.0.1:${server.port} | (sleep 3; cat)`], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    child.stdin.write(requests);
    // The input stays open (no half-close), so the connection is not idle when the stop begins.
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(() => tcp().inFlight === 1 && tcp().openConnections === 1, 5000, "the HANG running");
    // The consumer starts reading after the deadline, well within the wait after it (as long as the deadline).
    await server.stop({ graceful: true, timeoutMs: 2000 });
    child.stdin.end();
    const output = new Uint8Array(await new Response(child.stdout).arrayBuffer());
    const stderr = await new Response(child.stderr).text();
    expect(await child.exited).toBe(0);
    expect(stderr).toBe("");
    const frames: RawFrame[] = [];
    new FrameDecoder(1 << 30).push(output, (opcode, status, requestId, payload) =>
      frames.push({ opcode, status, requestId, payload: payload.slice() }),
    );
    expect(frames.map((frame) => [frame.requestId, frame.status]).toSorted(([a], [b]) => a! - b!)).toEqual([
      [1, FrameStatus.OK],
      [2, FrameStatus.TIMEOUT],
      [3, FrameStatus.OK],
    ]);
    expect(frames.find((frame) => frame.requestId === 1)!.payload.length).toBe(size);
  }, 30_000);
});

describe("echo at the deadline", () => {
  test("what was echoed reaches a client that reads only after the deadline, then a clean end", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "echo" }, tcp: { write_high_water_bytes: 256 * 1024, send_timeout_s: 10 } }),
    );
    let received = 0;
    let mismatches = 0;
    let ending = null as string | null;
    const sent = new Uint8Array(32 * MiB);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 13) & 0xff;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        data: (_socket, chunk) => {
          for (let i = 0; i < chunk.length; i++) if (chunk[i] !== sent[received + i]) mismatches++;
          received += chunk.length;
        },
        end: () => void (ending ??= "end"),
        close: (_socket, error) => void (ending ??= error === undefined ? "close" : `error: ${error.message}`),
        error: (_socket, error) => void (ending ??= `error: ${error.message}`),
      },
    });
    socket.pause();
    // More than the kernel's buffers and the mark hold: the server stops reading, the rest stays with the client.
    let written = 0;
    const writeMore = () => void (written += Math.max(0, socket.write(sent.subarray(written))));
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(
      () => {
        writeMore();
        return tcp().pausedReads === 1 || written === sent.length;
      },
      10_000,
      "the server to stop reading",
    );
    expect(tcp().pausedReads).toBe(1);
    const deadlineMs = 500;
    const stopping = server.stop({ graceful: true, timeoutMs: deadlineMs });
    await Bun.sleep(deadlineMs + 300);
    socket.resume();
    // The client's unsent rest is written now; the server reads and drops it (so its close is no reset).
    const untilMs = performance.now() + 10_000;
    while (written < sent.length && ending === null && performance.now() < untilMs) {
      writeMore();
      await Bun.sleep(1);
    }
    await stopping;
    await waitFor(() => ending !== null, 10_000, "the end");
    expect(ending).toBe("end");
    expect(received).toBeGreaterThan(256 * 1024);
    expect(mismatches).toBe(0);
    expect(server.stats.total(Counter.disconnectedSlowReader)).toBe(0);
  }, 30_000);
});

describe("requests sent while the server drains", () => {
  test("on a connection still busy they are served as usual; it closes once everything is answered", async () => {
    await using server = await startServer(
      testConfig({
        server: { protocol: "custom" },
        pool: { threads: 1 },
        custom: { handlers: HANDLERS },
      }),
    );
    const client: RawClient = await rawConnect(server.port);
    client.socket.write(encodeFrame(BUSY_FOR, 0, 1, new Uint8Array([200])));
    const tcp = server.context.gauges.get("tcp")!;
    await waitFor(() => tcp().inFlight === 1, 5000, "the slow request running");
    const startedMs = performance.now();
    const stopping = server.stop({ graceful: true, timeoutMs: 5000 });
    client.socket.write(
      Buffer.concat([encodeFrame(Opcode.PING, 0, 2), encodeFrame(REVERSE, 0, 3, new Uint8Array([1, 2, 3]))]),
    );
    await stopping;
    await waitFor(() => client.isClosed(), 5000, "the close");
    expect(performance.now() - startedMs).toBeLessThan(3000);
    // PING inline at once; the two pool requests when they finish (in either order).
    const frames = client.frames();
    expect([frames[0]!.requestId, frames[0]!.status]).toEqual([2, FrameStatus.OK]);
    expect(frames.map((frame) => [frame.requestId, frame.status]).toSorted(([a], [b]) => a! - b!)).toEqual([
      [1, FrameStatus.OK],
      [2, FrameStatus.OK],
      [3, FrameStatus.OK],
    ]);
    expect([...frames.find((frame) => frame.requestId === 3)!.payload]).toEqual([3, 2, 1]);
  });
});
