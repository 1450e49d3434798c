// server.protocol = "tcp_proxy": the whole server relaying raw TCP to proxy.upstream, with the edge's admission, stats,
// PROXY headers both ways, reload and graceful stop.
import { describe, expect, test } from "bun:test";
import { parseProxyHeader, ProxyParse } from "../../src/net/proxy-protocol.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { proxyV2Header } from "../../src/upstream/proxy-header.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { startEchoBackend, tcpExchange, upstreamSettings } from "../helpers/upstream.ts";

function proxyConfig(servers: string[], overrides: Parameters<typeof testConfig>[0] = {}) {
  return testConfig({
    ...overrides,
    server: { protocol: "tcp_proxy", ...overrides.server },
    proxy: { upstream: "app", ...overrides.proxy },
    upstreams: [upstreamSettings(servers)],
  } as Parameters<typeof testConfig>[0]);
}

const encoder = new TextEncoder();

describe("tcp_proxy server", () => {
  test("relays each connection to a server of proxy.upstream and counts connections and bytes", async () => {
    using a = startEchoBackend();
    using b = startEchoBackend();
    await using server = await startServer(proxyConfig([a.address, b.address]));
    for (let i = 0; i < 4; i++) {
      const reply = await tcpExchange(server.port, encoder.encode(`hello ${i}`));
      expect(new TextDecoder().decode(reply)).toBe(`hello ${i}`);
    }
    expect(a.stats.connections + b.stats.connections).toBe(4);
    expect(a.stats.connections).toBe(2);
    await waitFor(() => server.stats.total(Counter.connectionsClosed) === 4, 5000, "the connections to close");
    expect(server.stats.total(Counter.connectionsAccepted)).toBe(4);
    expect(server.stats.total(Counter.bytesRead)).toBe(4 * 7);
    expect(server.stats.total(Counter.bytesWritten)).toBe(4 * 7);
    const numbers = server.context.upstreamStats!.read().find((n) => n.server === a.address)!;
    expect(numbers.counters.tcpConnections).toBe(2);
    expect(numbers.counters.bytesToServer).toBe(2 * 7);
  });

  test("the edge applies first: a denied client never reaches the server", async () => {
    using backend = startEchoBackend();
    await using server = await startServer(proxyConfig([backend.address], { net: { deny: ["127.0.0.0/8"] } }));
    expect((await tcpExchange(server.port, encoder.encode("x"))).byteLength).toBe(0);
    expect(backend.stats.connections).toBe(0);
    expect(server.stats.total(Counter.refusedDenied)).toBe(1);
  });

  test("a trusted proxy's PROXY header names the client, and send_proxy_protocol passes it on to the server", async () => {
    let first: Uint8Array = new Uint8Array(0);
    using backend = startEchoBackend((bytes) => {
      first = bytes;
    });
    await using server = await startServer(
      proxyConfig([backend.address], {
        net: { trusted_proxies: ["127.0.0.1"], proxy_protocol: true },
        proxy: { send_proxy_protocol: true },
      }),
    );
    const incoming = proxyV2Header("203.0.113.9", 40123, "127.0.0.1", server.port);
    const payload = new Uint8Array([...incoming, ...encoder.encode("payload")]);
    const reply = await tcpExchange(server.port, payload);
    const header = parseProxyHeader(first);
    expect(header.result).toBe(ProxyParse.OK);
    expect([header.address, header.port]).toEqual(["203.0.113.9", 40123]);
    expect(new TextDecoder().decode(reply.subarray(header.headerBytes))).toBe("payload");
  });

  test("a reload moves new connections to another group", async () => {
    using first = startEchoBackend();
    using second = startEchoBackend();
    const config = testConfig({
      server: { protocol: "tcp_proxy" },
      proxy: { upstream: "one" },
      upstreams: [
        upstreamSettings([first.address], { name: "one" }),
        upstreamSettings([second.address], { name: "two" }),
      ],
    } as Parameters<typeof testConfig>[0]);
    await using server = await startServer(config);
    expect(new TextDecoder().decode(await tcpExchange(server.port, encoder.encode("a")))).toBe("a");
    const report = await server.reload({ ...config, proxy: { ...config.proxy, upstream: "two" } });
    expect(report.applied).toEqual(["proxy.upstream"]);
    expect(new TextDecoder().decode(await tcpExchange(server.port, encoder.encode("b")))).toBe("b");
    expect([first.stats.connections, second.stats.connections]).toEqual([1, 1]);
  });

  test("a graceful stop lets an open relay finish within the deadline", async () => {
    using backend = startEchoBackend();
    const server = await startServer(proxyConfig([backend.address]));
    const chunks: Uint8Array[] = [];
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      allowHalfOpen: true,
      socket: { data: (_s, chunk) => void chunks.push(new Uint8Array(chunk)), end: (s) => void s.end() },
    });
    socket.write("before");
    await waitFor(() => chunks.length > 0, 5000, "the first echo");
    const stopping = server.stop({ graceful: true, timeoutMs: 5000 });
    socket.write(" during");
    socket.shutdown();
    await stopping;
    expect(new TextDecoder().decode(Buffer.concat(chunks))).toBe("before during");
  });
});
