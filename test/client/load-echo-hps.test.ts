// Load tester over echo and HPS/1: byte-exact echo checks, out-of-order HPS/1 responses matched by id.
import { describe, expect, test } from "bun:test";
import { EchoCodec, echoProtocol } from "../../src/client/load-echo.ts";
import { parseLoadArgs } from "../../src/client/options.ts";
import { Outcome, type ResponseSink } from "../../src/client/protocol.ts";
import { runLoad } from "../../src/client/run.ts";
import { FrameStatus } from "../../src/tcp/frame.ts";
import { startEchoServer, startReversingHpsServer } from "../helpers/load-servers.ts";

class RecordingSink implements ResponseSink {
  readonly outcomes: number[] = [];
  completeNext(outcome: number): void {
    this.outcomes.push(outcome);
  }
  completeId(): void {
    throw new Error("echo responses are matched in order");
  }
  protocolError(): void {
    throw new Error("unexpected");
  }
}

describe("echo codec", () => {
  test("checks each message's sequence stamp and body at every split point", () => {
    const protocol = echoProtocol(parseLoadArgs(["-s", "10", "echo://127.0.0.1:1"])!);
    const stream = Buffer.alloc(30);
    for (let k = 0; k < 3; k++) {
      stream.set(protocol.template, k * 10);
      protocol.stamp(stream, k * 10, k);
    }
    for (let split = 1; split < stream.length; split++) {
      const codec = new EchoCodec(Buffer.from(protocol.template));
      const sink = new RecordingSink();
      codec.feed(stream.subarray(0, split), sink);
      codec.feed(stream.subarray(split), sink);
      expect(sink.outcomes).toEqual([Outcome.OK, Outcome.OK, Outcome.OK]);
    }
    // the same bytes out of order: messages 0 and 1 swapped
    const swapped = Buffer.concat([stream.subarray(10, 20), stream.subarray(0, 10), stream.subarray(20)]);
    const codec = new EchoCodec(Buffer.from(protocol.template));
    const sink = new RecordingSink();
    codec.feed(swapped, sink);
    expect(sink.outcomes).toEqual([Outcome.MISMATCH, Outcome.MISMATCH, Outcome.OK]);
  });
});

describe("echo load", () => {
  test("a faithful echo server gives exact counts and no mismatches", async () => {
    using server = startEchoServer();
    const report = await runLoad(
      parseLoadArgs(["-c", "3", "-p", "4", "-s", "100", "-n", "600", `echo://127.0.0.1:${server.port}`])!,
    );
    expect(report.requests.completed).toBe(600);
    expect(report.requests.ok).toBe(600);
    expect(report.errors.total).toBe(0);
    expect(server.received()).toBe(600 * 100);
    expect(report.bytes.read).toBe(600 * 100);
    expect(report.bytes.written).toBe(600 * 100);
    expect(report.statuses).toEqual({});
  });

  test("large pipelined messages survive partial writes on both sides", async () => {
    using server = startEchoServer();
    const sizeBytes = 1024 * 1024; // 8 MiB per batch: more than a loopback socket takes at once
    const report = await runLoad(
      parseLoadArgs(["-c", "2", "-p", "8", "-s", String(sizeBytes), "-n", "40", `echo://127.0.0.1:${server.port}`])!,
    );
    expect(report.requests.ok).toBe(40);
    expect(report.errors.total).toBe(0);
    expect(server.received()).toBe(40 * sizeBytes);
  });

  test("a corrupted byte is a mismatch of exactly the message that held it", async () => {
    // one connection, 64-byte messages: stream byte 1000 is in message 15 (also a stamp byte at 960..963 is not hit)
    using server = startEchoServer(1000);
    const report = await runLoad(
      parseLoadArgs(["-c", "1", "-s", "64", "-n", "100", `echo://127.0.0.1:${server.port}`])!,
    );
    expect(report.errors.mismatch).toBe(1);
    expect(report.requests.ok).toBe(99);
    expect(report.requests.completed).toBe(100);
    expect(report.warnings.some((w) => w.includes("did not match"))).toBe(true);
  });

  test("a corrupted sequence stamp is caught too", async () => {
    using server = startEchoServer(64 * 7 + 2);
    const report = await runLoad(
      parseLoadArgs(["-c", "1", "-s", "64", "-n", "20", `echo://127.0.0.1:${server.port}`])!,
    );
    expect(report.errors.mismatch).toBe(1);
    expect(report.requests.ok).toBe(19);
  });
});

describe("HPS/1 load", () => {
  test("responses answered in reverse order are matched to their requests", async () => {
    using server = startReversingHpsServer(4);
    const report = await runLoad(
      parseLoadArgs([
        "-c",
        "1",
        "-p",
        "4",
        "--opcode",
        "echo",
        "-s",
        "32",
        "-n",
        "40",
        `hps://127.0.0.1:${server.port}`,
      ])!,
    );
    expect(server.received()).toBe(40);
    expect(report.requests.completed).toBe(40);
    expect(report.requests.ok).toBe(40);
    expect(report.errors.total).toBe(0);
    expect(report.statuses).toEqual({ OK: 40 });
  });

  test("error statuses, wrong payloads and unknown ids are counted", async () => {
    using server = startReversingHpsServer(2, (request, index) => {
      if (index % 10 === 1) return { status: FrameStatus.BUSY, payload: new Uint8Array(0) };
      if (index % 10 === 2) return { status: FrameStatus.OK, payload: new Uint8Array(request.payload.length) };
      return { status: FrameStatus.OK, payload: request.payload };
    });
    const report = await runLoad(
      parseLoadArgs([
        "-c",
        "1",
        "-p",
        "2",
        "--opcode",
        "echo",
        "-s",
        "16",
        "-n",
        "40",
        `hps://127.0.0.1:${server.port}`,
      ])!,
    );
    expect(report.requests.completed).toBe(40);
    expect(report.errors.nonOk).toBe(4);
    expect(report.errors.mismatch).toBe(4);
    expect(report.requests.ok).toBe(32);
    expect(report.statuses).toEqual({ OK: 36, BUSY: 4 });
  });

  test("a response for an id that was never sent is a mismatch, and the real request times out", async () => {
    using server = startReversingHpsServer(1, (request, index) => ({
      status: FrameStatus.OK,
      payload: new Uint8Array(0),
      requestId: index === 1 ? 0x7000_0000 : request.requestId,
    }));
    const report = await runLoad(
      parseLoadArgs(["-c", "1", "-n", "3", "--timeout", "300ms", `hps://127.0.0.1:${server.port}`])!,
    );
    expect(report.errors.mismatch).toBe(1);
    expect(report.errors.timeout).toBe(1);
    expect(report.requests.ok).toBe(2);
  });
});
