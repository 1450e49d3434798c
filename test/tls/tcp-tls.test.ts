// echo and HPS/1 over TLS: served like plain, client certificates enforced, bad handshakes counted by reason.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { HpsClient } from "../../src/client/hps-client.ts";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { FrameStatus, Opcode } from "../../src/tcp/frame.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { loadTlsState } from "../../src/tls/tls-state.ts";
import { testConfig, waitFor, withAdmission } from "../helpers/common.ts";
import { issueLocalhost, makeTestCa, runAny, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let server: IssuedCertificate;
let client: IssuedCertificate;
let stranger: IssuedCertificate;

beforeAll(async () => {
  ca = await makeTestCa();
  server = await issueLocalhost(ca, "server");
  client = await ca.issue("client", { commonName: "client" });
  stranger = await ca.selfSigned("stranger", "stranger");
});
afterAll(() => ca.remove());

async function tlsContext(protocol: "echo" | "custom", overrides: ConfigOverrides = {}): Promise<ServerContext> {
  const config = testConfig({
    ...overrides,
    server: { protocol, ...overrides.server },
    tls: { enabled: true, cert_file: server.certFile, key_file: server.keyFile, ...overrides.tls },
  });
  const tls = await loadTlsState(config);
  return { ...withAdmission({ config, stats: Stats.create(), logger: Logger.silent(), gauges: new Map() }), tls };
}

/** One echo round trip over TLS with Bun's client; resolves with what came back. */
async function echoOverTls(port: number, message: string, tls: Record<string, unknown> = {}): Promise<string> {
  let received = "";
  const done = Promise.withResolvers<string>();
  // Written once the handshake is done: a TLS socket takes no application bytes before.
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    tls: { ca: ca.cert, serverName: "localhost", ...tls },
    socket: {
      handshake: (socket, success, error) => {
        if (success && error === null) socket.write(message);
        else done.reject(error ?? new Error("handshake failed"));
      },
      data: (_socket, chunk) => {
        received += Buffer.from(chunk).toString();
        if (received.length >= message.length) done.resolve(received);
      },
      close: () => done.resolve(received),
      error: (_socket, error) => done.reject(error),
    },
  });
  const timer = setTimeout(() => done.reject(new Error("no echo within 5 s")), 5000);
  try {
    return await done.promise;
  } finally {
    clearTimeout(timer);
    socket.end();
  }
}

/** Raw TCP: sends `bytes`, optionally half-closes, resolves with what the server sent once it closed. */
async function rawExchange(port: number, bytes: Uint8Array | string, endAfter: boolean): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const closed = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_socket, chunk) => void chunks.push(new Uint8Array(chunk)),
      close: () => closed.resolve(),
      error: () => closed.resolve(),
    },
  });
  socket.write(bytes);
  if (endAfter) socket.end();
  await closed.promise;
  return Buffer.concat(chunks);
}

const failures = (context: ServerContext) => ({
  notTls: context.stats.total(Counter.tlsFailedNotTls),
  protocolVersion: context.stats.total(Counter.tlsFailedProtocolVersion),
  noSharedCipher: context.stats.total(Counter.tlsFailedNoSharedCipher),
  noClientCertificate: context.stats.total(Counter.tlsFailedNoClientCertificate),
  badClientCertificate: context.stats.total(Counter.tlsFailedBadClientCertificate),
  closed: context.stats.total(Counter.tlsFailedClosed),
  timeout: context.stats.total(Counter.tlsFailedTimeout),
  other: context.stats.total(Counter.tlsFailedOther),
});

describe("echo over TLS", () => {
  test("bytes come back through a verified TLS connection; handshakes are counted", async () => {
    const context = await tlsContext("echo");
    await using listener = await startTcp(context, new InlineRunner());
    expect(await echoOverTls(listener.port, "hello over tls")).toBe("hello over tls");
    // socat: sends its input, half-closes, and waits (-t) for the server to finish and close.
    const result = await runAny(
      [
        "socat",
        "-t",
        "5",
        "-",
        `OPENSSL:127.0.0.1:${listener.port},cafile=${ca.certFile},verify=1,commonname=localhost`,
      ],
      "echoed to socat\n",
    );
    expect(result.stdout).toBe("echoed to socat\n");
    await waitFor(() => context.stats.total(Counter.tlsHandshakes) === 2, 5000, "two handshakes counted");
  });

  test("bad handshakes are refused, counted by reason, and never disturb a connection in use", async () => {
    const context = await tlsContext("echo", { tls: { ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384" } });
    await using listener = await startTcp(context, new InlineRunner());
    const port = listener.port;
    // A healthy client, connected before the noise and used after it.
    let echoed = "";
    const handshaken = Promise.withResolvers<void>();
    const healthy = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: { ca: ca.cert, serverName: "localhost" },
      socket: {
        handshake: () => handshaken.resolve(),
        data: (_socket, chunk) => void (echoed += Buffer.from(chunk).toString()),
      },
    });
    await handshaken.promise;
    healthy.write("before;");
    await waitFor(() => echoed === "before;", 5000, "the healthy echo");

    // Plain HTTP to the TLS port: refused with no answer (Bun sends nothing) and counted.
    expect((await rawExchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)).length).toBe(0);
    // A handshake cut short: half a ClientHello, then the client goes away.
    await rawExchange(port, new Uint8Array([0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3]), true);
    // TLS 1.1 and a client with no cipher in common.
    const openssl = ["openssl", "s_client", "-connect", `127.0.0.1:${port}`];
    await runAny([...openssl, "-tls1_1"], "Q\n");
    await runAny([...openssl, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "Q\n");

    await waitFor(
      () => {
        const f = failures(context);
        return f.notTls === 1 && f.closed === 1 && f.protocolVersion === 1 && f.noSharedCipher === 1;
      },
      5000,
      "four failures counted by reason",
    );
    expect(failures(context)).toEqual({
      notTls: 1,
      protocolVersion: 1,
      noSharedCipher: 1,
      noClientCertificate: 0,
      badClientCertificate: 0,
      closed: 1,
      timeout: 0,
      other: 0,
    });
    healthy.write("after");
    await waitFor(() => echoed === "before;after", 5000, "the healthy echo after the noise");
    healthy.end();
  });

  test("a handshake that stalls is cut by the idle timeout and counted", async () => {
    const context = await tlsContext("echo", { limits: { connection_timeout_s: 0.2 } });
    await using listener = await startTcp(context, new InlineRunner());
    const startedMs = performance.now();
    await rawExchange(listener.port, new Uint8Array([0x16, 3, 1]), false); // three bytes, then silence
    const elapsedMs = performance.now() - startedMs;
    expect(elapsedMs).toBeGreaterThan(150);
    expect(elapsedMs).toBeLessThan(2000);
    await waitFor(() => failures(context).timeout === 1, 5000, "the stalled handshake counted");
    expect(context.stats.total(Counter.connectionsTimedOut)).toBe(1);
  });
});

describe("HPS/1 over TLS", () => {
  test("frames through the TypeScript client with TLS options", async () => {
    const context = await tlsContext("custom");
    await using listener = await startTcp(context, new InlineRunner());
    using hps = await HpsClient.connect("127.0.0.1", listener.port, {
      timeoutMs: 5000,
      tls: { ca: ca.cert, serverName: "localhost" },
    });
    expect(await hps.request(Opcode.PING)).toEqual({ status: FrameStatus.OK, payload: new Uint8Array(0) });
    const echo = await hps.request(Opcode.ECHO, new TextEncoder().encode("mutual"));
    expect(new TextDecoder().decode(echo.payload)).toBe("mutual");
  });

  test("client_auth = require: no certificate and an untrusted one are refused and counted; a signed one is served", async () => {
    const context = await tlsContext("custom", { tls: { client_auth: "require", ca_file: ca.certFile } });
    await using listener = await startTcp(context, new InlineRunner());
    const connect = (tls: Record<string, unknown>) =>
      HpsClient.connect("127.0.0.1", listener.port, {
        timeoutMs: 5000,
        tls: { ca: ca.cert, serverName: "localhost", ...tls },
      });
    await expect(connect({}).then((c) => c.request(Opcode.PING))).rejects.toThrow();
    await expect(
      connect({ cert: stranger.cert, key: stranger.key }).then((c) => c.request(Opcode.PING)),
    ).rejects.toThrow();
    using signed = await connect({ cert: client.cert, key: client.key });
    expect((await signed.request(Opcode.PING)).status).toBe(FrameStatus.OK);
    await waitFor(
      () => failures(context).noClientCertificate === 1 && failures(context).badClientCertificate === 1,
      5000,
      "both refusals counted",
    );
  });

  test("client_auth = request: a client without a certificate is served; an untrusted certificate is refused", async () => {
    const context = await tlsContext("custom", { tls: { client_auth: "request", ca_file: ca.certFile } });
    await using listener = await startTcp(context, new InlineRunner());
    const connect = (tls: Record<string, unknown>) =>
      HpsClient.connect("127.0.0.1", listener.port, {
        timeoutMs: 5000,
        tls: { ca: ca.cert, serverName: "localhost", ...tls },
      });
    using anonymous = await connect({});
    expect((await anonymous.request(Opcode.PING)).status).toBe(FrameStatus.OK);
    using signed = await connect({ cert: client.cert, key: client.key });
    expect((await signed.request(Opcode.PING)).status).toBe(FrameStatus.OK);
    await expect(
      connect({ cert: stranger.cert, key: stranger.key }).then((c) => c.request(Opcode.PING)),
    ).rejects.toThrow();
    await waitFor(() => failures(context).badClientCertificate === 1, 5000, "the refusal counted");
    expect(failures(context).noClientCertificate).toBe(0);
  });
});
