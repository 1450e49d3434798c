// Worker pool behind the custom protocol, over real sockets: task timeout from start, the budget for large frames,
// pool.max_queue over the rings.
import { expect, test } from "bun:test";
import { HpsClient } from "../../src/client/hps-client.ts";
import { FrameStatus } from "../../src/protocol/hps1.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { encodeFrame } from "../../src/tcp/frame.ts";
import { rawConnect, testConfig, waitFor, type RawFrame } from "../helpers/common.ts";

const HANDLERS = new URL("../fixtures/pool-handlers.ts", import.meta.url).pathname;

/** A payload for the fixture's 0x87 (busy for payload[0] ms, then echo) of `length` bytes. */
function busyFor(ms: number, length = 1): Uint8Array {
  const bytes = new Uint8Array(length);
  bytes[0] = ms;
  return bytes;
}

test("pipelined tasks waiting behind each other on one worker do not time out; each runs well below the limit", async () => {
  await using server = await startServer(
    testConfig({
      server: { protocol: "custom" },
      pool: { threads: 1, task_timeout_ms: 250 },
      custom: { handlers: HANDLERS, max_in_flight: 64 },
    }),
  );
  using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 10_000 });
  // 24 x 25 ms: the last one answers ~600 ms after it was sent
  const replies = await Promise.all(Array.from({ length: 24 }, () => client.request(0x87, busyFor(25))));
  expect(replies.map((reply) => reply.status)).toEqual(new Array<number>(24).fill(FrameStatus.OK));
  expect(server.stats.total(Counter.poolTimedOut)).toBe(0);
  expect(server.stats.total(Counter.poolCrashed)).toBe(0);
});

test("large frames past the payload budget (memory.arena_bytes) are answered busy; the connection stays usable", async () => {
  await using server = await startServer(
    testConfig({
      server: { protocol: "custom" },
      pool: { threads: 1, task_timeout_ms: 0 },
      memory: { arena_bytes: 256 * 1024 },
      limits: { max_request_bytes: 1024 * 1024 },
      custom: { handlers: HANDLERS },
    }),
  );
  using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 10_000 });
  // The first holds its 100 KB for 200 ms; the second waits behind it; the third would pass 256 KiB.
  const replies = await Promise.all([
    client.request(0x87, busyFor(200, 100_000)),
    client.request(0x87, busyFor(0, 100_000)),
    client.request(0x87, busyFor(0, 100_000)),
  ]);
  expect(replies.map((reply) => reply.status)).toEqual([FrameStatus.OK, FrameStatus.OK, FrameStatus.BUSY]);
  expect(new TextDecoder().decode(replies[2]!.payload)).toContain("memory.arena_bytes");
  expect(replies[1]!.payload).toEqual(busyFor(0, 100_000));
  expect(server.stats.total(Counter.poolRejected)).toBe(1);
  // the budget came back with the answers
  const after = await client.request(0x87, busyFor(0, 250_000));
  expect(after.status).toBe(FrameStatus.OK);
  expect(after.payload.length).toBe(250_000);
});

test("pool.threads = 1, pool.max_queue = 3, 40 synchronous tasks at once: at most 1 + 3 run, the rest are answered busy in the same I/O round", async () => {
  await using server = await startServer(
    testConfig({
      server: { protocol: "custom" },
      pool: { threads: 1, max_queue: 3, task_timeout_ms: 0 },
      custom: { handlers: HANDLERS },
    }),
  );
  const client = await rawConnect(server.port);
  const tasks = 40;
  const PING_ID = 1000;
  // The tasks, then a PING, in one write: the PING is answered inline in the read that carries them all, so a busy
  // answer that arrives no later than the PING's was sent in the same I/O round (no wall clock needed: the machine
  // may be loaded). Each task keeps the worker busy 250 ms.
  client.socket.write(
    Buffer.concat([
      ...Array.from({ length: tasks }, (_, i) => encodeFrame(0x87, 0, i + 1, busyFor(250))),
      encodeFrame(0x00, 0, PING_ID),
    ]),
  );
  await waitFor(() => client.frames().length === tasks + 1, 10_000, "every answer");
  const frames = client.frames();
  const isBusy = (frame: RawFrame) => frame.status === FrameStatus.BUSY;
  const completed = frames.filter((frame) => frame.status === FrameStatus.OK && frame.requestId !== PING_ID);
  const busy = frames.filter(isBusy);
  expect(completed.length).toBeLessThanOrEqual(1 + 3);
  expect(completed.length + busy.length).toBe(tasks);
  expect(new TextDecoder().decode(busy[0]!.payload)).toContain("queue full");
  const pingAt = frames.findIndex((frame) => frame.requestId === PING_ID);
  expect(frames.slice(0, pingAt).every(isBusy)).toBe(true);
  expect(frames.slice(pingAt + 1).every((frame) => !isBusy(frame))).toBe(true);
  expect(server.stats.total(Counter.poolRejected)).toBe(busy.length);
  client.socket.end();
});
