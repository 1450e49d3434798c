// Backends that misbehave: whatever they send, the client gets an answer (the server's, or hps's 502/504) at once,
// never a hung request, and the server's connection is not reused.
import { describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/common.ts";
import { startProxyFront, startRawBackend, upstreamSettings } from "../helpers/upstream.ts";

/** One GET through a fresh front to a raw backend that answers every request with `response`. */
async function answerTo(response: string, readTimeoutSeconds = 30) {
  const backend = startRawBackend((_head, socket) => void socket.write(Buffer.from(response, "latin1")));
  const front = startProxyFront(upstreamSettings([backend.address], { read_timeout_s: readTimeoutSeconds }));
  const startedMs = performance.now();
  try {
    const answer = await fetch(`${front.base}/x`, { signal: AbortSignal.timeout(3000) });
    const body = await answer.text();
    return { status: answer.status, body, ms: performance.now() - startedMs, front, backend };
  } finally {
    await front.stop();
    backend.stop();
  }
}

function counters(front: Awaited<ReturnType<typeof answerTo>>["front"], server: string) {
  return front.stats.read().find((numbers) => numbers.server === server)!.counters;
}

describe("http proxy: bad responses", () => {
  test("a status code outside 100-599 is not a response: 502 at once", async () => {
    for (const status of ["600", "999"]) {
      const {
        status: answered,
        front,
        backend,
      } = await answerTo(`HTTP/1.1 ${status} Odd\r\nContent-Length: 2\r\n\r\nok`);
      expect(answered).toBe(502);
      expect(counters(front, backend.address).badResponses).toBe(1);
    }
  });

  test("a 101 Switching Protocols nobody asked for is a bad response: 502 at once, not 504 after read_timeout_s", async () => {
    const { status, ms, front, backend } = await answerTo(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
      2,
    );
    expect(status).toBe(502);
    expect(ms).toBeLessThan(1500);
    const numbers = counters(front, backend.address);
    expect(numbers.badResponses).toBe(1);
    expect(numbers.readTimeouts).toBe(0);
    await waitFor(() => front.group.servers[0]!.inFlight === 0, 2000, "the request to leave the server");
  });
});

/** python3 (Bun cannot reset a connection): answers with a head and "hello", no length, then resets (SO_LINGER 0). */
const RESETTING_BACKEND = `
import socket, struct, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(16)
print(server.getsockname()[1], flush=True)
while True:
    connection, _ = server.accept()
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello")
    sys.stdin.readline()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
`;

describe("http proxy: a body until close", () => {
  test("cut by a reset, it does not reach the client as complete (no last chunk; the connection is cut)", async () => {
    const python = Bun.spawn(["python3", "-I", "-S", "-c", RESETTING_BACKEND], { stdin: "pipe", stdout: "pipe" });
    try {
      const port = Number(new TextDecoder().decode((await python.stdout.getReader().read()).value).trim());
      await using front = startProxyFront(upstreamSettings([`127.0.0.1:${port}`]));
      const response = await fetch(`${front.base}/x`, { signal: AbortSignal.timeout(20_000) });
      expect(response.status).toBe(200);
      const reader = response.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe("hello");
      python.stdin.write("reset\n");
      python.stdin.flush();
      // A complete body would end with done; a cut one fails.
      const end = await reader.read().then(
        (chunk) => (chunk.done ? "complete" : "more"),
        () => "cut",
      );
      expect(end).toBe("cut");
      await waitFor(
        () => counters(front, `127.0.0.1:${port}`).lost + counters(front, `127.0.0.1:${port}`).badResponses === 1,
        5000,
        "the failure to be counted",
      );
    } finally {
      python.kill();
    }
  }, 30_000); // python3 alone can take seconds to start on a loaded machine
});
