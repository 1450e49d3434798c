// HTTPS and HTTP/2 on the http listener, checked with curl and openssl: SNI, protocols, HSTS, and the ordinary features.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";
import {
  curl,
  issueLocalhost,
  makeTestCa,
  presentedSerial,
  runAny,
  type IssuedCertificate,
  type TestCa,
} from "../helpers/tls.ts";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { Counter } from "../../src/stats/stats.ts";

let ca: TestCa;
let main: IssuedCertificate;
let other: IssuedCertificate;
let root: string;
const css = `${"body { color: #333; margin: 0 auto; }\n".repeat(200)}`;

beforeAll(async () => {
  ca = await makeTestCa();
  main = await issueLocalhost(ca, "main");
  other = await ca.issue("other", { commonName: "other.test", dnsNames: ["other.test"] });
  root = makeTempDir("hps-https-");
  writeFileSync(join(root, "index.html"), "<h1>hello</h1>\n");
  writeFileSync(join(root, "style.css"), css);
});
afterAll(() => {
  ca.remove();
  removeDir(root);
});

function tlsOverrides(extra: ConfigOverrides = {}): ConfigOverrides {
  return {
    ...extra,
    tls: { enabled: true, cert_file: main.certFile, key_file: main.keyFile, ...extra.tls },
  };
}

async function withSite(overrides: ConfigOverrides, body: (site: RunningHttp) => Promise<void>): Promise<void> {
  const site = await startSite(root, overrides);
  try {
    await body(site);
  } finally {
    await site.stop();
  }
}

/** curl's status line: "<http_version> <status>" for one request. */
async function versionAndStatus(site: RunningHttp, path: string, args: string[] = []): Promise<string> {
  const result = await curl(ca.certFile, [
    "-o",
    "/dev/null",
    "-w",
    "%{http_version} %{http_code}",
    ...args,
    `${site.base}${path}`,
  ]);
  return result.stdout;
}

describe("HTTPS", () => {
  test("HTTP/1.1 and HTTP/2 (ALPN) with a verified certificate", async () => {
    await withSite(tlsOverrides(), async (site) => {
      expect(site.base).toStartWith("https://127.0.0.1:");
      expect(await versionAndStatus(site, "/", ["--http1.1"])).toBe("1.1 200");
      expect(await versionAndStatus(site, "/", ["--http2"])).toBe("2 200");
      const body = await curl(ca.certFile, ["--http2", `${site.base}/`]);
      expect(body.stdout).toBe("<h1>hello</h1>\n");
      // Bun's fetch verifies against the same CA.
      const response = await fetch(`${site.base}/style.css`, { tls: { ca: ca.cert } });
      expect(await response.text()).toBe(css);
    });
  });

  test("http.http2 = false offers HTTP/1.1 only", async () => {
    await withSite(tlsOverrides({ http: { http2: false } }), async (site) => {
      expect(await versionAndStatus(site, "/", ["--http2"])).toBe("1.1 200");
    });
  });

  test("the certificate is chosen by SNI; the default one without a match", async () => {
    const overrides = tlsOverrides({
      tls: { certificates: [{ server_name: "other.test", cert_file: other.certFile, key_file: other.keyFile }] },
    });
    await withSite(overrides, async (site) => {
      expect(await presentedSerial(site.port, "other.test")).toBe(other.serial);
      expect(await presentedSerial(site.port, "localhost")).toBe(main.serial);
      expect(await presentedSerial(site.port, "unknown.test")).toBe(main.serial);
      expect(await presentedSerial(site.port, null)).toBe(main.serial);
      const result = await curl(ca.certFile, [
        "--resolve",
        `other.test:${site.port}:127.0.0.1`,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `https://other.test:${site.port}/`,
      ]);
      expect(result.stdout).toBe("200");
    });
  });

  test("Strict-Transport-Security on every answer when hsts_max_age_s > 0, and on none otherwise", async () => {
    await withSite(tlsOverrides({ http: { hsts_max_age_s: 31536000 } }), async (site) => {
      for (const [path, args, status] of [
        ["/", [], 200],
        ["/missing", [], 404],
        ["/", ["-X", "POST"], 405],
        ["/", ["-X", "OPTIONS"], 204],
      ] as const) {
        const result = await curl(ca.certFile, [
          "--http2",
          "-D",
          "-",
          "-o",
          "/dev/null",
          ...args,
          `${site.base}${path}`,
        ]);
        expect(result.stdout).toStartWith(`HTTP/2 ${status}`);
        expect(result.stdout.toLowerCase()).toContain("strict-transport-security: max-age=31536000\r\n");
      }
      const etag = (await fetch(`${site.base}/`, { tls: { ca: ca.cert } })).headers.get("etag")!;
      const notModified = await fetch(`${site.base}/`, { tls: { ca: ca.cert }, headers: { "If-None-Match": etag } });
      expect(notModified.status).toBe(304);
      expect(notModified.headers.get("strict-transport-security")).toBe("max-age=31536000");
    });
    await withSite(tlsOverrides(), async (site) => {
      const response = await fetch(`${site.base}/`, { tls: { ca: ca.cert } });
      expect(response.headers.get("strict-transport-security")).toBeNull();
    });
  });

  test("conditional requests, ranges, compression and the access log work the same over HTTP/2", async () => {
    const logFile = join(makeTempDir("hps-https-log-"), "access.log");
    await withSite(tlsOverrides({ log: { access_log: true, access_file: logFile } }), async (site) => {
      const first = await curl(ca.certFile, ["--http2", "-D", "-", "-o", "/dev/null", `${site.base}/style.css`]);
      const etag = /etag: (.+)\r\n/i.exec(first.stdout)![1]!;
      const conditional = await curl(ca.certFile, [
        "--http2",
        "-H",
        `If-None-Match: ${etag}`,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `${site.base}/style.css`,
      ]);
      expect(conditional.stdout).toBe("304");
      const range = await curl(ca.certFile, ["--http2", "-H", "Range: bytes=0-3", "-D", "-", `${site.base}/style.css`]);
      expect(range.stdout).toStartWith("HTTP/2 206");
      expect(range.stdout).toContain("content-range: bytes 0-3/");
      expect(range.stdout.endsWith("body")).toBe(true);
      const gzip = await curl(ca.certFile, [
        "--http2",
        "-H",
        "Accept-Encoding: gzip",
        "-D",
        "-",
        "-o",
        "/dev/null",
        `${site.base}/style.css`,
      ]);
      expect(gzip.stdout).toContain("content-encoding: gzip");
      const decoded = await curl(ca.certFile, ["--http2", "--compressed", `${site.base}/style.css`]);
      expect(decoded.stdout).toBe(css);
      await site.listener.reopenLogs?.(); // flushes
      await site.stop();
      const lines = (await Bun.file(logFile).text()).trim().split("\n");
      expect(lines.length).toBe(5);
      expect(lines[1]).toContain('"GET /style.css HTTP/1.1" 304 0');
    });
  });

  test("limits and rate limiting answer over HTTP/2 as over HTTP/1.1", async () => {
    const overrides = tlsOverrides({
      rate_limit: { enabled: true, requests: 2, window_s: 60, burst: 2 },
      limits: { max_request_bytes: 100 },
    });
    await withSite(overrides, async (site) => {
      // nghttp, not curl: the server answers before reading the body and ends the stream with RST_STREAM(NO_ERROR)
      // (RFC 9113 §8.1), which curl 7.88 reports as a framing error now and then although the answer arrived whole.
      const body = join(ca.dir, "body.bin");
      writeFileSync(body, "x".repeat(200));
      const tooLarge = await runAny(["nghttp", "-v", "-d", body, `${site.base}/`]);
      expect(tooLarge.stdout).toMatch(/recv \(stream_id=\d+\) :status: 413/);
      expect(tooLarge.stdout).toMatch(/recv RST_STREAM frame [^\n]*\n\s*\(error_code=NO_ERROR/);
      const statuses: string[] = [];
      for (let i = 0; i < 3; i++) statuses.push(await versionAndStatus(site, "/", ["--http2"]));
      expect(statuses).toEqual(["2 200", "2 429", "2 429"]);
      expect(site.context.stats.total(Counter.rateLimited)).toBe(2);
      expect(site.context.stats.total(Counter.requestsTooLarge)).toBe(1);
    });
  });

  test("TLS 1.3 only refuses a TLS 1.2 client; session tickets resume, or not when off", async () => {
    await withSite(tlsOverrides({ tls: { min_version: "1.3" } }), async (site) => {
      const old = await runAny(["openssl", "s_client", "-connect", `127.0.0.1:${site.port}`, "-tls1_2"], "Q\n");
      expect(old.stdout + old.stderr).toMatch(/alert protocol version|no protocols available|wrong version/i);
      const current = await runAny(
        ["openssl", "s_client", "-connect", `127.0.0.1:${site.port}`, "-tls1_3", "-CAfile", ca.certFile],
        "Q\n",
      );
      expect(current.stdout).toContain("Verify return code: 0 (ok)");
    });
    for (const tickets of [true, false]) {
      await withSite(tlsOverrides({ tls: { session_tickets: tickets } }), async (site) => {
        const session = join(ca.dir, `session-${tickets}.pem`);
        const connect = [
          "openssl",
          "s_client",
          "-connect",
          `127.0.0.1:${site.port}`,
          "-tls1_2",
          "-CAfile",
          ca.certFile,
        ];
        await runAny([...connect, "-sess_out", session], "Q\n");
        const again = await runAny([...connect, "-sess_in", session], "Q\n");
        expect(again.stdout).toContain(tickets ? "Reused, TLSv1.2" : "New, TLSv1.2");
      });
    }
  });

  test("ciphers restricts TLS 1.2 suites", async () => {
    await withSite(tlsOverrides({ tls: { ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384" } }), async (site) => {
      const connect = ["openssl", "s_client", "-connect", `127.0.0.1:${site.port}`, "-tls1_2", "-CAfile", ca.certFile];
      const allowed = await runAny([...connect, "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"], "Q\n");
      expect(allowed.stdout).toContain("Cipher is ECDHE-ECDSA-AES256-GCM-SHA384");
      const refused = await runAny([...connect, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "Q\n");
      expect(refused.stdout + refused.stderr).toMatch(/handshake failure/);
    });
  });
});

describe("HTTP/2 without TLS (prior knowledge)", () => {
  test("h2c for clients that start with the preface; HTTP/1.1 for the rest; off when http2 = false", async () => {
    await withSite({}, async (site) => {
      expect(await versionAndStatus(site, "/", ["--http2-prior-knowledge"])).toBe("2 200");
      expect(await versionAndStatus(site, "/")).toBe("1.1 200");
    });
    await withSite({ http: { http2: false } }, async (site) => {
      const result = await curl(ca.certFile, ["--http2-prior-knowledge", `${site.base}/`]);
      expect(result.exitCode).not.toBe(0);
      expect(await versionAndStatus(site, "/")).toBe("1.1 200");
    });
  });
});

describe("client certificates (tls.client_auth = require)", () => {
  test("a client without one, or with one no CA in ca_file signed, is refused; a signed one is served", async () => {
    const client = await ca.issue("client", { commonName: "client" });
    const stranger = await ca.selfSigned("stranger", "stranger");
    await withSite(tlsOverrides({ tls: { client_auth: "require", ca_file: ca.certFile } }), async (site) => {
      const none = await curl(ca.certFile, ["-o", "/dev/null", "-w", "%{http_code}", `${site.base}/`]);
      expect(none.stdout).toBe("000");
      const signed = await curl(ca.certFile, [
        "--cert",
        client.certFile,
        "--key",
        client.keyFile,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `${site.base}/`,
      ]);
      expect(signed.stdout).toBe("200");
      const untrusted = await curl(ca.certFile, [
        "--cert",
        stranger.certFile,
        "--key",
        stranger.keyFile,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `${site.base}/`,
      ]);
      expect(untrusted.stdout).toBe("000");
    });
  });
});
