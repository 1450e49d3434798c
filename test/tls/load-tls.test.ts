// `bun run load` against HTTPS: HTTP/1.1 over TLS on its own sockets, and --http2 through Bun's fetch.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LoadReport } from "../../src/client/run.ts";
import { makeTempDir, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";
import { issueLocalhost, makeTestCa, runAny, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let root: string;
let site: RunningHttp;
const LOAD = join(import.meta.dir, "../../src/client/load.ts");
const BODY = "x".repeat(1000);

beforeAll(async () => {
  ca = await makeTestCa();
  const cert = await issueLocalhost(ca, "server");
  root = makeTempDir("hps-load-tls-");
  writeFileSync(join(root, "1k.txt"), BODY);
  site = await startSite(root, { tls: { enabled: true, cert_file: cert.certFile, key_file: cert.keyFile } });
});
afterAll(async () => {
  await site.stop();
  ca.remove();
  removeDir(root);
});

async function load(args: string[]): Promise<{ exitCode: number; report: LoadReport | null; stderr: string }> {
  const result = await runAny(["bun", LOAD, "--json", ...args], undefined, 30_000);
  let report: LoadReport | null = null;
  try {
    report = JSON.parse(result.stdout) as LoadReport;
  } catch {
    // no report: the stderr says why
  }
  return { exitCode: result.exitCode, report, stderr: result.stderr };
}

test("https:// over HTTP/1.1, verified with --cacert: every request answered 200 with the file", async () => {
  const { exitCode, report } = await load(["-c", "4", "-n", "400", "--cacert", ca.certFile, `${site.base}/1k.txt`]);
  expect(exitCode).toBe(0);
  expect(report!.requests.ok).toBe(400);
  expect(report!.errors.total).toBe(0);
  expect(report!.statuses).toEqual({ "200": 400 });
  expect(report!.bytes.read).toBeGreaterThan(400 * BODY.length);
});

test("--http2: the same requests through Bun's fetch over HTTP/2", async () => {
  const { exitCode, report } = await load([
    "--http2",
    "-c",
    "2",
    "-p",
    "4",
    "-n",
    "400",
    "--cacert",
    ca.certFile,
    `${site.base}/1k.txt`,
  ]);
  expect(exitCode).toBe(0);
  expect(report!.requests.ok).toBe(400);
  expect(report!.requests.sent).toBe(400);
  expect(report!.errors.total).toBe(0);
  expect(report!.bytes.read).toBe(400 * BODY.length);
  expect(report!.latency.count).toBe(400);
});

test("a certificate nobody vouched for fails the run unless --insecure", async () => {
  const refused = await load(["-c", "1", "-n", "10", "--timeout", "2s", `${site.base}/1k.txt`]);
  expect(refused.exitCode).toBe(1);
  const insecure = await load(["-c", "1", "-n", "10", "--insecure", `${site.base}/1k.txt`]);
  expect(insecure.exitCode).toBe(0);
  expect(insecure.report!.requests.ok).toBe(10);
});

test("TLS flags need an https:// target", async () => {
  const result = await runAny(["bun", LOAD, "--http2", "http://127.0.0.1:1/"]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toContain("--http2: needs an https:// target");
});
