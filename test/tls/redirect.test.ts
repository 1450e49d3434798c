// http.redirect_port: every request to https:// with a 308 (path and query kept), ACME challenges served from http.root.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";
import { curl, issueLocalhost, makeTestCa, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";
import { Counter } from "../../src/stats/stats.ts";

let ca: TestCa;
let cert: IssuedCertificate;
let root: string;
let site: RunningHttp;
let redirectPort: number;
let logFile: string;

/** A free TCP port on 127.0.0.1 (bound and released; the test binds it right after). */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

beforeAll(async () => {
  ca = await makeTestCa();
  cert = await issueLocalhost(ca, "server");
  root = makeTempDir("hps-redirect-");
  writeFileSync(join(root, "index.html"), "secure\n");
  mkdirSync(join(root, ".well-known", "acme-challenge"), { recursive: true });
  writeFileSync(join(root, ".well-known", "acme-challenge", "tok_EN-123"), "tok_EN-123.thumbprint");
  writeFileSync(join(root, "secret.txt"), "not through the challenge path");
  logFile = join(root, "..", `redirect-${process.pid}.log`);
  redirectPort = freePort();
  site = await startSite(root, {
    tls: { enabled: true, cert_file: cert.certFile, key_file: cert.keyFile },
    http: { redirect_port: redirectPort },
    log: { access_log: true, access_file: logFile },
    net: { deny: ["10.0.0.0/8"] },
  });
});
afterAll(async () => {
  await site.stop();
  ca.remove();
  removeDir(root);
});

async function plain(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Response> {
  return fetch(`http://127.0.0.1:${redirectPort}${path}`, { method, headers, redirect: "manual" });
}

test("every request is redirected to the same host, path and query over HTTPS with 308", async () => {
  const response = await plain("/a/b.html?x=1&y=%20", { Host: "example.test:8080" });
  expect(response.status).toBe(308);
  expect(response.headers.get("location")).toBe(`https://example.test:${site.port}/a/b.html?x=1&y=%20`);
  const post = await plain("/form", { Host: "example.test" }, "POST");
  expect(post.status).toBe(308); // 308 keeps the method and body, unlike 301
  expect(post.headers.get("location")).toBe(`https://example.test:${site.port}/form`);
  const ipv6 = await plain("/", { Host: "[::1]:80" });
  expect(ipv6.headers.get("location")).toBe(`https://[::1]:${site.port}/`);
});

test("curl follows the redirect to the HTTPS site", async () => {
  const result = await curl(ca.certFile, [
    "-L",
    "-w",
    " %{http_code} %{num_redirects}",
    `http://localhost:${redirectPort}/`,
  ]);
  expect(result.stdout).toBe("secure\n 200 1");
});

test("a request without a usable Host gets 400, never a redirect to an odd place", async () => {
  // HTTP/1.0 needs no Host header.
  let answer = "";
  const closed = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: redirectPort,
    socket: {
      data: (_socket, chunk) => void (answer += Buffer.from(chunk).toString("latin1")),
      close: () => closed.resolve(),
    },
  });
  socket.write("GET /x HTTP/1.0\r\n\r\n");
  await closed.promise;
  expect(answer).toStartWith("HTTP/1.1 400 ");
  expect(answer).not.toContain("Location");
  expect((await plain("/", { Host: "evil.test/../x" })).status).toBe(400);
  expect((await plain("/", { Host: "a b" })).status).toBe(400);
});

test("ACME challenges are served from http.root; nothing else is", async () => {
  const challenge = await plain("/.well-known/acme-challenge/tok_EN-123", { Host: "example.test" });
  expect(challenge.status).toBe(200);
  expect(challenge.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(await challenge.text()).toBe("tok_EN-123.thumbprint");
  expect((await plain("/.well-known/acme-challenge/missing", { Host: "example.test" })).status).toBe(404);
  // A token is base64url: no dots, no slashes, so nothing outside the challenge directory can be named.
  for (const path of ["/.well-known/acme-challenge/..%2Fsecret.txt", "/.well-known/acme-challenge/../../secret.txt"]) {
    const response = await plain(path, { Host: "example.test" });
    expect([308, 404]).toContain(response.status);
    expect(await response.text()).not.toContain("not through");
  }
});

test("redirects are counted and logged like other requests", async () => {
  const before = site.context.stats.total(Counter.http3xx);
  await plain("/counted", { Host: "example.test", "User-Agent": "redirect-test" });
  expect(site.context.stats.total(Counter.http3xx)).toBe(before + 1);
  await site.listener.reopenLogs?.();
  const log = await Bun.file(logFile).text();
  expect(log).toContain('"GET /counted HTTP/1.1" 308 0 "-" "redirect-test"');
});
