// HpsClient: out-of-order responses matched by id, per-request timeout, connection errors reach every pending request.
import { expect, test } from "bun:test";
import { HpsClient } from "../../src/client/hps-client.ts";
import { FrameDecoder, encodeFrame } from "../../src/tcp/frame.ts";
import { waitFor } from "../helpers/common.ts";

/** A tiny scripted HPS/1 server: collects requests and lets the test answer them in any order. */
async function scriptedServer() {
  const requests: { requestId: number; payload: Uint8Array }[] = [];
  let peer: import("bun").Socket<undefined> | null = null;
  const decoder = new FrameDecoder(1 << 20);
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      binaryType: "uint8array",
      open: (socket) => {
        peer = socket;
      },
      data: (_socket, chunk) => {
        decoder.push(chunk, (_opcode, _status, requestId, payload) =>
          requests.push({ requestId, payload: payload.slice() }),
        );
      },
    },
  });
  return { listener, requests, peer: () => peer! };
}

test("responses out of order are matched to their requests", async () => {
  const server = await scriptedServer();
  using client = await HpsClient.connect("127.0.0.1", server.listener.port, { timeoutMs: 5000 });
  const a = client.request(1, new Uint8Array([1]));
  const b = client.request(1, new Uint8Array([2]));
  await waitFor(() => server.requests.length >= 2, 5000, "requests at the server");
  const [first, second] = server.requests;
  server
    .peer()
    .write(
      Buffer.concat([
        encodeFrame(1, 0, second!.requestId, new Uint8Array([20])),
        encodeFrame(1, 4, first!.requestId, new Uint8Array([10])),
      ]),
    );
  expect(await a).toEqual({ status: 4, payload: new Uint8Array([10]) });
  expect(await b).toEqual({ status: 0, payload: new Uint8Array([20]) });
  server.listener.stop(true);
});

test("a request without an answer times out; a closed connection rejects every pending request", async () => {
  const server = await scriptedServer();
  const client = await HpsClient.connect("127.0.0.1", server.listener.port);
  await expect(client.request(0, undefined, { timeoutMs: 50 })).rejects.toThrow("timed out");
  const pending = [client.request(0), client.request(1, new Uint8Array([1]))].map((request) =>
    request.then(
      () => "answered",
      (error: Error) => error.message,
    ),
  );
  await waitFor(() => server.requests.length >= 3, 5000, "requests at the server");
  server.listener.stop(true);
  expect(await Promise.all(pending)).toEqual(["connection closed by the server", "connection closed by the server"]);
  await expect(client.request(0)).rejects.toThrow();
  expect(client.pendingRequests()).toBe(0);
});

test("a connection-level error frame (id 0) rejects pending requests with its message", async () => {
  const server = await scriptedServer();
  using client = await HpsClient.connect("127.0.0.1", server.listener.port, { timeoutMs: 5000 });
  const pending = client.request(0);
  await waitFor(() => server.requests.length >= 1, 5000, "requests at the server");
  server.peer().write(encodeFrame(0, 3, 0, new TextEncoder().encode("bad frame")));
  await expect(pending).rejects.toThrow("bad frame");
  server.listener.stop(true);
});
