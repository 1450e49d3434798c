// http.redirect_port: every request to https:// with a 308 (path and query kept), ACME challenges served from http.root.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
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
  // Anything after an IPv6 literal but a port, and a port that is not a number, make the Host unusable too.
  for (const host of ["[::1]evil.test", "[::1]:443evil", "example.test:abc", "example.test:80:90"]) {
    const response = await plain("/", { Host: host });
    expect({ host, status: response.status }).toEqual({ host, status: 400 });
  }
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

test("a challenge token that is a symlink out of http.root is not followed (as the HTTPS site does not)", async () => {
  const outside = makeTempDir("hps-redirect-outside-");
  try {
    writeFileSync(join(outside, "secret"), "outside the root");
    const challenges = join(root, ".well-known", "acme-challenge");
    symlinkSync(join(outside, "secret"), join(challenges, "escape"));
    mkdirSync(join(challenges, "directory"));
    for (const token of ["escape", "directory"]) {
      const response = await plain(`/.well-known/acme-challenge/${token}`, { Host: "example.test" });
      expect({ token, status: response.status }).toEqual({ token, status: 404 });
      expect(await response.text()).not.toContain("outside the root");
    }
    // The HTTPS site refuses the same link.
    const https = await fetch(`${site.base}/.well-known/acme-challenge/escape`, { tls: { ca: ca.cert } });
    expect(https.status).toBe(404);
    // A link that stays inside the root is served, as the site serves it.
    symlinkSync(join(challenges, "tok_EN-123"), join(challenges, "inside"));
    const inside = await plain("/.well-known/acme-challenge/inside", { Host: "example.test" });
    expect(await inside.text()).toBe("tok_EN-123.thumbprint");
  } finally {
    removeDir(outside);
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
