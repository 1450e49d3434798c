// Bad input at the TLS edge of the http listener (and TLS sent to plain ports): bounded outcomes, others unaffected.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FrameStatus } from "../../src/tcp/frame.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { testContext } from "../helpers/common.ts";
import { makeTempDir, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";
import { issueLocalhost, makeTestCa, runAny, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let root: string;
let site: RunningHttp;

/** A ClientHello's first bytes: a handshake record of TLS 1.0 framing, as every client sends first. */
const CLIENT_HELLO_START = new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03]);
/** A whole record of that shape (64 bytes of handshake body), for ports that read what follows. */
const CLIENT_HELLO_RECORD = new Uint8Array(5 + 0x40);
CLIENT_HELLO_RECORD.set(CLIENT_HELLO_START);

beforeAll(async () => {
  ca = await makeTestCa();
  const cert = await issueLocalhost(ca, "server");
  root = makeTempDir("hps-tls-bad-");
  writeFileSync(join(root, "index.html"), "fine\n");
  site = await startSite(root, { tls: { enabled: true, cert_file: cert.certFile, key_file: cert.keyFile } });
});
afterAll(async () => {
  await site.stop();
  ca.remove();
  removeDir(root);
});

/** Raw TCP: sends `bytes` (then half-closes when asked), resolves with what came back once the server closed. */
async function raw(port: number, bytes: Uint8Array | string, halfClose = false): Promise<{ text: string; ms: number }> {
  const startedMs = performance.now();
  let text = "";
  const closed = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_socket, chunk) => void (text += Buffer.from(chunk).toString("latin1")),
      end: (socket) => void socket.end(), // the server's end is answered with ours
      close: () => closed.resolve(),
      error: () => closed.resolve(),
    },
  });
  if (bytes.length > 0) socket.write(bytes);
  if (halfClose) socket.end();
  await closed.promise;
  return { text, ms: performance.now() - startedMs };
}

/** A keep-alive HTTPS connection (Bun's TLS client) that sends one request at a time. */
async function keepAliveClient(port: number) {
  let buffer = "";
  let waiter: (() => void) | null = null;
  const handshaken = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    tls: { ca: ca.cert, serverName: "localhost" },
    socket: {
      handshake: () => handshaken.resolve(),
      data: (_socket, chunk) => {
        buffer += Buffer.from(chunk).toString("latin1");
        waiter?.();
      },
    },
  });
  await handshaken.promise;
  return {
    async get(): Promise<string> {
      buffer = "";
      const complete = Promise.withResolvers<void>();
      waiter = () => {
        if (buffer.endsWith("fine\n")) complete.resolve();
      };
      socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
      const timer = setTimeout(() => complete.reject(new Error("no answer within 5 s")), 5000);
      await complete.promise;
      clearTimeout(timer);
      return buffer.slice(0, buffer.indexOf("\r\n"));
    },
    close: () => socket.end(),
  };
}

describe("the HTTPS port", () => {
  test("plain HTTP is closed without an answer (Bun sends none), and a client in the middle of its work is unaffected", async () => {
    const client = await keepAliveClient(site.port);
    expect(await client.get()).toBe("HTTP/1.1 200 OK");
    const results = await Promise.all(
      Array.from({ length: 20 }, () => raw(site.port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")),
    );
    for (const result of results) {
      expect(result.text).toBe("");
      expect(result.ms).toBeLessThan(5000);
    }
    expect(await client.get()).toBe("HTTP/1.1 200 OK");
    client.close();
  });

  test("TLS 1.0 and 1.1 clients are refused in the handshake; TLS 1.2 and 1.3 are served", async () => {
    const connect = ["openssl", "s_client", "-connect", `127.0.0.1:${site.port}`, "-CAfile", ca.certFile];
    for (const old of ["-tls1", "-tls1_1"]) {
      const result = await runAny([...connect, old], "Q\n");
      expect(result.stdout + result.stderr).toMatch(/alert protocol version|no protocols available/);
      expect(result.stdout).toContain("Cipher is (NONE)");
    }
    for (const [current, version] of [
      ["-tls1_2", "TLSv1.2"],
      ["-tls1_3", "TLSv1.3"],
    ] as const) {
      const result = await runAny([...connect, current], "Q\n");
      expect(result.stdout).toContain(`New, ${version}, Cipher is `);
      expect(result.stdout).toContain("Verify return code: 0 (ok)");
    }
  });

  test("a handshake cut short is closed at once; one that stalls is cut by Bun's header timeout, others served meanwhile", async () => {
    const truncated = await raw(site.port, CLIENT_HELLO_START, true);
    expect(truncated.text).toBe("");
    expect(truncated.ms).toBeLessThan(5000);
    const stalled = raw(site.port, CLIENT_HELLO_START);
    const during = await keepAliveClient(site.port);
    expect(await during.get()).toBe("HTTP/1.1 200 OK");
    during.close();
    const result = await stalled;
    // Bun.serve ends connections whose request (here: handshake) has not completed after about 10-12 s.
    expect(result.text).toBe("");
    expect(result.ms).toBeLessThan(16_000);
    const after = await keepAliveClient(site.port);
    expect(await after.get()).toBe("HTTP/1.1 200 OK");
    after.close();
  }, 30_000);
});

describe("TLS to plain ports", () => {
  test("a ClientHello to a plain HTTP port gets 400 and a close", async () => {
    const plain = await startSite(root);
    try {
      const result = await raw(plain.port, CLIENT_HELLO_RECORD);
      expect(result.text).toStartWith("HTTP/1.1 400 Bad Request\r\n");
      const openssl = await runAny(["openssl", "s_client", "-connect", `127.0.0.1:${plain.port}`], "Q\n");
      expect(openssl.stdout + openssl.stderr).toMatch(/wrong version number|no peer certificate/);
    } finally {
      await plain.stop();
    }
  });

  test("a ClientHello to a plain HPS/1 port gets a connection-level error frame and a close", async () => {
    const context = testContext({ server: { protocol: "custom" } });
    await using listener = await startTcp(context, new InlineRunner());
    const result = await raw(listener.port, CLIENT_HELLO_RECORD);
    const bytes = Buffer.from(result.text, "latin1");
    expect(bytes.length).toBeGreaterThanOrEqual(12);
    // Byte 4 of a ClientHello (its record length's low byte, 0x40) is not HPS/1's version 1: "bad frame".
    expect(bytes.readUInt16BE(6)).toBe(FrameStatus.BAD_FRAME);
    expect(bytes.readUInt32BE(8)).toBe(0);
  });
});
