// Graceful stop of the TCP listener over real sockets: requests already sent when the drain begins are read and answered.
import { expect, test } from "bun:test";
import { startServer } from "../../src/server.ts";
import { FrameStatus, Opcode, encodeFrame } from "../../src/tcp/frame.ts";
import { rawConnect, testConfig, type RawClient } from "../helpers/common.ts";

/** The frames a client received, with payload sizes. */
function answers(client: RawClient): { opcode: number; status: number; requestId: number; payloadBytes: number }[] {
  return client.frames().map(({ payload, ...frame }) => ({ ...frame, payloadBytes: payload.length }));
}

test("frames written just before a graceful stop begins (not yet read by the server) are answered before the connection closes", async () => {
  await using server = await startServer(
    testConfig({ server: { protocol: "custom", shutdown_timeout_s: 5 }, pool: { threads: 1 } }),
  );
  const clients = await Promise.all(Array.from({ length: 4 }, () => rawConnect(server.port)));
  // Written and the stop begun in the same tick: the server has had no chance to read the frames yet.
  for (const { socket } of clients) {
    const written = socket.write(
      new Uint8Array([...encodeFrame(Opcode.PING, 0, 7), ...encodeFrame(Opcode.HASH, 0, 8, new Uint8Array(64))]),
    );
    expect(written).toBe(12 + 12 + 64);
  }
  const startedMs = performance.now();
  const stopping = server.stop({ graceful: true, timeoutMs: 5000 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closedAll = Promise.all(clients.map((client) => client.closed));
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), 4000)));
  expect(await Promise.race([closedAll.then(() => "closed" as const), timedOut])).toBe("closed");
  clearTimeout(timer);
  await stopping;
  // Answered, then closed: well within the drain deadline (it did not wait for it).
  expect(performance.now() - startedMs).toBeLessThan(3000);
  for (const client of clients) {
    const byId = answers(client).toSorted((a, b) => a.requestId - b.requestId);
    expect(byId).toEqual([
      { opcode: Opcode.PING, status: FrameStatus.OK, requestId: 7, payloadBytes: 0 },
      { opcode: Opcode.HASH, status: FrameStatus.OK, requestId: 8, payloadBytes: 32 },
    ]);
  }
});

test("a graceful stop with nothing sent closes idle connections promptly", async () => {
  await using server = await startServer(
    testConfig({ server: { protocol: "custom", shutdown_timeout_s: 5 }, pool: { threads: 1 } }),
  );
  const clients = await Promise.all(Array.from({ length: 3 }, () => rawConnect(server.port)));
  const startedMs = performance.now();
  await server.stop({ graceful: true, timeoutMs: 5000 });
  expect(performance.now() - startedMs).toBeLessThan(2000);
  await Promise.all(clients.map((client) => client.closed));
  for (const client of clients) expect(answers(client)).toEqual([]);
});
