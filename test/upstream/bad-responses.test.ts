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
