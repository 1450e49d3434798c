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

/** Bun reads at most this much from a socket per data event (uSockets' receive buffer). */
const MAX_READ_BYTES = 512 * 1024;

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

/**
 * Streams `totalBytes` through one echo connection, writing as fast as the socket takes them, and reading with a
 * pause of `pausesMs[i]` each time another `totalBytes / (pauses + 1)` bytes have come back (a client that stops
 * reading for a while, as a busy consumer does). Resolves once every byte came back, or rejects on a close.
 */
async function streamWithReadPauses(
  port: number,
  totalBytes: number,
  pausesMs: readonly number[],
  seed: number,
): Promise<{ sentHash: string; receivedHash: string; receivedBytes: number }> {
  const source = patternBytes(1024 * 1024 + 4093, seed);
  const sentHash = new Bun.CryptoHasher("sha256");
  const receivedHash = new Bun.CryptoHasher("sha256");
  const pauseEveryBytes = Math.floor(totalBytes / (pausesMs.length + 1));
  let sent = 0;
  let received = 0;
  let pausesTaken = 0;
  let queued: Uint8Array | null = null;
  let cursor = seed * 997;
  let settle!: (error: Error | null) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error === null ? resolve() : reject(error));
  });
  const pump = (socket: Socket<undefined>) => {
    // Bounded: at most totalBytes / 1 byte iterations, in practice one per 64 KiB chunk.
    while (sent < totalBytes) {
      if (queued === null) {
        const size = Math.min(65536 - (cursor % 4096), totalBytes - sent);
        const start = cursor % (source.length - 65536);
        queued = source.subarray(start, start + size);
        sentHash.update(queued);
        cursor += size + 31;
      }
      const taken = socket.write(queued);
      if (taken < 0) return settle(new Error("socket closed while sending"));
      sent += taken;
      queued = taken === queued.length ? null : queued.subarray(taken);
      if (queued !== null) return; // the rest on drain
    }
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      binaryType: "uint8array",
      data: (s, chunk) => {
        receivedHash.update(chunk);
        received += chunk.length;
        if (received === totalBytes) return settle(null);
        if (pausesTaken < pausesMs.length && received >= (pausesTaken + 1) * pauseEveryBytes) {
          // The client under test stops reading for a while: this timer is its behaviour, not a wait.
          const pauseMs = pausesMs[pausesTaken++]!;
          s.pause();
          setTimeout(() => s.resume(), pauseMs);
        }
      },
      drain: (s) => pump(s),
      close: () => settle(new Error(`closed after ${received} of ${totalBytes} bytes came back`)),
    },
  });
  pump(socket);
  try {
    await done;
  } finally {
    socket.end();
  }
  return { sentHash: sentHash.digest("hex"), receivedHash: receivedHash.digest("hex"), receivedBytes: received };
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
    const context = echoContext();
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
    // The server's own write queue was used (the kernel did not absorb everything), bounded by the high-water mark
    // plus one read.
    const peakQueuedBytes = context.gauges.get("tcp")!().peakQueuedBytes!;
    expect(peakQueuedBytes).toBeGreaterThan(0);
    expect(peakQueuedBytes).toBeLessThanOrEqual(context.config.tcp.write_high_water_bytes + MAX_READ_BYTES);
  }, 60_000);

  test("48 MiB through one connection whose client stops reading for 0.5 s, then 3 s, comes back identical", async () => {
    const context = echoContext();
    await using server = await startTcp(context, new InlineRunner());
    const totalBytes = 48 * 1024 * 1024;
    const result = await streamWithReadPauses(server.port, totalBytes, [500, 3000], 1);
    expect(result.receivedBytes).toBe(totalBytes);
    expect(result.receivedHash).toBe(result.sentHash);
    expect(context.stats.total(Counter.disconnectedSlowReader)).toBe(0);
    const tcp = context.gauges.get("tcp")!();
    expect(tcp.peakQueuedBytes).toBeLessThanOrEqual(context.config.tcp.write_high_water_bytes + MAX_READ_BYTES);
  }, 30_000);

  test("8 such streams at once each come back identical, every byte, none cut", async () => {
    const context = echoContext();
    await using server = await startTcp(context, new InlineRunner());
    const totalBytes = 48 * 1024 * 1024;
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => streamWithReadPauses(server.port, totalBytes, [500, 3000], 10 + i)),
    );
    for (const result of results) {
      expect(result.receivedBytes).toBe(totalBytes);
      expect(result.receivedHash).toBe(result.sentHash);
    }
    expect(context.stats.total(Counter.bytesWritten)).toBe(8 * totalBytes);
    expect(context.stats.total(Counter.disconnectedSlowReader)).toBe(0);
  }, 60_000);

  test("a client that never reads: its send blocks, the server holds at most the mark plus one read, and it is cut only after tcp.send_timeout_s while another is served", async () => {
    const sendTimeoutS = 1;
    const context = echoContext({ tcp: { send_timeout_s: sendTimeoutS } });
    await using server = await startTcp(context, new InlineRunner());
    const tcp = context.gauges.get("tcp")!;
    const chunk = patternBytes(256 * 1024, 3);
    let sentBytes = 0;
    let drains = 0;
    let isStalledClosed = false;
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        open: (socket) => socket.pause(),
        data: () => {},
        drain: () => void drains++,
        close: () => void (isStalledClosed = true),
      },
    });
    stalled.pause();
    const rssBefore = process.memoryUsage().rss;
    const writeWhatFits = () => {
      // Bounded: the kernel takes a finite amount before a write returns short.
      for (let i = 0; i < 4096; i++) {
        const taken = stalled.write(chunk);
        if (taken > 0) sentBytes += taken;
        if (taken < chunk.length) return taken;
      }
      return chunk.length;
    };
    // The kernel buffers on both sides fill, then the server's output passes its mark and it stops reading.
    const serverStopped = () => {
      writeWhatFits();
      return tcp().outputFull === 1 && tcp().pausedReads === 1;
    };
    await waitFor(serverStopped, 10_000, "the server to stop reading");
    // Then the client's send blocks: the kernel takes nothing more.
    await waitFor(() => writeWhatFits() === 0, 10_000, "the client's send to block");
    const sentWhenBlocked = sentBytes;
    const drainsWhenBlocked = drains;
    // Asserting an absence without a sleep: round trips on another connection let the server's loop run many times.
    const healthy = await rawClient(server.port);
    const message = patternBytes(100_000, 11);
    healthy.socket.write(message);
    await waitFor(() => healthy.receivedBytes() === message.length, 5000, "healthy echo");
    expect(Buffer.compare(healthy.received(), message)).toBe(0);
    expect(stalled.write(chunk)).toBe(0); // still blocked: the server reads nothing more of it
    expect([sentBytes, drains]).toEqual([sentWhenBlocked, drainsWhenBlocked]);
    expect(isStalledClosed).toBe(false);
    expect(tcp().queuedBytes).toBeLessThanOrEqual(context.config.tcp.write_high_water_bytes + MAX_READ_BYTES);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
    expect(context.stats.total(Counter.disconnectedSlowReader)).toBe(0);
    // No progress for tcp.send_timeout_s: cut, counted.
    await waitFor(() => isStalledClosed, (sendTimeoutS * 1.25 + 3) * 1000, "the client that reads nothing cut");
    expect(context.stats.total(Counter.disconnectedSlowReader)).toBe(1);
    expect(context.stats.total(Counter.connectionsTimedOut)).toBe(0);
    healthy.socket.end();
    await waitFor(() => tcp().queuedBytes === 0 && tcp().openConnections === 0, 5000, "everything released");
  }, 30_000);

  test("a reload's tcp.write_high_water_bytes applies to open connections' next writes", async () => {
    const context = echoContext({ tcp: { write_high_water_bytes: 4 * 1024 * 1024 } });
    await using server = await startTcp(context, new InlineRunner());
    const lowerMarkBytes = 64 * 1024;
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: { open: (socket) => socket.pause(), data: () => {} },
    });
    stalled.pause();
    const next = {
      ...context,
      config: testConfig({ ...context.config, tcp: { write_high_water_bytes: lowerMarkBytes } }),
    };
    (await server.prepareReconfigure!(next)).commit();
    const tcp = context.gauges.get("tcp")!;
    const chunk = patternBytes(64 * 1024, 5);
    const serverStopped = () => {
      // Bounded: the kernel takes a finite amount before a write returns short.
      for (let i = 0; i < 4096 && stalled.write(chunk) === chunk.length; i++);
      return tcp().outputFull === 1;
    };
    await waitFor(serverStopped, 10_000, "the server to stop reading");
    // Stopped at the new mark (at the old one the queue would have passed 4 MiB first).
    expect(tcp().queuedBytes).toBeGreaterThan(lowerMarkBytes);
    expect(tcp().queuedBytes).toBeLessThanOrEqual(lowerMarkBytes + MAX_READ_BYTES);
    stalled.terminate();
  });

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
