// Certificate reload through the server: new handshakes get the new pair, open connections keep theirs, bad files are refused.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Config, ConfigOverrides } from "../../src/config/schema.ts";
import { StartupError, startServer } from "../../src/server.ts";
import { HpsClient } from "../../src/client/hps-client.ts";
import { FrameStatus, Opcode } from "../../src/tcp/frame.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { makeTempDir, removeDir } from "../helpers/http.ts";
import { issueLocalhost, makeTestCa, presentedSerial, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let first: IssuedCertificate;
let second: IssuedCertificate;
let expired: IssuedCertificate;
let root: string;

beforeAll(async () => {
  ca = await makeTestCa();
  first = await issueLocalhost(ca, "first");
  second = await issueLocalhost(ca, "second");
  expired = await ca.issue("expired", {
    commonName: "localhost",
    dnsNames: ["localhost"],
    notBefore: new Date("2021-01-01T00:00:00Z"),
    notAfter: new Date("2021-06-01T00:00:00Z"),
  });
  root = makeTempDir("hps-tls-reload-");
  writeFileSync(join(root, "index.html"), "hi\n");
});
afterAll(() => {
  ca.remove();
  removeDir(root);
});

/** The live certificate and key paths a config names; the test rewrites them as an ACME client would. */
function livePaths(): { certFile: string; keyFile: string; logFile: string } {
  const dir = makeTempDir("hps-tls-live-");
  return { certFile: join(dir, "live.pem"), keyFile: join(dir, "live.key"), logFile: join(dir, "server.log") };
}

function install(pair: IssuedCertificate, live: { certFile: string; keyFile: string }): void {
  copyFileSync(pair.certFile, live.certFile);
  copyFileSync(pair.keyFile, live.keyFile);
}

function configFor(live: { certFile: string; keyFile: string; logFile: string }, extra: ConfigOverrides = {}): Config {
  return testConfig({
    ...extra,
    server: { protocol: "http", ...extra.server },
    http: { root, ...extra.http },
    log: { level: "info", file: live.logFile, access_log: false },
    tls: { enabled: true, cert_file: live.certFile, key_file: live.keyFile, ...extra.tls },
  });
}

describe("certificate reload (http)", () => {
  test("new handshakes get the renewed pair (HTTP/3 too); the server keeps answering; both pairs are logged", async () => {
    const live = livePaths();
    install(first, live);
    const config = configFor(live, { http: { http3: true } });
    await using server = await startServer(config);
    expect(await presentedSerial(server.port, "localhost")).toBe(first.serial);

    const before = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.cert } });
    expect(await before.text()).toBe("hi\n");

    install(second, live); // renewed in place: the configuration itself is unchanged
    const report = await server.reload(config);
    expect(report.certificatesChanged).toBe(true);
    expect(report.applied).toEqual([]);
    expect(await presentedSerial(server.port, "localhost")).toBe(second.serial);
    const after = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.cert } });
    expect(await after.text()).toBe("hi\n");
    // HTTP/3 was reopened with the new pair and answers.
    const quic = await fetch(`https://127.0.0.1:${server.port}/`, {
      protocol: "http3",
      tls: { rejectUnauthorized: false },
    } as RequestInit);
    expect(await quic.text()).toBe("hi\n");

    const unchanged = await server.reload(config);
    expect(unchanged.certificatesChanged).toBe(false);

    await server.logger.close();
    const log = await Bun.file(live.logFile).text();
    expect(log).toContain(`tls: default certificate (${live.certFile}): CN=localhost; names: localhost, 127.0.0.1;`);
    expect(log).toContain(`serial ${first.serial}`);
    expect(log).toContain(`serial ${second.serial}`);
    expect(log).toContain("configuration reloaded: the certificates");
  });

  test("a mismatched, expired or garbled pair is refused naming the file, and the running pair stays", async () => {
    const live = livePaths();
    install(first, live);
    const config = configFor(live);
    await using server = await startServer(config);

    copyFileSync(second.keyFile, live.keyFile); // the new key without its certificate
    await expect(server.reload(config)).rejects.toThrow(
      `certificates not reloaded: tls.key_file "${live.keyFile}" does not match the certificate in tls.cert_file "${live.certFile}"`,
    );
    expect(await presentedSerial(server.port, "localhost")).toBe(first.serial);

    install(expired, live);
    await expect(server.reload(config)).rejects.toThrow(
      `certificates not reloaded: tls.cert_file "${live.certFile}": the certificate (CN=localhost) expired on 2021-06-01T00:00:00Z: renew it`,
    );
    writeFileSync(live.certFile, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    await expect(server.reload(config)).rejects.toThrow(
      `tls.cert_file "${live.certFile}": the certificate cannot be parsed`,
    );
    // A renewal read while being written: the chain ends inside its second certificate.
    writeFileSync(live.certFile, second.cert + ca.cert.slice(0, 120));
    copyFileSync(second.keyFile, live.keyFile);
    await expect(server.reload(config)).rejects.toThrow(
      `certificates not reloaded: tls.cert_file "${live.certFile}" holds a PEM block that never ends`,
    );
    expect(await presentedSerial(server.port, "localhost")).toBe(first.serial);
    const response = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.cert } });
    expect(response.status).toBe(200);
  });

  test("start-up refuses the same files with the same messages, all of them at once", async () => {
    const live = livePaths();
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(second.keyFile, live.keyFile);
    const missing = join(root, "missing.pem");
    const config = configFor(live, {
      tls: { certificates: [{ server_name: "b.test", cert_file: missing, key_file: live.keyFile }] },
    });
    let error: unknown;
    try {
      await startServer(config);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toBe(
      [
        `tls.key_file "${live.keyFile}" does not match the certificate in tls.cert_file "${live.certFile}" (CN=localhost): give the key the certificate was issued for`,
        `tls.certificates[0].cert_file "${missing}" cannot be read: no such file`,
      ].join("\n"),
    );
  });
});

describe("certificate reload (custom)", () => {
  test("new handshakes get the renewed pair; an HPS/1 connection opened before keeps its requests answered", async () => {
    const live = livePaths();
    install(first, live);
    const config = configFor(live, { server: { protocol: "custom" } });
    await using server = await startServer(config);
    expect(await presentedSerial(server.port, "localhost")).toBe(first.serial);
    using before = await HpsClient.connect("127.0.0.1", server.port, {
      timeoutMs: 5000,
      tls: { ca: ca.cert, serverName: "localhost" },
    });
    expect((await before.request(Opcode.PING)).status).toBe(FrameStatus.OK);

    install(second, live);
    expect((await server.reload(config)).certificatesChanged).toBe(true);
    expect(await presentedSerial(server.port, "localhost")).toBe(second.serial);
    expect((await before.request(Opcode.PING)).status).toBe(FrameStatus.OK);
    using after = await HpsClient.connect("127.0.0.1", server.port, {
      timeoutMs: 5000,
      tls: { ca: ca.cert, serverName: "localhost" },
    });
    expect((await after.request(Opcode.PING)).status).toBe(FrameStatus.OK);
  });
});

describe("certificate reload with several I/O threads", () => {
  test("every thread serves the renewed pair to new connections", async () => {
    const live = livePaths();
    install(first, live);
    const config = configFor(live, { server: { io_threads: 2 } });
    await using server = await startServer(config);
    const serials = async () => {
      const seen = new Set<string>();
      // The kernel spreads new connections over both threads' listeners; enough of them reach each one.
      for (let i = 0; i < 8; i++) seen.add(await presentedSerial(server.port, "localhost"));
      return [...seen];
    };
    expect(await serials()).toEqual([first.serial]);
    install(second, live);
    let report: Awaited<ReturnType<typeof server.reload>> | null = null;
    // Not `expect(...).resolves` with I/O threads (docs/upstream/expect-settles-worker-message.md).
    await server.reload(config).then((value) => void (report = value));
    expect(report!.certificatesChanged).toBe(true);
    await waitFor(async () => (await serials()).join() === second.serial, 10_000, "every thread on the new pair");
    const response = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.cert } });
    expect(await response.text()).toBe("hi\n");
  }, 30_000);
});
