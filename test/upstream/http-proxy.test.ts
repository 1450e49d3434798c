// The HTTP proxy core against real Bun backends: bodies both ways, keep-alive reuse, failures and their answers.
import { describe, expect, test } from "bun:test";
import { startBackend, startProxyFront, upstreamSettings } from "../helpers/upstream.ts";

describe("http proxy", () => {
  test("passes a GET through and reuses one upstream connection for sequential requests", async () => {
    await using backend = startBackend(
      (request) => new Response(`hello ${new URL(request.url).pathname}`, { headers: { "x-backend": "1" } }),
    );
    await using front = startProxyFront(upstreamSettings([backend.address]));
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`${front.base}/a/${i}?q=1`);
      expect(response.status).toBe(200);
      expect(response.headers.get("x-backend")).toBe("1");
      expect(response.headers.get("via")).toBe("1.1 hps");
      expect(await response.text()).toBe(`hello /a/${i}`);
    }
    expect(backend.requests).toBe(5);
    expect(backend.peerPorts.size).toBe(1);
  });
});
