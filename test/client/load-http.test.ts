// Load tester over HTTP: the incremental response parser, exact -n counts, pipelining, framing errors, threads.
import { describe, expect, test } from "bun:test";
import { HttpResponseCodec, buildHttpRequest } from "../../src/client/load-http.ts";
import { parseLoadArgs, type LoadOptions } from "../../src/client/options.ts";
import { Outcome, type ResponseSink } from "../../src/client/protocol.ts";
import { runLoad } from "../../src/client/run.ts";
import { OK_RESPONSE, startHttpServer } from "../helpers/load-servers.ts";

/** Records what a codec reports. */
class RecordingSink implements ResponseSink {
  readonly done: [number, number][] = [];
  strays = 0;
  completeNext(outcome: number, status: number): void {
    this.done.push([outcome, status]);
  }
  completeId(): void {
    throw new Error("HTTP responses are matched in order");
  }
  protocolError(): void {
    this.strays++;
  }
}

/** Feeds `text` split at `splitAt` (and, if given, a second point). */
function feedSplit(codec: HttpResponseCodec, sink: ResponseSink, text: string, splits: number[]): boolean[] {
  const bytes = Buffer.from(text, "latin1");
  const points = [0, ...splits, bytes.length];
  const results: boolean[] = [];
  for (let i = 0; i + 1 < points.length; i++) results.push(codec.feed(bytes.subarray(points[i], points[i + 1]), sink));
  return results;
}

const STREAM =
  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello" +
  "HTTP/1.1 100 Continue\r\n\r\n" +
  "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n" +
  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n" +
  "HTTP/1.1 204 No Content\r\n\r\n" +
  "HTTP/1.1 503 Busy\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nbad";
const EXPECTED: [number, number][] = [
  [Outcome.OK, 200],
  [Outcome.NON_OK, 404],
  [Outcome.OK, 200],
  [Outcome.OK, 204],
  [Outcome.NON_OK, 503],
];

describe("HTTP response parser", () => {
  test("parses a stream of Content-Length, 1xx, chunked and bodyless responses split at every byte", () => {
    for (let split = 1; split < STREAM.length; split++) {
      const codec = new HttpResponseCodec(false);
      const sink = new RecordingSink();
      expect(feedSplit(codec, sink, STREAM, [split])).toEqual([true, true]);
      expect(sink.done).toEqual(EXPECTED);
    }
  });

  test("parses the stream fed one byte at a time", () => {
    const codec = new HttpResponseCodec(false);
    const sink = new RecordingSink();
    const splits = Array.from({ length: STREAM.length - 1 }, (_, i) => i + 1);
    expect(feedSplit(codec, sink, STREAM, splits).every(Boolean)).toBe(true);
    expect(sink.done).toEqual(EXPECTED);
  });

  test("a body delimited by the close completes on close", () => {
    const codec = new HttpResponseCodec(false);
    const sink = new RecordingSink();
    expect(codec.feed(Buffer.from("HTTP/1.0 200 OK\r\n\r\nsome body"), sink)).toBe(true);
    expect(sink.done).toEqual([]);
    codec.finishOnClose(sink);
    expect(sink.done).toEqual([[Outcome.OK, 200]]);
  });

  test("HEAD responses have no body whatever Content-Length says", () => {
    const codec = new HttpResponseCodec(true);
    const sink = new RecordingSink();
    const twice = "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n".repeat(2);
    expect(codec.feed(Buffer.from(twice), sink)).toBe(true);
    expect(sink.done).toEqual([
      [Outcome.OK, 200],
      [Outcome.OK, 200],
    ]);
  });

  test("Connection: close is reported", () => {
    const codec = new HttpResponseCodec(false);
    const sink = new RecordingSink();
    codec.feed(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n"), sink);
    expect(codec.closeRequested).toBe(true);
    codec.reset();
    expect(codec.closeRequested).toBe(false);
  });

  test.each([
    ["not HTTP", "HTTP/2.0 200 OK\r\n\r\n"],
    ["garbage", "hello world, this is not a response\r\n\r\n"],
    ["bad status", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"],
    ["bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n"],
    ["conflicting Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
    ["header without colon", "HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n"],
    ["bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    ["chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n"],
  ])("framing error: %s counts one mismatch and asks to close", (_name, text) => {
    const codec = new HttpResponseCodec(false);
    const sink = new RecordingSink();
    expect(codec.feed(Buffer.from(text), sink)).toBe(false);
    expect(sink.done).toEqual([[Outcome.MISMATCH, -1]]);
  });

  test("a head that never ends is a framing error once it passes 64 KiB", () => {
    const codec = new HttpResponseCodec(false);
    const sink = new RecordingSink();
    const line = Buffer.from(`HTTP/1.1 200 OK\r\n${"X-Long: yes\r\n".repeat(2000)}`);
    let ok = true;
    for (let i = 0; i < 10 && ok; i++) ok = codec.feed(line, sink);
    expect(ok).toBe(false);
    expect(sink.done).toEqual([[Outcome.MISMATCH, -1]]);
  });

  test("the request carries Host, extra headers and a body length", () => {
    const target = parseLoadArgs(["http://127.0.0.1:8080/a?b=1"])!.target;
    const bytes = buildHttpRequest(target, "POST", [["X-Test", "1"]], "abc");
    expect(Buffer.from(bytes).toString()).toBe(
      "POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Test: 1\r\nContent-Length: 3\r\n\r\nabc",
    );
  });
});

function options(args: string[]): LoadOptions {
  return parseLoadArgs(args)!;
}

describe("HTTP load", () => {
  test("-n sends exactly n requests and records each once", async () => {
    using server = startHttpServer();
    const report = await runLoad(options(["-c", "4", "-n", "1003", `http://127.0.0.1:${server.port}/`]));
    expect(server.received()).toBe(1003);
    expect(report.requests.sent).toBe(1003);
    expect(report.requests.completed).toBe(1003);
    expect(report.requests.ok).toBe(1003);
    expect(report.latency.count).toBe(1003);
    expect(report.statuses).toEqual({ "200": 1003 });
    expect(report.errors.total).toBe(0);
    expect(report.bytes.read).toBe(1003 * OK_RESPONSE.length);
  });

  test("pipelining keeps the count exact", async () => {
    using server = startHttpServer();
    const report = await runLoad(options(["-c", "3", "-p", "16", "-n", "2000", `http://127.0.0.1:${server.port}/`]));
    expect(server.received()).toBe(2000);
    expect(report.requests.completed).toBe(2000);
    expect(report.requests.ok).toBe(2000);
  });

  test("warm-up requests are sent but not recorded", async () => {
    using server = startHttpServer();
    const report = await runLoad(options(["-c", "2", "-w", "200ms", "-n", "300", `http://127.0.0.1:${server.port}/`]));
    expect(report.requests.completed).toBe(300);
    expect(report.latency.count).toBe(300);
    expect(server.received()).toBeGreaterThan(300);
  });

  test("--threads 2 merges the workers' histograms by adding", async () => {
    using server = startHttpServer();
    const report = await runLoad(options(["-c", "4", "-t", "2", "-n", "1001", `http://127.0.0.1:${server.port}/`]));
    expect(server.received()).toBe(1001);
    expect(report.requests.completed).toBe(1001);
    expect(report.latency.count).toBe(1001);
    expect(report.threads).toBe(2);
  });

  test("non-2xx statuses are counted by code", async () => {
    using server = startHttpServer((index) => ({
      bytes: index % 4 === 0 ? "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n" : OK_RESPONSE,
    }));
    const report = await runLoad(options(["-c", "1", "-n", "100", `http://127.0.0.1:${server.port}/`]));
    expect(report.statuses).toEqual({ "200": 75, "503": 25 });
    expect(report.errors.nonOk).toBe(25);
    expect(report.requests.ok).toBe(75);
  });

  test("framing errors are counted and the connection is reopened", async () => {
    using server = startHttpServer((index) => ({
      bytes: index % 5 === 2 ? "HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n" : OK_RESPONSE,
    }));
    const report = await runLoad(options(["-c", "1", "-n", "50", `http://127.0.0.1:${server.port}/`]));
    expect(report.errors.mismatch).toBe(10);
    expect(report.requests.ok).toBe(40);
    expect(report.statuses).toEqual({ "200": 40 });
    expect(report.requests.completed).toBe(50);
    expect(server.received()).toBe(50);
  });

  test("Connection: close responses are followed by a new connection", async () => {
    using server = startHttpServer(() => ({
      bytes: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    }));
    const report = await runLoad(options(["-c", "2", "-n", "20", `http://127.0.0.1:${server.port}/`]));
    expect(report.requests.ok).toBe(20);
    expect(report.errors.total).toBe(0);
  });

  test("a server that never answers ends in timeouts, not a hang", async () => {
    using server = startHttpServer(() => ({ bytes: OK_RESPONSE, delayMs: 5_000 }));
    const report = await runLoad(
      options(["-c", "2", "-n", "2", "--timeout", "300ms", `http://127.0.0.1:${server.port}/`]),
    );
    expect(report.errors.timeout).toBe(2);
    expect(report.requests.completed).toBe(0);
  });

  test("a closed port is a fatal connect error", async () => {
    const server = startHttpServer();
    const port = server.port;
    server.stop();
    const report = await runLoad(options(["-c", "2", "-n", "5", `http://127.0.0.1:${port}/`]));
    expect(report.fatal).toContain("cannot connect");
    expect(report.errors.connect).toBe(2);
  });
});
