// TCP listener admission: refusal answers (HPS/1 error frames, echo close) and their counters, per-request limits,
// and PROXY protocol v1/v2 from trusted proxies.
import { describe, expect, test } from "bun:test";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { ProxyHeaderReader, ProxyParse } from "../../src/net/proxy-protocol.ts";
import { Counter } from "../../src/stats/stats.ts";
import { FrameStatus, Opcode, encodeFrame } from "../../src/tcp/frame.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { rawConnect, testContext, waitFor, type RawClient } from "../helpers/common.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

async function server(protocol: "echo" | "custom", overrides: ConfigOverrides = {}) {
  const context = testContext({ ...overrides, server: { protocol } });
  const listener = await startTcp(context, new InlineRunner());
  return {
    port: listener.port,
    stats: context.stats,
    /** Connection states held by the listener (admitted or still awaiting a PROXY header). */
    openConnections: () => listener.openConnections(),
    [Symbol.asyncDispose]: () => listener.stop({ graceful: false, timeoutMs: 0 }),
  };
}

/** The frames a client received, payloads as text. */
const framesOf = (client: RawClient) => client.frames().map((frame) => ({ ...frame, payload: text(frame.payload) }));

const PROXY_V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A PROXY v2 header: command 1 (PROXY) with an IPv4 or IPv6 source, or command 0 (LOCAL) with no address. */
function proxyV2(source: number[] | null): Uint8Array {
  if (source === null) return new Uint8Array([...PROXY_V2_SIGNATURE, 0x20, 0x00, 0, 0]);
  const isV6 = source.length === 16;
  const body = isV6
    ? [...source, ...new Array(16).fill(0), 0x30, 0x39, 0x01, 0xbb]
    : [...source, 10, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb];
  return new Uint8Array([...PROXY_V2_SIGNATURE, 0x21, isV6 ? 0x21 : 0x11, 0, body.length, ...body]);
}

const proxyV1 = (client: string) => bytes(`PROXY TCP4 ${client} 10.0.0.1 40000 443\r\n`);
const ping = (requestId: number) => encodeFrame(Opcode.PING, 0, requestId);
const statuses = (client: RawClient) => client.frames().map((frame) => [frame.requestId, frame.status]);

describe("refused connections", () => {
  test("custom over max_connections: error frame (id 0, status 4 busy, 'too many connections'), then close", async () => {
    await using tcp = await server("custom", { limits: { max_connections: 1, max_connections_per_ip: 1 } });
    const admitted = await rawConnect(tcp.port);
    await waitFor(() => tcp.stats.total(Counter.connectionsAccepted) === 1, 5000, "first connection");
    const refused = await rawConnect(tcp.port);
    await waitFor(() => refused.isClosed(), 5000, "refused connection closed");
    expect(framesOf(refused)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "too many connections" },
    ]);
    expect(tcp.stats.total(Counter.refusedMaxConnections)).toBe(1);
    expect(tcp.stats.total(Counter.connectionsRefused)).toBe(1);
    // The admitted one is untouched.
    admitted.socket.write(ping(3));
    await waitFor(() => admitted.frames().length === 1, 5000, "PING answer");
    expect(statuses(admitted)).toEqual([[3, FrameStatus.OK]]);
    admitted.socket.end();
  });

  test("custom over max_connections_per_ip: 'too many connections from your address'", async () => {
    await using tcp = await server("custom", { limits: { max_connections: 100, max_connections_per_ip: 1 } });
    const admitted = await rawConnect(tcp.port);
    await waitFor(() => tcp.stats.total(Counter.connectionsAccepted) === 1, 5000, "first connection");
    const refused = await rawConnect(tcp.port);
    await waitFor(() => refused.isClosed(), 5000, "refused connection closed");
    expect(framesOf(refused)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "too many connections from your address" },
    ]);
    expect(tcp.stats.total(Counter.refusedPerIp)).toBe(1);
    admitted.socket.end();
  });

  test("custom from a denied address: 'address not allowed'; never counted as accepted", async () => {
    await using tcp = await server("custom", { net: { deny: ["127.0.0.0/8"] } });
    const refused = await rawConnect(tcp.port);
    await waitFor(() => refused.isClosed(), 5000, "refused connection closed");
    expect(framesOf(refused)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "address not allowed" },
    ]);
    expect(tcp.stats.total(Counter.refusedDenied)).toBe(1);
    expect(tcp.stats.total(Counter.connectionsAccepted)).toBe(0);
    expect(tcp.stats.total(Counter.activeConnections)).toBe(0);
  });

  test("echo over max_connections: closed at once without a byte, counted; the admitted one still echoes", async () => {
    await using tcp = await server("echo", { limits: { max_connections: 1, max_connections_per_ip: 1 } });
    const admitted = await rawConnect(tcp.port);
    await waitFor(() => tcp.stats.total(Counter.connectionsAccepted) === 1, 5000, "first connection");
    const refused = await rawConnect(tcp.port);
    await waitFor(() => refused.isClosed(), 5000, "refused connection closed");
    expect(refused.received().length).toBe(0);
    expect(tcp.stats.total(Counter.connectionsRefused)).toBe(1);
    expect(tcp.stats.total(Counter.refusedMaxConnections)).toBe(1);
    admitted.socket.write("ping");
    await waitFor(() => admitted.received().length === 4, 5000, "the echo");
    expect(text(admitted.received())).toBe("ping");
    admitted.socket.end();
  });

  test("echo over max_connections_per_ip: refused and counted as per-IP; closing one makes room again", async () => {
    await using tcp = await server("echo", { limits: { max_connections: 100, max_connections_per_ip: 2 } });
    const open = [await rawConnect(tcp.port), await rawConnect(tcp.port)];
    await waitFor(() => tcp.stats.total(Counter.connectionsAccepted) === 2, 5000, "two connections");
    const refused = await rawConnect(tcp.port);
    await waitFor(() => refused.isClosed(), 5000, "the refused connection to be closed");
    expect(tcp.stats.total(Counter.refusedPerIp)).toBe(1);
    open[0]!.socket.end();
    await waitFor(() => tcp.stats.total(Counter.connectionsClosed) === 1, 5000, "the close");
    const again = await rawConnect(tcp.port);
    again.socket.write("x");
    await waitFor(() => again.received().length === 1, 5000, "the echo on the new connection");
    again.socket.end();
    open[1]!.socket.end();
  });

  test("echo from a denied address: closed at once and counted, never accepted", async () => {
    await using tcp = await server("echo", { net: { deny: ["127.0.0.1/32"] } });
    const refused = await rawConnect(tcp.port);
    await waitFor(() => refused.isClosed(), 5000, "the denied connection to be closed");
    expect(tcp.stats.total(Counter.refusedDenied)).toBe(1);
    expect(tcp.stats.total(Counter.connectionsAccepted)).toBe(0);
  });
});

describe("limits on admitted HPS/1 connections", () => {
  test("over the rate: status 5 per request and the connection stays open", async () => {
    await using tcp = await server("custom", { rate_limit: { enabled: true, requests: 2, window_s: 60 } });
    const client = await rawConnect(tcp.port);
    for (let id = 1; id <= 4; id++) client.socket.write(ping(id));
    await waitFor(() => client.frames().length === 4, 5000, "four answers");
    expect(statuses(client).sort((a, b) => a[0]! - b[0]!)).toEqual([
      [1, FrameStatus.OK],
      [2, FrameStatus.OK],
      [3, FrameStatus.RATE_LIMITED],
      [4, FrameStatus.RATE_LIMITED],
    ]);
    expect(client.isClosed()).toBe(false);
    expect(tcp.stats.total(Counter.rateLimited)).toBe(2);
    client.socket.end();
  });

  test("an idle connection with half a frame is cut at connection_timeout_s and counted as timed out", async () => {
    await using tcp = await server("custom", { limits: { connection_timeout_s: 0.3 } });
    const client = await rawConnect(tcp.port);
    client.socket.write(ping(1).subarray(0, 5));
    await waitFor(() => client.isClosed(), 5000, "the idle connection to be cut");
    expect(tcp.stats.total(Counter.connectionsTimedOut)).toBe(1);
  });
});

describe("PROXY protocol from a trusted proxy", () => {
  const trusted: ConfigOverrides = { net: { proxy_protocol: true, trusted_proxies: ["127.0.0.1/32"] } };

  test("v1: the header's client is the one per-IP limits count; data after the header in the same write is served", async () => {
    await using tcp = await server("custom", {
      ...trusted,
      limits: { max_connections: 100, max_connections_per_ip: 1 },
    });
    const first = await rawConnect(tcp.port);
    first.socket.write(Buffer.concat([proxyV1("203.0.113.7"), ping(1)]));
    await waitFor(() => first.frames().length === 1, 5000, "PING after the header");
    expect(statuses(first)).toEqual([[1, FrameStatus.OK]]);
    // Same proxy, same client: over the per-IP limit. Same proxy, another client: admitted.
    const sameClient = await rawConnect(tcp.port);
    sameClient.socket.write(proxyV1("203.0.113.7"));
    await waitFor(() => sameClient.isClosed(), 5000, "second connection of the same client refused");
    expect(framesOf(sameClient)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "too many connections from your address" },
    ]);
    const otherClient = await rawConnect(tcp.port);
    otherClient.socket.write(Buffer.concat([proxyV1("203.0.113.8"), ping(2)]));
    await waitFor(() => otherClient.frames().length === 1, 5000, "PING from the other client");
    expect(statuses(otherClient)).toEqual([[2, FrameStatus.OK]]);
    expect(tcp.stats.total(Counter.refusedPerIp)).toBe(1);
    expect(tcp.stats.total(Counter.connectionsAccepted)).toBe(2);
    expect(otherClient.isClosed()).toBe(false);
    first.socket.end();
    otherClient.socket.end();
  });

  test("v2 split across writes (IPv4 and IPv6 clients): each client has its own rate-limit bucket", async () => {
    await using tcp = await server("custom", { ...trusted, rate_limit: { enabled: true, requests: 1, window_s: 60 } });
    const sources = [
      [198, 51, 100, 20],
      [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42],
    ];
    for (const source of sources) {
      const client = await rawConnect(tcp.port);
      const header = proxyV2(source);
      // Header cut inside the signature, then the rest of it with two PINGs behind it.
      const readBefore = tcp.stats.total(Counter.bytesRead);
      client.socket.write(header.subarray(0, 7));
      await waitFor(() => tcp.stats.total(Counter.bytesRead) === readBefore + 7, 5000, "first piece read on its own");
      client.socket.write(Buffer.concat([header.subarray(7), ping(1), ping(2)]));
      await waitFor(() => client.frames().length === 2, 5000, "two answers");
      expect(statuses(client)).toEqual([
        [1, FrameStatus.OK],
        [2, FrameStatus.RATE_LIMITED],
      ]);
      client.socket.end();
      await waitFor(() => tcp.stats.total(Counter.activeConnections) === 0, 5000, "closed");
    }
    expect(tcp.stats.total(Counter.rateLimited)).toBe(2);
  });

  test("v2 LOCAL (the proxy's own health check): the proxy is the client", async () => {
    await using tcp = await server("custom", { ...trusted, net: { ...trusted.net, deny: ["127.0.0.1/32"] } });
    const client = await rawConnect(tcp.port);
    client.socket.write(Buffer.concat([proxyV2(null), ping(1)]));
    await waitFor(() => client.isClosed(), 5000, "the denied proxy itself is refused");
    expect(framesOf(client)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "address not allowed" },
    ]);
    expect(tcp.stats.total(Counter.refusedDenied)).toBe(1);
  });

  test("a client the header names can be denied although the proxy is allowed", async () => {
    await using tcp = await server("custom", { ...trusted, net: { ...trusted.net, deny: ["203.0.113.0/24"] } });
    const denied = await rawConnect(tcp.port);
    denied.socket.write(Buffer.concat([proxyV1("203.0.113.9"), ping(1)]));
    await waitFor(() => denied.isClosed(), 5000, "denied client closed");
    expect(framesOf(denied)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "address not allowed" },
    ]);
    const allowed = await rawConnect(tcp.port);
    allowed.socket.write(Buffer.concat([proxyV1("192.0.2.1"), ping(2)]));
    await waitFor(() => allowed.frames().length === 1, 5000, "allowed client answered");
    expect(tcp.stats.total(Counter.refusedDenied)).toBe(1);
    expect(tcp.stats.total(Counter.activeConnections)).toBe(1);
    allowed.socket.end();
  });

  test("echo: the header is not echoed, the bytes after it are", async () => {
    await using tcp = await server("echo", trusted);
    const client = await rawConnect(tcp.port);
    client.socket.write(Buffer.concat([proxyV1("203.0.113.7"), bytes("hello")]));
    await waitFor(() => client.received().length === 5, 5000, "echo");
    client.socket.write(bytes(" world"));
    await waitFor(() => client.received().length === 11, 5000, "echo");
    expect(text(client.received())).toBe("hello world");
    client.socket.end();
  });

  test("a malformed header closes the connection without an answer, counted as a protocol error", async () => {
    await using tcp = await server("custom", trusted);
    const malformed = [
      bytes("PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n"),
      ping(1), // no header at all: a frame where the header belongs
      new Uint8Array([...PROXY_V2_SIGNATURE, 0x31, 0x11, 0, 12]), // version 3
    ];
    for (const [index, header] of malformed.entries()) {
      const client = await rawConnect(tcp.port);
      client.socket.write(header);
      await waitFor(() => client.isClosed(), 5000, `malformed header ${index} closes`);
      expect(client.received().length).toBe(0);
      expect(tcp.stats.total(Counter.errorsProtocol)).toBe(index + 1);
    }
    expect(tcp.stats.total(Counter.connectionsAccepted)).toBe(0);
    await waitFor(() => tcp.openConnections() === 0, 5000, "every connection state released");
  });

  test("a trusted proxy that never sends its header is cut at connection_timeout_s", async () => {
    await using tcp = await server("custom", { ...trusted, limits: { connection_timeout_s: 0.2 } });
    const client = await rawConnect(tcp.port);
    client.socket.write(proxyV1("203.0.113.7").subarray(0, 10));
    await waitFor(() => client.isClosed(), 5000, "silent proxy cut");
    expect(tcp.stats.total(Counter.connectionsTimedOut)).toBe(1);
    expect(tcp.stats.total(Counter.connectionsAccepted)).toBe(0);
    await waitFor(() => tcp.openConnections() === 0, 5000, "connection state released");
  });
});

describe("PROXY protocol from a peer that is not a trusted proxy", () => {
  test("no header is expected: frames are served at once and the peer is the client", async () => {
    await using tcp = await server("custom", {
      net: { proxy_protocol: true, trusted_proxies: ["10.0.0.0/8"] },
      limits: { max_connections: 100, max_connections_per_ip: 1 },
    });
    const client = await rawConnect(tcp.port);
    client.socket.write(ping(1));
    await waitFor(() => client.frames().length === 1, 5000, "PING answer");
    expect(statuses(client)).toEqual([[1, FrameStatus.OK]]);
    // A PROXY header from it is not believed: it is just bytes that are not a frame.
    const spoofing = await rawConnect(tcp.port);
    spoofing.socket.write(proxyV1("203.0.113.7"));
    await waitFor(() => spoofing.isClosed(), 5000, "second connection from the peer refused");
    expect(framesOf(spoofing)).toEqual([
      { opcode: 0, status: FrameStatus.BUSY, requestId: 0, payload: "too many connections from your address" },
    ]);
    client.socket.write(proxyV1("203.0.113.7"));
    await waitFor(() => client.isClosed(), 5000, "header bytes are a bad frame");
    expect(statuses(client)).toEqual([
      [1, FrameStatus.OK],
      [0, FrameStatus.BAD_FRAME],
    ]);
  });
});

describe("PROXY header reader on socket chunks", () => {
  test("Bun hands each data event a fresh chunk that nothing changes afterwards (what keeping views relies on)", async () => {
    const kept: { view: Uint8Array; copy: Uint8Array }[] = [];
    const listener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk) => {
          kept.push({ view: chunk, copy: chunk.slice() });
        },
      },
    });
    try {
      const client = await Bun.connect({ hostname: "127.0.0.1", port: listener.port, socket: { data: () => {} } });
      let sentBytes = 0;
      for (let i = 0; i < 50; i++) {
        // One write at a time, each read before the next: 50 separate data events.
        client.write(new Uint8Array(1000 + i).fill(i));
        sentBytes += 1000 + i;
        await waitFor(() => kept.reduce((sum, k) => sum + k.view.length, 0) === sentBytes, 5000, `write ${i} read`);
      }
      client.end();
      expect(kept.length).toBeGreaterThanOrEqual(2);
      expect(kept.filter((k) => Buffer.compare(k.view, k.copy) !== 0).length).toBe(0);
      expect(kept.filter((k, i) => i > 0 && k.view.buffer === kept[i - 1]!.view.buffer).length).toBe(0);
    } finally {
      listener.stop(true);
    }
  });

  test("a stable chunk holding part of a header is kept as a view, not copied", () => {
    const header = proxyV1("203.0.113.7");
    const first = header.slice(0, 20);
    const reader = new ProxyHeaderReader();
    expect(reader.push(first, true).result).toBe(ProxyParse.NEED_MORE);
    // Only a view shows this change (the listener never changes a chunk; this proves no copy was taken).
    first.set(bytes("PROXY TCP4 198.51.10"));
    expect(reader.push(header.subarray(20), true)).toMatchObject({ result: ProxyParse.OK, address: "198.51.10.7" });
  });
});
