// Admission on the TCP listener (echo, HPS/1) over real sockets: refusals, their answers and counters, PROXY protocol.
import { describe, expect, test } from "bun:test";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Admission } from "../../src/net/admission.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { encodeFrame, FrameDecoder, FrameStatus, Opcode } from "../../src/tcp/frame.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { rawConnect, testConfig, waitFor } from "../helpers/common.ts";

/** The TCP listener with an Admission in its context, as startServer builds it; `stats` to read counters. */
async function startServer(config: ReturnType<typeof testConfig>) {
  const stats = Stats.create();
  const gauges = new Map<string, () => Record<string, number>>();
  const context: ServerContext & { admission: Admission } = {
    config,
    stats,
    logger: Logger.silent(),
    gauges,
    admission: new Admission(config, stats, gauges),
  };
  const listener = await startTcp(context, new InlineRunner());
  return {
    port: listener.port,
    stats,
    [Symbol.asyncDispose]: () => listener.stop({ graceful: false, timeoutMs: 0 }),
  };
}

/** Decodes every complete HPS/1 frame in `bytes`. */
function frames(bytes: Uint8Array): Array<{ opcode: number; status: number; requestId: number }> {
  const out: Array<{ opcode: number; status: number; requestId: number }> = [];
  new FrameDecoder(1 << 20).push(bytes, (opcode, status, requestId) => void out.push({ opcode, status, requestId }));
  return out;
}

describe("echo", () => {
  test("over max_connections: closed at once without a byte, counted; the admitted one still echoes", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "echo" }, limits: { max_connections: 1, max_connections_per_ip: 1 } }),
    );
    const admitted = await rawConnect(server.port);
    await waitFor(() => server.stats.total(Counter.connectionsAccepted) === 1, 2000, "the first connection");
    const refused = await rawConnect(server.port);
    await waitFor(() => refused.isClosed(), 2000, "the refused connection to be closed");
    expect(refused.received().length).toBe(0);
    expect(server.stats.total(Counter.connectionsRefused)).toBe(1);
    expect(server.stats.total(Counter.refusedMaxConnections)).toBe(1);
    admitted.socket.write("ping");
    await waitFor(() => admitted.received().length === 4, 2000, "the echo");
    expect(new TextDecoder().decode(admitted.received())).toBe("ping");
    admitted.socket.end();
  });

  test("over max_connections_per_ip: refused and counted as per-IP", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "echo" }, limits: { max_connections: 100, max_connections_per_ip: 2 } }),
    );
    const open = [await rawConnect(server.port), await rawConnect(server.port)];
    await waitFor(() => server.stats.total(Counter.connectionsAccepted) === 2, 2000, "two connections");
    const refused = await rawConnect(server.port);
    await waitFor(() => refused.isClosed(), 2000, "the refused connection to be closed");
    expect(server.stats.total(Counter.refusedPerIp)).toBe(1);
    // Closing one makes room again.
    open[0]!.socket.end();
    await waitFor(() => server.stats.total(Counter.connectionsClosed) === 1, 2000, "the close");
    const again = await rawConnect(server.port);
    again.socket.write("x");
    await waitFor(() => again.received().length === 1, 2000, "the echo on the new connection");
    again.socket.end();
    open[1]!.socket.end();
  });

  test("a denied address is closed at once and counted", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "echo" }, net: { deny: ["127.0.0.1/32"] } }),
    );
    const refused = await rawConnect(server.port);
    await waitFor(() => refused.isClosed(), 2000, "the denied connection to be closed");
    expect(server.stats.total(Counter.refusedDenied)).toBe(1);
    expect(server.stats.total(Counter.connectionsAccepted)).toBe(0);
  });
});

describe("custom", () => {
  test("over the rate: status 5 per request and the connection stays open", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "custom" }, rate_limit: { enabled: true, requests: 2, window_s: 60 } }),
    );
    const client = await rawConnect(server.port);
    for (let id = 1; id <= 4; id++) client.socket.write(encodeFrame(Opcode.PING, 0, id));
    await waitFor(() => frames(client.received()).length === 4, 2000, "four answers");
    const answers = frames(client.received()).sort((a, b) => a.requestId - b.requestId);
    expect(answers.map((frame) => frame.status)).toEqual([
      FrameStatus.OK,
      FrameStatus.OK,
      FrameStatus.RATE_LIMITED,
      FrameStatus.RATE_LIMITED,
    ]);
    expect(client.isClosed()).toBe(false);
    expect(server.stats.total(Counter.rateLimited)).toBe(2);
    client.socket.end();
  });

  test("over max_connections: a connection-level error frame (request id 0), then close", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "custom" }, limits: { max_connections: 1, max_connections_per_ip: 1 } }),
    );
    const admitted = await rawConnect(server.port);
    await waitFor(() => server.stats.total(Counter.connectionsAccepted) === 1, 2000, "the first connection");
    const refused = await rawConnect(server.port);
    await waitFor(() => refused.isClosed(), 2000, "the refused connection to be closed");
    const answer = frames(refused.received());
    expect(answer.length).toBe(1);
    expect(answer[0]!.requestId).toBe(0);
    expect(answer[0]!.status).not.toBe(FrameStatus.OK);
    expect(server.stats.total(Counter.refusedMaxConnections)).toBe(1);
    admitted.socket.end();
  });

  test("an idle connection with half a frame is cut at connection_timeout_s and counted as timed out", async () => {
    await using server = await startServer(
      testConfig({ server: { protocol: "custom" }, limits: { connection_timeout_s: 0.3 } }),
    );
    const client = await rawConnect(server.port);
    client.socket.write(encodeFrame(Opcode.PING, 0, 1).subarray(0, 5));
    await waitFor(() => client.isClosed(), 3000, "the idle connection to be cut");
    expect(server.stats.total(Counter.connectionsTimedOut)).toBe(1);
  });
});
