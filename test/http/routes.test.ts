// http: cached paths served through native Bun routes keep every behaviour of the fetch path.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isRoutablePath } from "../../src/http/routes.ts";
import { Counter } from "../../src/stats/stats.ts";
import { waitFor } from "../helpers/common.ts";
import {
  keptConnection,
  makeTempDir,
  parseResponses,
  rawExchange,
  rawGet,
  rawRequest,
  removeDir,
  startSite,
  text,
  type RunningHttp,
} from "../helpers/http.ts";

let root: string;
let site: RunningHttp;
let accessFile: string;
const bytes = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);

const routes = (running: RunningHttp) => running.context.gauges.get("httpCache")!().routes!;

/** Requests each target once (caching it) and waits until every one has a native route. */
async function routed(running: RunningHttp, targets: string[]): Promise<void> {
  const before = routes(running);
  for (const target of targets) expect((await rawGet(running.port, target)).status).toBe(200);
  await waitFor(() => routes(running) >= before + targets.length, 2000, `routes for ${targets.join(", ")}`);
}

beforeAll(async () => {
  root = makeTempDir("hps-routes-");
  accessFile = join(root, "..", `${root.split("/").pop()}-access.log`);
  writeFileSync(join(root, "a.bin"), bytes);
  writeFileSync(join(root, "index.html"), "<p>home</p>\n");
  mkdirSync(join(root, "docs"));
  writeFileSync(join(root, "docs", "index.html"), "<p>docs</p>\n");
  site = await startSite(root, {
    http: { max_keepalive_requests: 3, cache_revalidate_ms: 0 },
    log: { access_log: true, access_file: accessFile },
  });
  await routed(site, ["/a.bin", "/", "/docs/"]);
});

afterAll(async () => {
  await site.stop();
  removeDir(root);
  rmSync(accessFile, { force: true });
});

describe("which paths are routed natively", () => {
  test("plain paths are; anything Bun's router could read differently is not", () => {
    for (const path of ["/", "/a.bin", "/docs/", "/docs/x-y_z~1.2.css", "/.well-known/x"])
      expect(isRoutablePath(path)).toBe(true);
    for (const path of [
      "",
      "a",
      "//a",
      "/a//b",
      "/a%20b",
      "/:id",
      "/*",
      "/a/./b",
      "/a/../b",
      "/a/..",
      "/a b",
      "/é",
      "/a?b",
      "/a;b",
    ]) {
      expect(isRoutablePath(path)).toBe(false);
    }
  });

  test("cached paths got routes", () => {
    expect(routes(site)).toBeGreaterThanOrEqual(3);
  });
});

describe("a routed path behaves exactly as through fetch", () => {
  test("GET: body and validators; HEAD: same headers, no body", async () => {
    const full = await rawGet(site.port, "/a.bin");
    expect(full.status).toBe(200);
    expect(full.body).toEqual(bytes);
    expect(full.headers.get("etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    const head = await rawRequest(site.port, "HEAD /a.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("300");
    expect(head.headers.get("etag")).toBe(full.headers.get("etag")!);
    expect(head.body.length).toBe(0);
  });

  test("preconditions and ranges", async () => {
    const etag = (await rawGet(site.port, "/a.bin")).headers.get("etag")!;
    expect((await rawGet(site.port, "/a.bin", `If-None-Match: ${etag}\r\n`)).status).toBe(304);
    expect((await rawGet(site.port, "/a.bin", `If-Match: "other"\r\n`)).status).toBe(412);
    const partial = await rawGet(site.port, "/a.bin", "Range: bytes=10-19\r\n");
    expect(partial.status).toBe(206);
    expect(partial.headers.get("content-range")).toBe("bytes 10-19/300");
    expect(partial.body).toEqual(bytes.subarray(10, 20));
    expect((await rawGet(site.port, "/a.bin", "Range: bytes=400-\r\n")).status).toBe(416);
  });

  test("OPTIONS 204 and other methods 405, with Allow", async () => {
    const options = await rawRequest(site.port, "OPTIONS /a.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(options.status).toBe(204);
    expect(options.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    const post = await rawRequest(site.port, "POST /a.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  });

  test("the keep-alive limit holds on routed requests", async () => {
    const connection = await keptConnection(site.port);
    try {
      for (let i = 0; i < 2; i++)
        expect((await connection.request("GET /a.bin HTTP/1.1\r\nHost: t\r\n\r\n")).headers.get("connection")).not.toBe(
          "close",
        );
      const third = await connection.request("GET /a.bin HTTP/1.1\r\nHost: t\r\n\r\n");
      expect(third.headers.get("connection")).toBe("close");
      expect(await connection.closed()).toBe(true);
    } finally {
      connection.end();
    }
  });

  test("pipelined routed requests are answered in order", async () => {
    const batch =
      "GET /a.bin HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\nGET /docs/ HTTP/1.1\r\nHost: t\r\n\r\n";
    const exchange = await rawExchange(site.port, batch, (received) => parseResponses(received).length >= 3);
    const responses = parseResponses(exchange.bytes);
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200]);
    expect(responses[0]!.body).toEqual(bytes);
    expect(text(responses[1]!.body)).toBe("<p>home</p>\n");
    expect(text(responses[2]!.body)).toBe("<p>docs</p>\n");
  });

  test("stats and the access log (with the query) count routed requests", async () => {
    const stats = site.context.stats;
    const requestsBefore = stats.total(Counter.requests);
    const bytesBefore = stats.total(Counter.bytesWritten);
    expect((await rawGet(site.port, "/a.bin?v=42", "User-Agent: routed-test\r\n")).status).toBe(200);
    expect(stats.total(Counter.requests)).toBe(requestsBefore + 1);
    expect(stats.total(Counter.bytesWritten)).toBe(bytesBefore + 300);
    await site.stop();
    const log = readFileSync(accessFile, "utf8");
    expect(log).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/a\.bin\?v=42 HTTP\/1\.1" 200 300 "-" "routed-test"$/m);
    site = await startSite(root, { http: { cache_revalidate_ms: 0 } });
    await routed(site, ["/a.bin", "/", "/docs/"]);
  });
});

describe("a routed path whose file changes", () => {
  test("new content is served (revalidation still runs); a file turned directory redirects with its query; a removed file is 404", async () => {
    writeFileSync(join(root, "moving.txt"), "first");
    await routed(site, ["/moving.txt"]);
    writeFileSync(join(root, "moving.txt"), "second, longer");
    const changed = await rawGet(site.port, "/moving.txt");
    expect(text(changed.body)).toBe("second, longer");

    rmSync(join(root, "moving.txt"));
    expect((await rawGet(site.port, "/moving.txt")).status).toBe(404);

    mkdirSync(join(root, "moving.txt"));
    const redirect = await rawGet(site.port, "/moving.txt?q=1");
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get("location")).toBe("/moving.txt/?q=1");
  });

  test("spellings of a routed path that are not byte-identical still follow the path rules", async () => {
    expect((await rawGet(site.port, "/a.bin/")).status).toBe(404);
    // Bun removes dot segments from request.url before any handler runs: this names /a.bin inside the root.
    expect((await rawGet(site.port, "/x/../a.bin")).body).toEqual(bytes);
    expect((await rawGet(site.port, "/a.bin%00")).status).toBe(400);
    expect((await rawGet(site.port, "/%61.bin")).body).toEqual(bytes);
    expect((await rawGet(site.port, "//a.bin")).body).toEqual(bytes);
  });
});
