// The [tls] settings and the HTTP settings that need TLS: the rules between them, the file format, --check.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildConfig, ConfigError, loadConfig } from "../../src/config/load.ts";
import { configToToml } from "../../src/config/print.ts";
import { planReload } from "../../src/config/reload.ts";
import { testConfig } from "../helpers/common.ts";
import { makeTempDir, removeDir } from "../helpers/http.ts";
import { issueLocalhost, makeTestCa, runAny, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let cert: IssuedCertificate;
let dir: string;

beforeAll(async () => {
  ca = await makeTestCa();
  cert = await issueLocalhost(ca, "server");
  dir = makeTempDir("hps-tls-config-");
});
afterAll(() => {
  ca.remove();
  removeDir(dir);
});

function problemsOf(raw: Record<string, Record<string, unknown>>): string[] {
  try {
    buildConfig(raw);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

const TLS_ON = { enabled: true, cert_file: "c.pem", key_file: "k.pem" };

describe("rules", () => {
  test("tls.enabled needs both files; client certificates need ca_file", () => {
    expect(problemsOf({ tls: { enabled: true } })).toEqual([
      'config: tls.cert_file must name a PEM file when tls.enabled = true (got "", the default)',
      'config: tls.key_file must name a PEM file when tls.enabled = true (got "", the default)',
    ]);
    expect(problemsOf({ tls: { ...TLS_ON, client_auth: "require" } })).toEqual([
      'config: tls.ca_file must name the PEM file of the CAs that sign client certificates when tls.client_auth = "require" (got "", the default)',
    ]);
  });

  test("HTTP/3, the redirect port, HSTS and admin.tls need TLS", () => {
    const problems = problemsOf({
      http: { http3: true, redirect_port: 8081, hsts_max_age_s: 60 },
      admin: { tls: true },
    });
    expect(problems).toEqual([
      "config: http.http3 needs tls.enabled = true (and tls.cert_file / tls.key_file) (got true)",
      "config: http.redirect_port needs tls.enabled = true (and tls.cert_file / tls.key_file) (got 8081)",
      "config: http.hsts_max_age_s needs tls.enabled = true (and tls.cert_file / tls.key_file) (got 60)",
      "config: admin.tls needs tls.enabled = true (and tls.cert_file / tls.key_file) (got true)",
    ]);
  });

  test("what Bun cannot do is refused with the reason: request on HTTP, SNI and PROXY protocol with TLS on echo/custom", () => {
    expect(problemsOf({ tls: { ...TLS_ON, client_auth: "request", ca_file: "ca.pem" } })[0]).toStartWith(
      'config: tls.client_auth cannot be "request" with server.protocol = "http": Bun.serve does not tell the server whether an offered certificate verified',
    );
    const echo = problemsOf({
      server: { protocol: "echo" },
      net: { proxy_protocol: true },
      tls: { ...TLS_ON, certificates: [{ server_name: "a.test", cert_file: "a.pem", key_file: "a.key" }] },
    });
    expect(echo).toEqual([
      'config: tls.certificates needs server.protocol = "http": Bun.listen, which serves "echo", takes one certificate (docs/upstream/listen-sni.md) (got [{"server_name":"a.test","cert_file":"a.pem","key_file":"a.key"}])',
      "config: net.proxy_protocol cannot be used with tls.enabled: the PROXY header comes before the TLS handshake, and Bun's TLS listener reads TLS from the first byte (got true)",
    ]);
  });

  test("SNI names must be host names, given once; the redirect port must be its own", () => {
    const problems = problemsOf({
      server: { port: 8443 },
      http: { redirect_port: 8443 },
      tls: {
        ...TLS_ON,
        certificates: [
          { server_name: "a.test", cert_file: "a.pem", key_file: "a.key" },
          { server_name: "A.test", cert_file: "a.pem", key_file: "a.key" },
          { server_name: "not a name", cert_file: "b.pem", key_file: "b.key" },
          { server_name: "*.ok.test", cert_file: "", key_file: "c.key" },
        ],
      },
    });
    expect(problems).toEqual([
      'config: tls.certificates[1].server_name is given twice in [[tls.certificates]] (got "A.test")',
      'config: tls.certificates[2].server_name must be a host name such as "example.com" or "*.example.com" (got "not a name")',
      'config: tls.certificates[3].cert_file must name a PEM file (got "")',
      "config: http.redirect_port must differ from server.port (got 8443)",
    ]);
  });
});

describe("the file", () => {
  test("[[tls.certificates]] tables load, print back the same way, and cannot be set from the environment", async () => {
    const path = join(dir, "server.toml");
    writeFileSync(
      path,
      [
        "[tls]",
        "enabled = true",
        `cert_file = "${cert.certFile}"`,
        `key_file = "${cert.keyFile}"`,
        "[[tls.certificates]]",
        'server_name = "b.test"',
        'cert_file = "b.pem"',
        'key_file = "b.key"',
        "[[tls.certificates]]",
        'server_name = "*.c.test"',
        'cert_file = "c.pem"',
        'key_file = "c.key"',
        "",
      ].join("\n"),
    );
    const config = await loadConfig({ configPath: path, requireFile: true });
    expect(config.tls.certificates).toEqual([
      { server_name: "b.test", cert_file: "b.pem", key_file: "b.key" },
      { server_name: "*.c.test", cert_file: "c.pem", key_file: "c.key" },
    ]);
    const printed = join(dir, "printed.toml");
    writeFileSync(printed, configToToml(config));
    expect((await loadConfig({ configPath: printed, requireFile: true })).tls).toEqual(config.tls);
    let message = "";
    try {
      await loadConfig({ configPath: path, env: { HPS_TLS_CERTIFICATES: "x" }, sets: ["tls.certificates=y"] });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe(
      [
        "HPS_TLS_CERTIFICATES: tls.certificates is set in the configuration file only, as [[tls.certificates]] tables",
        "--set tls.certificates=y: tls.certificates is set in the configuration file only, as [[tls.certificates]] tables",
      ].join("\n"),
    );
  });

  test("a reload applies [tls] (certificates, versions, ciphers) but not tls.enabled or the listener's protocols", () => {
    const running = testConfig({ tls: { ...TLS_ON } });
    const next = testConfig({
      tls: { ...TLS_ON, enabled: true, min_version: "1.3", ciphers: "ECDHE+AESGCM" },
      http: { http2: false, hsts_max_age_s: 60 },
    });
    const plan = planReload(running, next);
    expect(plan.applied).toEqual(["http.hsts_max_age_s", "tls.min_version", "tls.ciphers"]);
    expect(plan.needsRestart).toEqual(["http.http2"]);
    // Turning TLS off takes a restart; meanwhile the running listener still needs its files.
    expect(() => planReload(running, testConfig({}))).toThrow(
      "the reloaded configuration cannot run with the settings that need a restart kept at their running values: tls.cert_file: must name a PEM file when tls.enabled = true",
    );
  });
});

describe("--check", () => {
  test("reads the certificate files: a bad pair fails naming the file; a good one prints its summary", async () => {
    const main = join(import.meta.dir, "../../src/main.ts");
    const set = (key: string) => ["--set", "tls.enabled=true", "--set", `tls.cert_file=${cert.certFile}`, "--set", key];
    const bad = await runAny(["bun", main, "--check", ...set(`tls.key_file=${ca.keyFile}`)]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain(
      `tls.key_file "${ca.keyFile}" does not match the certificate in tls.cert_file "${cert.certFile}"`,
    );
    expect(bad.stderr).toContain("hps: 1 start-up problem; the server would not start.");
    const good = await runAny(["bun", main, "--check", ...set(`tls.key_file=${cert.keyFile}`)]);
    expect(good.exitCode).toBe(0);
    expect(good.stdout).toContain(`default certificate (${cert.certFile}): CN=localhost; names: localhost, 127.0.0.1;`);
    expect(good.stdout).toContain("configuration is valid");
  });
});
