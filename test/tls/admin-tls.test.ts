// admin.tls: the admin listener over HTTPS; TLS metrics (/metrics, the report) and `bun run stats` against it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { makeTempDir } from "../helpers/http.ts";
import {
  issueLocalhost,
  makeTestCa,
  presentedSerial,
  runAny,
  type IssuedCertificate,
  type TestCa,
} from "../helpers/tls.ts";

let ca: TestCa;
let first: IssuedCertificate;
let second: IssuedCertificate;

beforeAll(async () => {
  ca = await makeTestCa();
  first = await issueLocalhost(ca, "first");
  second = await issueLocalhost(ca, "second");
});
afterAll(() => ca.remove());

const STATS_CLI = join(import.meta.dir, "../../src/stats-cli.ts");

test("admin over HTTPS: metrics for handshakes and expiry, bun run stats with --cacert, rotated on reload", async () => {
  const dir = makeTempDir("hps-admin-tls-");
  const certFile = join(dir, "live.pem");
  const keyFile = join(dir, "live.key");
  copyFileSync(first.certFile, certFile);
  copyFileSync(first.keyFile, keyFile);
  const config = testConfig({
    server: { protocol: "echo" },
    admin: { enabled: true, port: 0, tls: true },
    tls: { enabled: true, cert_file: certFile, key_file: keyFile },
  });
  await using server = await startServer(config);
  const adminUrl = `https://127.0.0.1:${server.adminPort}`;
  expect(await presentedSerial(server.adminPort!, "localhost")).toBe(first.serial);
  // Plain HTTP to the admin port gets nothing.
  await expect(fetch(`http://127.0.0.1:${server.adminPort}/livez`)).rejects.toThrow();

  // One failed handshake on the public port (TLS 1.1) to see in the metrics.
  await runAny(["openssl", "s_client", "-connect", `127.0.0.1:${server.port}`, "-tls1_1"], "Q\n");
  await waitFor(() => server.stats.total(Counter.tlsFailedProtocolVersion) === 1, 5000, "the failure counted");

  const metrics = await (await fetch(`${adminUrl}/metrics`, { tls: { ca: ca.cert } })).text();
  const notAfterSeconds = Math.floor(Date.parse(new X509Certificate(first.cert).validTo) / 1000);
  expect(metrics).toContain(`hps_tls_certificate_expiry_seconds{server_name="*"} ${notAfterSeconds}\n`);
  expect(metrics).toContain('hps_tls_handshake_failures_total{reason="protocol_version"} 1\n');
  expect(metrics).toContain('hps_tls_handshake_failures_total{reason="not_tls"} 0\n');
  expect(metrics).toContain("# TYPE hps_tls_handshakes_total counter\n");

  const stats = await runAny(["bun", STATS_CLI, "--url", adminUrl, "--cacert", ca.certFile]);
  expect(stats.exitCode).toBe(0);
  expect(stats.stdout).toContain("tls: 0 handshakes; failed: not tls 0, protocol version 1,");
  expect(stats.stdout).toMatch(/certificates: default expires in 0 days \(\d{4}-\d\d-\d\d\)/);
  const unverified = await runAny(["bun", STATS_CLI, "--url", adminUrl]);
  expect(unverified.exitCode).toBe(1);
  expect(unverified.stderr).toContain("stats: cannot reach");

  copyFileSync(second.certFile, certFile);
  copyFileSync(second.keyFile, keyFile);
  expect((await server.reload(config)).certificatesChanged).toBe(true);
  expect(await presentedSerial(server.adminPort!, "localhost")).toBe(second.serial);
  const livez = await fetch(`${adminUrl}/livez`, { tls: { ca: ca.cert } });
  expect(await livez.text()).toBe("ok\n");
});
