// Upstreams with several I/O threads: every thread runs its own groups and pools, and counts into the shared stats.
import { describe, expect, test } from "bun:test";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { startBackend, startEchoBackend, tcpExchange, upstreamSettings } from "../helpers/upstream.ts";

describe("upstreams with server.io_threads = 2", () => {
  test("http: requests accepted by either thread are proxied, and all are counted in one place", async () => {
    await using backend = startBackend(() => new Response("ok"));
    await using server = await startServer(
      testConfig({
        server: { io_threads: 2 },
        http: { routes: [{ path_prefix: "/", upstream: "app", root: "", strip_prefix: false }] },
        upstreams: [upstreamSettings([backend.address])],
      } as ConfigOverrides),
    );
    // Fresh connections (no keep-alive) so the kernel spreads them over both threads' listeners.
    const answers = await Promise.all(
      Array.from({ length: 40 }, () =>
        fetch(`http://127.0.0.1:${server.port}/`, { headers: { Connection: "close" } }).then((r) => r.text()),
      ),
    );
    expect(answers).toEqual(Array(40).fill("ok"));
    const counted = () =>
      server.context.upstreamStats!.read().find((numbers) => numbers.server === backend.address)?.counters
        .responses2xx ?? 0;
    await waitFor(() => counted() === 40, 5000, "every thread's count");
  });

  test("tcp_proxy: connections accepted by either thread are relayed", async () => {
    using backend = startEchoBackend();
    await using server = await startServer(
      testConfig({
        server: { io_threads: 2, protocol: "tcp_proxy" },
        proxy: { upstream: "app" },
        upstreams: [upstreamSettings([backend.address])],
      } as ConfigOverrides),
    );
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => tcpExchange(server.port, new TextEncoder().encode(`n${i}`))),
    );
    expect(replies.map((reply) => new TextDecoder().decode(reply))).toEqual(
      Array.from({ length: 20 }, (_, i) => `n${i}`),
    );
  });
});
