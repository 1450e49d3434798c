// Echo over real sockets: bytes back in order under backpressure, slow and never-reading clients, half-close, graceful stop.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { testConfig, waitFor, withAdmission } from "../helpers/common.ts";

function echoContext(overrides: ConfigOverrides = {}): ServerContext {
  const config = testConfig({ ...overrides, server: { protocol: "echo", ...overrides.server } });
  return withAdmission({ config, stats: Stats.create(), logger: Logger.silent(), gauges: new Map() });
}

interface RawClient {
  socket: Socket<undefined>;
  handlers: {
    binaryType: "uint8array";
    data: (socket: Socket<undefined>, chunk: Uint8Array) => void;
    close: () => void;
  };
  received: () => Uint8Array;
  receivedBytes: () => number;
  isClosed: () => boolean;
}

async function rawClient(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let closed = false;
  const handlers = {
    binaryType: "uint8array" as const,
    data: (_socket: Socket<undefined>, chunk: Uint8Array) => {
      chunks.push(chunk);
      bytes += chunk.length;
    },
    close: () => {
      closed = true;
    },
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: options.allowHalfOpen ?? false,
    socket: handlers,
  });
  return {
    socket,
    handlers,
    received: () => Buffer.concat(chunks),
    receivedBytes: () => bytes,
    isClosed: () => closed,
  };
}

/** Deterministic pseudo-random bytes (xorshift), so a reordering shows up in the hash. */
function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe("echo", () => {
  test("returns the bytes it reads and counts them", async () => {
    const context = echoContext();
    await using server = await startTcp(context, new InlineRunner());
    const client = await rawClient(server.port);
    const message = patternBytes(10_000, 7);
    client.socket.write(message);
    await waitFor(() => client.receivedBytes() === message.length, 5000, "echo");
    expect(Buffer.compare(client.received(), message)).toBe(0);
    client.socket.end();
    await waitFor(() => context.stats.total(Counter.connectionsClosed) === 1, 5000, "server close");
    expect(context.stats.total(Counter.bytesRead)).toBe(message.length);
    expect(context.stats.total(Counter.bytesWritten)).toBe(message.length);
    expect(context.stats.total(Counter.connectionsAccepted)).toBe(1);
    expect(context.stats.total(Counter.activeConnections)).toBe(0);
  });

  test("256 MiB through 4 connections with slow readers comes back byte-identical", async () => {
    const context = echoContext({ tcp: { max_buffered_bytes: 64 * 1024 * 1024 } });
    await using server = await startTcp(context, new InlineRunner());
    const perConnectionBytes = 64 * 1024 * 1024;
    const windowBytes = 24 * 1024 * 1024;
    const source = patternBytes(1024 * 1024 + 4093, 99);
    const streams = [0, 1, 2, 3].map(async (index) => {
      const sentHash = new Bun.CryptoHasher("sha256");
      const receivedHash = new Bun.CryptoHasher("sha256");
      let sent = 0;
      let received = 0;
      let queued: Uint8Array | null = null;
      let resolveDone!: () => void;
      let rejectDone!: (error: Error) => void;
      const done = new Promise<void>((resolve, reject) => {
        resolveDone = resolve;
        rejectDone = reject;
      });
      let cursor = index * 997;
      const pump = (socket: Socket<undefined>) => {
        // Bounded: at most perConnectionBytes / 1 byte iterations, in practice ~1000 chunks per connection.
        while (sent < perConnectionBytes && sent - received < windowBytes) {
          if (queued === null) {
            const size = Math.min(65536 - (cursor % 4096), perConnectionBytes - sent);
            const start = cursor % (source.length - 65536);
            queued = source.subarray(start, start + size);
            sentHash.update(queued);
            cursor += size + 31;
          }
          const taken = socket.write(queued);
          if (taken < 0) return rejectDone(new Error("socket closed while sending"));
          sent += taken;
          queued = taken === queued.length ? null : queued.subarray(taken);
          if (queued !== null) return; // wait for drain
        }
      };
      let readsSincePause = 0;
      const socket = await Bun.connect({
        hostname: "127.0.0.1",
        port: server.port,
        socket: {
          binaryType: "uint8array",
          data: (s, chunk) => {
            receivedHash.update(chunk);
            received += chunk.length;
            if (received === perConnectionBytes) return resolveDone();
            // A slow reader: every ~2 MiB stop reading for a moment, so the server's writes back up.
            readsSincePause += chunk.length;
            if (readsSincePause > 2 * 1024 * 1024) {
              readsSincePause = 0;
              s.pause();
              setTimeout(() => s.resume(), 5);
            }
            pump(s);
          },
          drain: (s) => pump(s),
          close: () => rejectDone(new Error(`connection ${index} closed after ${received} bytes`)),
        },
      });
      pump(socket);
      await done;
      socket.end();
      expect(sent).toBe(perConnectionBytes);
      expect(receivedHash.digest("hex")).toBe(sentHash.digest("hex"));
    });
    await Promise.all(streams);
    expect(context.stats.total(Counter.bytesWritten)).toBe(4 * perConnectionBytes);
    expect(context.stats.total(Counter.disconnectedSlowReader)).toBe(0);
    // The server's own write queue was used (the kernel did not absorb everything).
    expect(context.gauges.get("tcp")!().peakQueuedBytes).toBeGreaterThan(0);
  }, 60_000);

  test("a client that never reads is disconnected at the cap while another is served", async () => {
    const capBytes = 256 * 1024;
    const context = echoContext({ tcp: { max_buffered_bytes: capBytes } });
    await using server = await startTcp(context, new InlineRunner());
    let stalledClosed = false;
    const chunk = patternBytes(64 * 1024, 3);
    let writes = 0;
    const maxWrites = 4096; // 256 MiB at most: far beyond kernel buffers + the cap
    const flood = (socket: Socket<undefined>) => {
      while (!stalledClosed && writes < maxWrites) {
        writes++;
        if (socket.write(chunk) < chunk.length) return;
      }
    };
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        open: (socket) => socket.pause(),
        data: () => {},
        drain: (socket) => flood(socket),
        close: () => {
          stalledClosed = true;
        },
      },
    });
    stalled.pause();
    flood(stalled);
    await waitFor(() => context.stats.total(Counter.disconnectedSlowReader) === 1, 10_000, "slow reader cut");
    await waitFor(() => stalledClosed, 5000, "client sees the close");

    const healthy = await rawClient(server.port);
    const message = patternBytes(100_000, 11);
    healthy.socket.write(message);
    await waitFor(() => healthy.receivedBytes() === message.length, 5000, "healthy echo");
    expect(Buffer.compare(healthy.received(), message)).toBe(0);
    healthy.socket.end();
    expect(context.gauges.get("tcp")!().queuedBytes).toBe(0);
  }, 30_000);

  test("half-close: what was sent before FIN comes back, then the server closes", async () => {
    const context = echoContext();
    await using server = await startTcp(context, new InlineRunner());
    const client = await rawClient(server.port, { allowHalfOpen: true });
    const message = patternBytes(300_000, 5);
    let offset = 0;
    const written = new Promise<void>((resolve) => {
      const pump = () => {
        while (offset < message.length) {
          const taken = client.socket.write(message.subarray(offset));
          if (taken <= 0) return; // wait for drain
          offset += taken;
        }
        resolve();
      };
      client.socket.reload({ socket: { ...client.handlers, drain: pump } });
      pump();
    });
    await written;
    client.socket.shutdown();
    await waitFor(() => client.isClosed(), 5000, "server closes after flushing");
    expect(Buffer.compare(client.received(), message)).toBe(0);
  });

  test("graceful stop closes idle connections and refuses new ones", async () => {
    const context = echoContext();
    const server = await startTcp(context, new InlineRunner());
    const client = await rawClient(server.port);
    client.socket.write("x");
    await waitFor(() => client.receivedBytes() === 1, 5000, "echo");
    const startedMs = Date.now();
    await server.stop({ graceful: true, timeoutMs: 3000 });
    expect(Date.now() - startedMs).toBeLessThan(2000);
    await waitFor(() => client.isClosed(), 5000, "client closed");
    expect(server.openConnections()).toBe(0);
    expect(Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } })).rejects.toThrow();
  });
});
