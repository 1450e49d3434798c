// HPS/1 over real sockets: every opcode and error code, pipelining, backpressure, stale responses, fuzzing.
import { describe, expect, setSystemTime, test } from "bun:test";
import type { Socket } from "bun";
import { HpsClient } from "../../src/client/hps-client.ts";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Admission } from "../../src/net/admission.ts";
import type { OpDone, OpRunner } from "../../src/pool/op-runner.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { FRAME_HEADER_BYTES, FrameDecoder, FrameStatus, Opcode, encodeFrame } from "../../src/tcp/frame.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { rawConnect, testConfig, waitFor, withAdmission, type RawClient } from "../helpers/common.ts";

function customContext(overrides: ConfigOverrides = {}): ServerContext {
  const config = testConfig({ ...overrides, server: { protocol: "custom", ...overrides.server } });
  return withAdmission({ config, stats: Stats.create(), logger: Logger.silent(), gauges: new Map() });
}

/** Resolves with `promise`, or rejects after `timeoutMs`. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

/** A runner that keeps tasks until the test answers them, to observe in-flight behaviour. */
class HeldRunner implements OpRunner {
  readonly held: { token: number; payload: Uint8Array; done: OpDone }[] = [];
  handles(opcode: number): boolean {
    return opcode === Opcode.HASH || opcode >= 0x80;
  }
  run(_opcode: number, payload: Uint8Array, token: number, done: OpDone): void {
    this.held.push({ token, payload, done });
  }
  pending(): number {
    return this.held.length;
  }
  answerAll(status: number, result: (payload: Uint8Array) => Uint8Array): void {
    for (const task of this.held.splice(0)) task.done(task.token, status, result(task.payload));
  }
}

describe("HPS/1 opcodes", () => {
  test("PING, ECHO (small and large), HASH, STATS, and unknown opcodes keep the connection open", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    expect(await client.request(Opcode.PING)).toEqual({ status: FrameStatus.OK, payload: new Uint8Array(0) });
    expect(text((await client.request(Opcode.ECHO, bytes("hello"))).payload)).toBe("hello");
    const large = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    const echoed = await client.request(Opcode.ECHO, large);
    expect(Buffer.compare(echoed.payload, large)).toBe(0);
    const hashed = await client.request(Opcode.HASH, bytes("abc"));
    expect(hashed.status).toBe(FrameStatus.OK);
    expect(Buffer.from(hashed.payload).toString("hex")).toBe(Bun.CryptoHasher.hash("sha256", "abc", "hex"));
    const hashedLarge = await client.request(Opcode.HASH, large);
    expect(Buffer.from(hashedLarge.payload).toString("hex")).toBe(Bun.CryptoHasher.hash("sha256", large, "hex"));
    for (const opcode of [0x04, 0x7f, 0x80, 0xff]) {
      const unknown = await client.request(opcode);
      expect(unknown.status).toBe(FrameStatus.UNKNOWN_OPCODE);
      expect(text(unknown.payload)).toContain("unknown opcode");
    }
    const stats = JSON.parse(text((await client.request(Opcode.STATS)).payload));
    expect(stats.counters.requests).toBeGreaterThanOrEqual(9);
    expect(stats.counters.connectionsAccepted).toBe(1);
    expect(await client.request(Opcode.PING)).toEqual({ status: 0, payload: new Uint8Array(0) });
    expect(context.stats.total(Counter.errorsProtocol)).toBe(0);
  });

  test("ECHO returns payloads of every size class intact, pipelined (copied bytewise, copied by set, written as a view)", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    const sizes = [0, 1, 31, 32, 33, 100, 65_535, 65_536, 70_000];
    const payloads = sizes.map((size, n) => new Uint8Array(size).map((_, i) => (i * 31 + n) & 0xff));
    const responses = await Promise.all(payloads.map((payload) => client.request(Opcode.ECHO, payload)));
    responses.forEach((response, n) => {
      expect([sizes[n], response.status, Buffer.compare(response.payload, payloads[n]!)]).toEqual([sizes[n], 0, 0]);
    });
  });

  test("a large ECHO as a connection's first answer keeps its header (the batch buffer grows for it)", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    const large = new Uint8Array(100_000).map((_, i) => (i * 11) & 0xff);
    const echoed = await client.request(Opcode.ECHO, large);
    expect([echoed.status, Buffer.compare(echoed.payload, large)]).toEqual([0, 0]);
  });

  test("10,000 pipelined requests are answered with matching ids", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 10_000 });
    const requests = Array.from({ length: 10_000 }, (_, i) =>
      i % 3 === 2 ? client.request(Opcode.HASH, bytes(`n${i}`)) : client.request(Opcode.ECHO, bytes(`request ${i}`)),
    );
    const responses = await Promise.all(requests);
    responses.forEach((response, i) => {
      expect(response.status).toBe(0);
      if (i % 3 === 2)
        expect(Buffer.from(response.payload).toString("hex")).toBe(Bun.CryptoHasher.hash("sha256", `n${i}`, "hex"));
      else expect(text(response.payload)).toBe(`request ${i}`);
    });
    expect(context.stats.total(Counter.requests)).toBe(10_000);
  });

  test("a stream split at every offset decodes on the server", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    const stream = Buffer.concat([
      encodeFrame(Opcode.ECHO, 0, 1, bytes("abcdef")),
      encodeFrame(Opcode.PING, 0, 2),
      encodeFrame(Opcode.ECHO, 0, 3, bytes("xyz")),
    ]);
    const client = await rawConnect(server.port);
    for (let cut = 1; cut < stream.length; cut++) {
      const before = client.frames().length;
      client.socket.write(stream.subarray(0, cut));
      await new Promise((resolve) => setImmediate(resolve));
      client.socket.write(stream.subarray(cut));
      await waitFor(() => client.frames().length === before + 3, 5000, `frames for cut ${cut}`);
      expect(
        client
          .frames()
          .slice(before)
          .map((f) => [f.requestId, text(f.payload)]),
      ).toEqual([
        [1, "abcdef"],
        [2, ""],
        [3, "xyz"],
      ]);
    }
    client.socket.end();
  });
});

describe("HPS/1 error codes", () => {
  test("2 frame too large: connection-level error frame (id 0), then close", async () => {
    const context = customContext({ limits: { max_request_bytes: 1024 } });
    await using server = await startTcp(context, new InlineRunner());
    const client = await rawConnect(server.port);
    client.socket.write(encodeFrame(Opcode.PING, 0, 5));
    client.socket.write(encodeFrame(Opcode.ECHO, 0, 6, new Uint8Array(2000)).subarray(0, FRAME_HEADER_BYTES));
    await waitFor(() => client.isClosed(), 5000, "close");
    expect(client.frames().map((f) => [f.requestId, f.status])).toEqual([
      [5, 0],
      [0, FrameStatus.TOO_LARGE],
    ]);
    expect(text(client.frames()[1]!.payload)).toContain("max_request_bytes");
    expect(context.stats.total(Counter.errorsProtocol)).toBe(1);
    expect(context.stats.total(Counter.requestsTooLarge)).toBe(1);
  });

  test("3 bad frame (wrong version): error frame with id 0, then close", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    const client = await rawConnect(server.port);
    const bad = encodeFrame(Opcode.PING, 0, 9);
    bad[4] = 2;
    client.socket.write(bad);
    await waitFor(() => client.isClosed(), 5000, "close");
    expect(client.frames().map((f) => [f.requestId, f.status])).toEqual([[0, FrameStatus.BAD_FRAME]]);
    expect(context.stats.total(Counter.errorsProtocol)).toBe(1);
    await waitFor(() => context.stats.total(Counter.activeConnections) === 0, 5000, "server released the connection");
  });

  test("4 busy, 6 internal, 7 timeout from the runner are error frames; the connection stays open", async () => {
    const runner = new HeldRunner();
    const context = customContext();
    await using server = await startTcp(context, runner);
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    for (const status of [FrameStatus.BUSY, FrameStatus.INTERNAL, FrameStatus.TIMEOUT]) {
      const response = client.request(Opcode.HASH, bytes("x"));
      await waitFor(() => runner.held.length === 1, 5000, "task reached the runner");
      runner.answerAll(status, () => bytes(`status ${status}`));
      expect(await response).toEqual({ status, payload: bytes(`status ${status}`) });
    }
    expect(await client.request(Opcode.PING)).toEqual({ status: 0, payload: new Uint8Array(0) });
    expect(server.inFlight()).toBe(0);
  });

  test("5 rate limited, when admission limits the rate", async () => {
    const config = testConfig({
      server: { protocol: "custom" },
      rate_limit: { enabled: true, requests: 3, window_s: 60, burst: 3 },
    });
    const stats = Stats.create();
    const context = {
      config,
      stats,
      logger: Logger.silent(),
      gauges: new Map(),
      admission: new Admission(config, stats),
    };
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await client.request(Opcode.PING)).status);
    expect(statuses).toEqual([0, 0, 0, FrameStatus.RATE_LIMITED, FrameStatus.RATE_LIMITED]);
    expect(stats.total(Counter.rateLimited)).toBe(2);
  });
});

/** Runs HASH synchronously: "big" answers 64 KiB (written at once as its own view), "slow" busy-waits SLOW_MS first. */
const SLOW_MS = 40;
class ScriptedRunner implements OpRunner {
  handles(opcode: number): boolean {
    return opcode === Opcode.HASH;
  }
  run(_opcode: number, payload: Uint8Array, token: number, done: OpDone): void {
    if (text(payload) === "big") {
      done(token, 0, new Uint8Array(64 * 1024));
      return;
    }
    const untilMs = performance.now() + SLOW_MS;
    while (performance.now() < untilMs) {
      // Busy: holds the data event the way a slow inline operation would.
    }
    done(token, 0, bytes("slow"));
  }
  pending(): number {
    return 0;
  }
}

describe("HPS/1 latency", () => {
  test("an inline frame's latency runs until the write that carries its response", async () => {
    const context = customContext();
    await using server = await startTcp(context, new ScriptedRunner());
    const client = await rawConnect(server.port);
    // One chunk: PING 1 leaves with the 64 KiB answer of 2 (written at once), before 3 holds the event for SLOW_MS;
    // PING 4 waits for 3 and leaves in the event's final write.
    client.socket.write(
      Buffer.concat([
        encodeFrame(Opcode.PING, 0, 1),
        encodeFrame(Opcode.HASH, 0, 2, bytes("big")),
        encodeFrame(Opcode.HASH, 0, 3, bytes("slow")),
        encodeFrame(Opcode.PING, 0, 4),
      ]),
    );
    await waitFor(() => client.frames().length === 4, 5000, "four answers");
    expect(client.frames().map((frame) => frame.requestId)).toEqual([1, 2, 3, 4]);
    expect(context.stats.total(Counter.requests)).toBe(4);
    const latency = context.stats.latency();
    // 1 and 2 were written before the busy wait; 3 and 4 after it. (Bucket bounds are approximate: use half of SLOW_MS.)
    expect(latency.cumulativeAt([(SLOW_MS / 2) * 1000])).toEqual([2]);
    expect(latency.count()).toBe(4);
    client.socket.end();
  });
});

describe("HPS/1 flow control", () => {
  test("past max_in_flight the server stops reading until responses drain", async () => {
    const runner = new HeldRunner();
    const context = customContext({ custom: { max_in_flight: 4 } });
    await using server = await startTcp(context, runner);
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    const first = [0, 1, 2, 3].map((i) => client.request(Opcode.HASH, bytes(`a${i}`)));
    await waitFor(
      () => runner.held.length === 4 && context.gauges.get("tcp")!().pausedReads === 1,
      5000,
      "paused at 4",
    );
    const bytesReadWhenPaused = context.stats.total(Counter.bytesRead);
    const second = [0, 1, 2, 3, 4, 5].map((i) => client.request(Opcode.HASH, bytes(`b${i}`)));
    await Promise.resolve(); // the client writes its queued frames in a microtask queued before this one
    // Asserting an absence without a sleep: two PING round trips on another connection, sent after the six frames
    // reached the server's kernel (loopback), let the server's loop see every readable socket at least once.
    using barrier = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    for (let i = 0; i < 2; i++) expect((await barrier.request(Opcode.PING)).status).toBe(0);
    expect(runner.held.length).toBe(4);
    expect(context.stats.total(Counter.bytesRead)).toBe(bytesReadWhenPaused + 2 * FRAME_HEADER_BYTES);
    runner.answerAll(0, (payload) => payload);
    // Resumed: the six frames arrive (in one chunk or more); four are taken, the decoder keeps the other two.
    await waitFor(
      () => runner.held.length === 4 && context.gauges.get("tcp")!().pausedReads === 1,
      5000,
      "reading resumed, paused at 4 again",
    );
    runner.answerAll(0, (payload) => payload);
    await waitFor(() => runner.held.length === 2, 5000, "the two kept frames dispatched");
    await waitFor(() => context.gauges.get("tcp")!().pausedReads === 0, 5000, "reading resumed below the limit");
    runner.answerAll(0, (payload) => payload);
    expect((await Promise.all(first)).map((r) => text(r.payload))).toEqual(["a0", "a1", "a2", "a3"]);
    expect((await Promise.all(second)).map((r) => text(r.payload))).toEqual(["b0", "b1", "b2", "b3", "b4", "b5"]);
  });

  test("a response for a connection that closed meanwhile is dropped, not sent to the slot's next connection", async () => {
    const runner = new HeldRunner();
    const context = customContext();
    await using server = await startTcp(context, runner);
    const first = await rawConnect(server.port);
    first.socket.write(encodeFrame(Opcode.HASH, 0, 1, bytes("late")));
    await waitFor(() => runner.held.length === 1, 5000, "task held");
    // A reset, not a FIN: after a FIN the server would keep the connection until the answer is written.
    first.socket.terminate();
    await waitFor(() => context.stats.total(Counter.activeConnections) === 0, 5000, "closed");
    const second = await rawConnect(server.port);
    await waitFor(() => context.stats.total(Counter.activeConnections) === 1, 5000, "second open");
    runner.answerAll(0, () => bytes("stale"));
    second.socket.write(encodeFrame(Opcode.PING, 0, 77));
    await waitFor(() => second.frames().length === 1, 5000, "ping answer");
    expect(second.frames().map((f) => [f.requestId, f.opcode])).toEqual([[77, Opcode.PING]]);
    expect(server.inFlight()).toBe(0);
    second.socket.end();
  });
});

describe("HPS/1 fuzzing", () => {
  test("10,000+ random and mutated frames over several connections; PING still works after", async () => {
    const context = customContext({ limits: { max_request_bytes: 4096 } });
    await using server = await startTcp(context, new InlineRunner());
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const connections = 20;
    const framesPerConnection = 600;
    let sentFrames = 0;
    for (let c = 0; c < connections; c++) {
      const parts: Uint8Array[] = [];
      // Three connections in four lose their framing somewhere in their last fifth: a flipped header bit, garbage, or an oversized frame.
      const corruptAt = c % 4 === 3 ? -1 : Math.floor(framesPerConnection * (0.8 + 0.2 * random()));
      for (let f = 0; f < framesPerConnection; f++) {
        const payload = new Uint8Array(Math.floor(random() * (random() < 0.05 ? 4000 : 64))).map(() =>
          Math.floor(random() * 256),
        );
        const opcode = Math.floor(random() * 8) === 0 ? Math.floor(random() * 256) : Math.floor(random() * 4);
        const frame = encodeFrame(opcode, Math.floor(random() * 3), Math.floor(random() * 0xffffffff), payload);
        if (f === corruptAt) {
          const kind = Math.floor(random() * 3);
          if (kind === 0) {
            const at = Math.floor(random() * 5);
            frame[at] = frame[at]! ^ (1 << Math.floor(random() * 8));
          }
          if (kind === 1)
            parts.push(new Uint8Array(1 + Math.floor(random() * 40)).map(() => Math.floor(random() * 256)));
          if (kind === 2) parts.push(encodeFrame(Opcode.ECHO, 0, 1, new Uint8Array(5000)));
        }
        parts.push(frame);
        sentFrames++;
      }
      const client = await rawConnect(server.port);
      const stream = Buffer.concat(parts);
      let offset = 0;
      const done = new Promise<void>((resolve) => {
        const pump = () => {
          // Bounded: every pass writes at least one byte or waits for drain/close.
          while (offset < stream.length && !client.isClosed()) {
            const size = 1 + Math.floor(random() * 3000);
            const taken = client.socket.write(stream.subarray(offset, Math.min(stream.length, offset + size)));
            if (taken <= 0) break;
            offset += taken;
          }
          if (offset >= stream.length || client.isClosed()) resolve();
        };
        client.socket.reload({ socket: { drain: pump, data: () => {}, close: () => resolve() } });
        pump();
      });
      await withTimeout(done, 10_000, "stream written");
      client.socket.end();
    }
    expect(sentFrames).toBeGreaterThanOrEqual(10_000);
    await waitFor(() => context.stats.total(Counter.activeConnections) === 0, 10_000, "all fuzz connections closed");
    expect(context.stats.total(Counter.requests)).toBeGreaterThan(8000);
    expect(context.stats.total(Counter.errorsProtocol)).toBeGreaterThan(0);
    expect(context.stats.total(Counter.errorsSystem)).toBe(0);
    using fresh = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    expect(await fresh.request(Opcode.PING)).toEqual({ status: 0, payload: new Uint8Array(0) });
  }, 30_000);
});

/** One round trip on another connection: the server's loop has seen every readable socket since (asserting an absence without a sleep). */
async function barrier(port: number): Promise<void> {
  using other = await HpsClient.connect("127.0.0.1", port, { timeoutMs: 5000 });
  for (let i = 0; i < 2; i++) expect((await other.request(Opcode.PING)).status).toBe(0);
}

describe("HPS/1 max_in_flight within one chunk", () => {
  test("one write of 500 HASH frames (a PING before each) dispatches at most 4 at a time; PINGs do not count; all answered", async () => {
    const runner = new HeldRunner();
    const context = customContext({ custom: { max_in_flight: 4 } });
    await using server = await startTcp(context, runner);
    const client = await rawConnect(server.port);
    const count = 500;
    const PING_ID = 100_000;
    const stream = Buffer.concat(
      Array.from({ length: count }, (_, i) => [
        encodeFrame(Opcode.PING, 0, PING_ID + i),
        encodeFrame(Opcode.HASH, 0, i, bytes(`h${i}`)),
      ]).flat(),
    );
    expect(client.socket.write(stream)).toBe(stream.length);
    // The first event answers PING 0-3 inline and dispatches HASH 0-3, then stops decoding and stops reading.
    await waitFor(() => runner.held.length === 4 && client.frames().length === 4, 5000, "first four dispatched");
    await barrier(server.port);
    expect(runner.held.length).toBe(4);
    expect(client.frames().map((f) => f.requestId)).toEqual([PING_ID, PING_ID + 1, PING_ID + 2, PING_ID + 3]);
    const tcp = context.gauges.get("tcp")!;
    expect([tcp().inFlight, tcp().pausedReads]).toEqual([4, 1]);
    let answered = 0;
    for (let round = 0; round < count && answered < count; round++) {
      const expected = Math.min(4, count - answered);
      await waitFor(() => runner.held.length === expected, 5000, `round ${round}: ${expected} dispatched`);
      expect(tcp().inFlight).toBeLessThanOrEqual(4);
      answered += runner.held.length;
      runner.answerAll(0, (payload) => payload);
    }
    await waitFor(() => client.frames().length === 2 * count, 5000, "every answer");
    const hashes = client.frames().filter((f) => f.opcode === Opcode.HASH);
    expect(hashes.map((f) => [f.requestId, text(f.payload)])).toEqual(
      Array.from({ length: count }, (_, i) => [i, `h${i}`]),
    );
    // Kept frames are answered in order: PING i comes after HASH i-1 was dispatched.
    expect(
      client
        .frames()
        .filter((f) => f.opcode === Opcode.PING)
        .map((f) => f.requestId),
    ).toEqual(Array.from({ length: count }, (_, i) => PING_ID + i));
    await waitFor(() => tcp().pausedReads === 0, 5000, "reading resumed");
    expect(server.inFlight()).toBe(0);
    // The connection reads again: a new request is answered at once.
    client.socket.write(encodeFrame(Opcode.PING, 0, 7));
    await waitFor(() => client.frames().length === 2 * count + 1, 5000, "ping after resume");
    client.socket.end();
  });

  test("a peer that half-closes after its burst gets every answer before the close", async () => {
    const runner = new HeldRunner();
    const context = customContext({ custom: { max_in_flight: 2 } });
    await using server = await startTcp(context, runner);
    const client = await rawConnect(server.port);
    client.socket.write(
      Buffer.concat(Array.from({ length: 10 }, (_, i) => encodeFrame(Opcode.HASH, 0, i, bytes(`x${i}`)))),
    );
    // FIN, reading on (end() would close the client socket).
    client.socket.shutdown();
    for (let round = 0; round < 10 && client.frames().length < 10; round++) {
      await waitFor(() => runner.held.length > 0 || client.frames().length === 10, 5000, `round ${round}`);
      runner.answerAll(0, (payload) => payload);
      await waitFor(
        () => client.frames().length === Math.min(10, 2 * (round + 1)) || client.isClosed(),
        5000,
        `answers of round ${round}`,
      );
    }
    await waitFor(() => client.isClosed(), 5000, "close after the last answer");
    expect(client.frames().map((f) => f.requestId)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe("HPS/1 graceful stop with kept frames", () => {
  test("frames the decoder kept while paused are answered before a graceful stop closes the connection", async () => {
    const runner = new HeldRunner();
    const context = customContext({ custom: { max_in_flight: 2 } });
    const server = await startTcp(context, runner);
    const client = await rawConnect(server.port);
    client.socket.write(
      Buffer.concat(Array.from({ length: 6 }, (_, i) => encodeFrame(Opcode.HASH, 0, i, bytes(`s${i}`)))),
    );
    await waitFor(() => runner.held.length === 2, 5000, "two dispatched, four kept");
    const stopped = server.stop({ graceful: true, timeoutMs: 5000 });
    for (let round = 0; round < 6 && client.frames().length < 6 && !client.isClosed(); round++) {
      await waitFor(() => runner.held.length > 0 || client.isClosed(), 5000, `round ${round}`);
      runner.answerAll(0, (payload) => payload);
      await waitFor(
        () => client.frames().length >= Math.min(6, 2 * (round + 1)) || client.isClosed(),
        5000,
        `answers of round ${round}`,
      );
    }
    await withTimeout(stopped, 5000, "graceful stop");
    expect(client.frames().map((f) => f.requestId)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe("HPS/1 after lost framing", () => {
  test("answers owed before a bad frame all go out, then one error frame, counted once; what follows is ignored", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    const frames: { requestId: number; status: number; payloadBytes: number }[] = [];
    const decoder = new FrameDecoder(1 << 30);
    let closed = false;
    let pump: (socket: Socket<undefined>) => void = () => {};
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk) => {
          decoder.pushRanges(chunk, (_opcode, status, requestId, _bytes, _start, payloadBytes) =>
            frames.push({ requestId, status, payloadBytes }),
          );
        },
        drain: (s) => pump(s),
        close: () => {
          closed = true;
        },
      },
    });
    // Not reading at first: the echoes fill the kernel buffers, then the server's output passes its high-water mark
    // and it stops reading, with the bad frame and the chunks after it still unread.
    socket.pause();
    const echoes = 24;
    const echo = encodeFrame(Opcode.ECHO, 0, 1, new Uint8Array(1024 * 1024 - 8 - FRAME_HEADER_BYTES));
    const bad = encodeFrame(Opcode.PING, 0, 2);
    bad[4] = 9;
    const after = [encodeFrame(Opcode.ECHO, 0, 3, new Uint8Array(5000)).subarray(0, FRAME_HEADER_BYTES), bad, bad];
    const stream = Buffer.concat([...Array.from({ length: echoes }, () => echo), bad, ...after]);
    let offset = 0;
    pump = (s) => {
      // Bounded: each pass writes at least one byte or waits for the next drain.
      while (offset < stream.length) {
        const taken = s.write(stream.subarray(offset));
        if (taken <= 0) return;
        offset += taken;
      }
    };
    pump(socket);
    const tcp = context.gauges.get("tcp")!;
    await waitFor(() => tcp().outputFull === 1 && tcp().pausedReads === 1, 10_000, "the server to stop reading");
    expect(context.stats.total(Counter.errorsProtocol)).toBe(0);
    socket.resume();
    await waitFor(() => closed, 10_000, "close after the error frame");
    expect(frames.length).toBe(echoes + 1);
    expect(frames.slice(0, echoes).every((f) => f.requestId === 1 && f.status === 0)).toBe(true);
    expect(frames.at(-1)).toEqual({
      requestId: 0,
      status: FrameStatus.BAD_FRAME,
      payloadBytes: frames.at(-1)!.payloadBytes,
    });
    expect(context.stats.total(Counter.errorsProtocol)).toBe(1);
    expect(context.stats.total(Counter.requestsTooLarge)).toBe(0);
  }, 30_000);
});

describe("HPS/1 rate limit clock", () => {
  test("the rate limiter runs on a monotonic clock: a wall-clock jump does not refill tokens", async () => {
    const config = testConfig({
      server: { protocol: "custom" },
      rate_limit: { enabled: true, requests: 3, window_s: 60, burst: 3 },
    });
    const stats = Stats.create();
    const context = {
      config,
      stats,
      logger: Logger.silent(),
      gauges: new Map(),
      admission: new Admission(config, stats),
    };
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await client.request(Opcode.PING)).status);
    try {
      setSystemTime(new Date(Date.now() + 10 * 60 * 1000));
      statuses.push((await client.request(Opcode.PING)).status);
    } finally {
      setSystemTime();
    }
    expect(statuses).toEqual([0, 0, 0, FrameStatus.RATE_LIMITED, FrameStatus.RATE_LIMITED]);
  });
});

describe("HPS/1 STATS", () => {
  test("answers the admin /stats snapshot: counters, rates, latency, gauges", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    for (let i = 0; i < 3; i++) await client.request(Opcode.PING);
    const response = await client.request(Opcode.STATS);
    expect(response.status).toBe(0);
    const stats = JSON.parse(text(response.payload));
    expect(stats.protocol).toBe("custom");
    expect(stats.counters.requests).toBe(3);
    expect(stats.counters.connectionsAccepted).toBe(1);
    expect(stats.latency.count).toBe(3);
    expect(typeof stats.rates.requestsPerSecond).toBe("number");
    expect(stats.gauges.tcp.openConnections).toBe(1);
    expect(stats.process.pid).toBe(process.pid);
  });
});

describe("HPS/1 decoder memory", () => {
  test("headers claiming 1 MiB frames take memory as bytes arrive, not as the length field claims", async () => {
    const context = customContext();
    await using server = await startTcp(context, new InlineRunner());
    const header = encodeFrame(Opcode.ECHO, 0, 1, new Uint8Array(1024 * 1024 - 8)).subarray(0, FRAME_HEADER_BYTES + 1);
    const clients: RawClient[] = [];
    const connections = 50;
    for (let i = 0; i < connections; i++) clients.push(await rawConnect(server.port));
    const readBefore = context.stats.total(Counter.bytesRead);
    for (const client of clients) client.socket.write(header);
    await waitFor(
      () => context.stats.total(Counter.bytesRead) === readBefore + connections * header.length,
      5000,
      "headers read",
    );
    const tcp = context.gauges.get("tcp")!();
    expect(tcp.openConnections).toBe(connections);
    expect(tcp.decoderBufferBytes).toBeLessThanOrEqual(connections * 256);
    for (const client of clients) client.socket.end();
  });
});
