// http.http3: QUIC on the same port number, advertised with Alt-Svc, answered by the same handler (logged HTTP/3.0).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";
import { issueLocalhost, makeTestCa, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let root: string;
let site: RunningHttp;
let logFile: string;

beforeAll(async () => {
  ca = await makeTestCa();
  const cert = await issueLocalhost(ca, "server");
  root = makeTempDir("hps-http3-");
  writeFileSync(join(root, "index.html"), "over quic\n");
  logFile = join(ca.dir, "access.log");
  site = await startSite(root, {
    tls: { enabled: true, cert_file: cert.certFile, key_file: cert.keyFile },
    http: { http3: true, hsts_max_age_s: 600 },
    log: { access_log: true, access_file: logFile },
  });
});
afterAll(async () => {
  await site.stop();
  ca.remove();
  removeDir(root);
});

/**
 * Bun's HTTP/3 client takes a private CA only from NODE_EXTRA_CA_CERTS, read at start (docs/upstream/fetch-http3-ca.md),
 * so these requests skip verification; the test below verifies in a child process.
 */
function h3(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Response> {
  return fetch(`https://127.0.0.1:${site.port}${path}`, {
    method,
    headers,
    protocol: "http3",
    tls: { rejectUnauthorized: false },
  } as RequestInit);
}

test("TCP responses advertise HTTP/3 on the same port with Alt-Svc", async () => {
  const response = await fetch(`${site.base}/`, { tls: { ca: ca.cert } });
  expect(response.headers.get("alt-svc")).toBe(`h3=":${site.port}"; ma=86400`);
});

test("HTTP/3 requests get the same answers: files, 304, 404, 405, HSTS", async () => {
  const response = await h3("/");
  expect(response.status).toBe(200);
  expect(await response.text()).toBe("over quic\n");
  expect(response.headers.get("strict-transport-security")).toBe("max-age=600");
  const etag = response.headers.get("etag")!;
  expect((await h3("/", { "If-None-Match": etag })).status).toBe(304);
  expect((await h3("/missing")).status).toBe(404);
  const post = await h3("/", {}, "POST");
  expect(post.status).toBe(405);
  expect(post.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
});

test("the access log names HTTP/3.0 for requests that came over QUIC", async () => {
  const response = await h3("/?from=quic", { "User-Agent": "quic-test" });
  await response.text();
  await site.listener.reopenLogs?.();
  const log = await Bun.file(logFile).text();
  expect(log).toContain('"GET /?from=quic HTTP/3.0" 200 10 "-" "quic-test"');
});

test("an HTTP/3 client that trusts the test CA verifies the certificate; one that does not is refused", async () => {
  const script = `const r = await fetch("https://127.0.0.1:${site.port}/", { protocol: "http3" }).then(
    async (response) => \`\${response.status} \${(await response.text()).trim()}\`, (error) => error.code);
  console.log(r);`;
  const clientWith = async (env: Record<string, string>) => {
    const child = Bun.spawn([process.execPath, "-e", script], { env: { ...process.env, ...env }, stdout: "pipe" });
    const timer = setTimeout(() => child.kill(), 15_000);
    const out = await new Response(child.stdout).text();
    await child.exited;
    clearTimeout(timer);
    return out.trim();
  };
  expect(await clientWith({ NODE_EXTRA_CA_CERTS: ca.certFile })).toBe("200 over quic");
  expect(await clientWith({ NODE_EXTRA_CA_CERTS: "" })).toBe("HTTP3HandshakeFailed");
}, 30_000);
