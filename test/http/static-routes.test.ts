// http.static_routes: cached files answered by Bun's static routes (no JavaScript per request), over real sockets.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { configSchema, type ConfigInput } from "../../src/config/schema.ts";
import { Logger } from "../../src/log.ts";
import { Counter } from "../../src/stats/stats.ts";
import { waitFor } from "../helpers/common.ts";
import { makeTempDir, rawGet, rawRequest, removeDir, startSite, text, type RunningHttp } from "../helpers/http.ts";

const REVALIDATE_MS = 100;
const STATIC = {
  http: { static_routes: true, compress: false, cache_revalidate_ms: REVALIDATE_MS, cache_max_file_bytes: 4096 },
} as const;

let root: string;
let site: RunningHttp;
let logFile: string;
let logger: Logger;
const bytes = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);
const big = new Uint8Array(10_000).map((_, i) => i & 0xff);

const gauge = (running: RunningHttp, name: string) => running.context.gauges.get("httpCache")!()[name]!;
const requests = (running: RunningHttp) => running.context.stats.total(Counter.requests);

/** Requests each target once (caching it through fetch) and waits until each has a static route. */
async function staticallyRouted(running: RunningHttp, targets: string[]): Promise<void> {
  const before = gauge(running, "staticRoutes");
  for (const target of targets) expect((await rawGet(running.port, target)).status).toBe(200);
  await waitFor(
    () => gauge(running, "staticRoutes") >= before + targets.length,
    2000,
    `static routes for ${targets.join(", ")}`,
  );
}

/** Runs `exchange` and asserts that no request reached JavaScript (static routes are not counted). */
async function uncounted<T>(running: RunningHttp, exchange: () => Promise<T>): Promise<T> {
  const before = requests(running);
  const result = await exchange();
  expect(requests(running)).toBe(before);
  return result;
}

beforeAll(async () => {
  root = makeTempDir("hps-static-routes-");
  writeFileSync(join(root, "a.bin"), bytes);
  writeFileSync(join(root, "index.html"), "<p>home</p>\n");
  writeFileSync(join(root, "big.bin"), big); // over cache_max_file_bytes: file-backed, never a static route
  writeFileSync(join(root, "s.css"), "body { color: red; }\n".repeat(20));
  writeFileSync(join(root, "s.css.gz"), gzipSync(readFileSync(join(root, "s.css"))));
  mkdirSync(join(root, "docs"));
  logFile = join(root, "..", `${root.split("/").pop()}-server.log`);
  logger = new Logger({ level: "info", file: logFile });
  site = await startSite(root, STATIC, logger);
  await staticallyRouted(site, ["/a.bin", "/"]);
});

afterAll(async () => {
  await site.stop();
  await logger.close();
  removeDir(root);
  removeDir(logFile);
});

describe("validation: static_routes only without per-request features", () => {
  const parse = (input: ConfigInput) => configSchema.safeParse(input);
  const message = (input: ConfigInput) => {
    const result = parse(input);
    expect(result.success).toBe(false);
    const issue = result.error!.issues.find((candidate) => candidate.path.join(".") === "http.static_routes");
    expect(issue).toBeDefined();
    return issue!.message;
  };
  const allowed: ConfigInput = { http: { static_routes: true, compress: false }, log: { access_log: false } };

  test("with every per-request feature off it is valid", () => {
    expect(parse(allowed).success).toBe(true);
  });

  test("at the defaults it names the access log and compression", () => {
    const text = message({ http: { static_routes: true } });
    expect(text).toContain("log.access_log = true");
    expect(text).toContain("http.compress = true");
  });

  test("each conflicting setting is named", () => {
    const cases: [ConfigInput, string][] = [
      [{ ...allowed, log: { access_log: true } }, "log.access_log = true"],
      [{ ...allowed, rate_limit: { enabled: true } }, "rate_limit.enabled = true"],
      [{ ...allowed, http: { ...allowed.http, max_keepalive_requests: 100 } }, "http.max_keepalive_requests = 100"],
      [{ ...allowed, http: { ...allowed.http, connection_limits: true } }, "http.connection_limits = true"],
      [{ ...allowed, net: { allow: ["10.0.0.0/8"] } }, "net.allow"],
      [{ ...allowed, net: { deny: ["10.0.0.0/8"] } }, "net.deny"],
      [{ ...allowed, http: { ...allowed.http, compress: true } }, "http.compress = true"],
      [{ ...allowed, http: { ...allowed.http, cache_revalidate_ms: 0 } }, "http.cache_revalidate_ms = 0"],
    ];
    for (const [input, key] of cases) expect(message(input)).toContain(key);
  });

  test("off (the default), none of them is a conflict", () => {
    expect(
      parse({
        rate_limit: { enabled: true },
        http: { max_keepalive_requests: 5, connection_limits: true, cache_revalidate_ms: 0 },
      }).success,
    ).toBe(true);
  });
});

describe("what Bun's static routes answer", () => {
  test("start-up says once that static routes are not counted", async () => {
    await logger.flush(); // lines reach the file through a writer thread
    const lines = readFileSync(logFile, "utf8")
      .split("\n")
      .filter((line) => line.includes("static_routes on"));
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain("INFO");
    expect(lines[0]).toContain("not counted");
  });

  test("GET: the file with its validators, not counted", async () => {
    const response = await uncounted(site, () => rawGet(site.port, "/a.bin"));
    expect(response.status).toBe(200);
    expect(response.body).toEqual(bytes);
    expect(response.headers.get("etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(response.headers.get("last-modified")).toBe(new Date(statSync(join(root, "a.bin")).mtimeMs).toUTCString());
    expect(response.headers.get("content-type")).toBe("application/octet-stream");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("vary")).toBeUndefined();
    expect((await uncounted(site, () => rawGet(site.port, "/"))).body).toEqual(
      new TextEncoder().encode("<p>home</p>\n"),
    );
  });

  test("a query string reaches the same static route", async () => {
    expect((await uncounted(site, () => rawGet(site.port, "/a.bin?v=2"))).body).toEqual(bytes);
  });

  test("HEAD: same headers and Content-Length, no body", async () => {
    const full = await rawGet(site.port, "/a.bin");
    const head = await uncounted(site, () => rawRequest(site.port, "HEAD /a.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("300");
    expect(head.headers.get("etag")).toBe(full.headers.get("etag")!);
    expect(head.body.length).toBe(0);
  });

  test("If-None-Match (strong, weak, list, *) and If-Modified-Since: 304 with the validators and no body", async () => {
    const full = await rawGet(site.port, "/a.bin");
    const etag = full.headers.get("etag")!;
    const lastModified = full.headers.get("last-modified")!;
    for (const header of [
      `If-None-Match: ${etag}`,
      `If-None-Match: W/${etag}`,
      `If-None-Match: "x", ${etag}`,
      "If-None-Match: *",
      `If-Modified-Since: ${lastModified}`,
    ]) {
      const response = await uncounted(site, () => rawGet(site.port, "/a.bin", `${header}\r\n`));
      expect(response.status).toBe(304);
      expect(response.headers.get("etag")).toBe(etag);
      expect(response.headers.get("last-modified")).toBe(lastModified);
      expect(response.body.length).toBe(0);
    }
    const earlier = new Date(Date.parse(lastModified) - 10_000).toUTCString();
    expect((await rawGet(site.port, "/a.bin", `If-Modified-Since: ${earlier}\r\n`)).status).toBe(200);
    expect((await rawGet(site.port, "/a.bin", `If-None-Match: "other"\r\n`)).status).toBe(200);
    // If-None-Match takes precedence: a mismatch is 200 whatever If-Modified-Since says.
    expect(
      (await rawGet(site.port, "/a.bin", `If-None-Match: "other"\r\nIf-Modified-Since: ${lastModified}\r\n`)).status,
    ).toBe(200);
  });

  test("If-Match and If-Unmodified-Since failures: 412 with an empty body", async () => {
    const lastModified = (await rawGet(site.port, "/a.bin")).headers.get("last-modified")!;
    const earlier = new Date(Date.parse(lastModified) - 10_000).toUTCString();
    for (const header of [`If-Match: "other"`, `If-Unmodified-Since: ${earlier}`]) {
      const response = await uncounted(site, () => rawGet(site.port, "/a.bin", `${header}\r\n`));
      expect(response.status).toBe(412);
      expect(response.body.length).toBe(0);
    }
  });

  test("Range is ignored: the whole file, 200 (RFC 9110 §14.2 lets a server ignore Range)", async () => {
    for (const range of ["bytes=10-19", "bytes=0-1,5-6", "bytes=-5", "bytes=400-"]) {
      const response = await uncounted(site, () => rawGet(site.port, "/a.bin", `Range: ${range}\r\n`));
      expect(response.status).toBe(200);
      expect(response.headers.get("content-range")).toBeUndefined();
      expect(response.body).toEqual(bytes);
    }
  });

  test("other methods reach the handler: POST 405 with Allow, OPTIONS 204 (counted)", async () => {
    const before = requests(site);
    const post = await rawRequest(site.port, "POST /a.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    const options = await rawRequest(site.port, "OPTIONS /a.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(options.status).toBe(204);
    expect(requests(site)).toBe(before + 2);
  });
});

describe("what stays on the ordinary path", () => {
  test("a missing file: 404; a directory without slash: 301 (counted)", async () => {
    const before = requests(site);
    expect((await rawGet(site.port, "/missing.bin")).status).toBe(404);
    expect((await rawGet(site.port, "/docs")).status).toBe(301);
    expect(requests(site)).toBe(before + 2);
  });

  test("a file too large for the cache: served from disk with ranges, counted, never a static route", async () => {
    const staticBefore = gauge(site, "staticRoutes");
    expect((await rawGet(site.port, "/big.bin")).body).toEqual(big);
    await waitFor(() => gauge(site, "routes") - gauge(site, "staticRoutes") >= 1, 2000, "a handler route for /big.bin");
    const before = requests(site);
    const partial = await rawGet(site.port, "/big.bin", "Range: bytes=5-9\r\n");
    expect(partial.status).toBe(206);
    expect(partial.body).toEqual(big.subarray(5, 10));
    expect(requests(site)).toBe(before + 1);
    expect(gauge(site, "staticRoutes")).toBe(staticBefore);
  });

  test("a file with a precompressed sidecar keeps its handler: the encoding is still chosen per request", async () => {
    const staticBefore = gauge(site, "staticRoutes");
    const routesBefore = gauge(site, "routes");
    expect((await rawGet(site.port, "/s.css")).status).toBe(200);
    await waitFor(() => gauge(site, "routes") > routesBefore, 2000, "a route for /s.css");
    expect(gauge(site, "staticRoutes")).toBe(staticBefore);
    const gzip = await rawGet(site.port, "/s.css", "Accept-Encoding: gzip\r\n");
    expect(gzip.headers.get("content-encoding")).toBe("gzip");
    expect(gzip.headers.get("vary")).toBe("Accept-Encoding");
    expect((await rawGet(site.port, "/s.css")).headers.get("content-encoding")).toBeUndefined();
  });
});

describe("keeping static routes current", () => {
  test("a changed file is served new within cache_revalidate_ms, then statically again; a removed one gets 404", async () => {
    const dir = makeTempDir("hps-static-change-");
    const path = join(dir, "note.txt");
    writeFileSync(path, "version one");
    const changing = await startSite(dir, STATIC);
    try {
      await staticallyRouted(changing, ["/note.txt"]);
      const first = await uncounted(changing, () => rawGet(changing.port, "/note.txt"));
      expect(text(first.body)).toBe("version one");
      writeFileSync(path, "version two");
      const future = statSync(path).mtimeMs / 1000 + 5; // same size, so make sure the mtime moves too
      utimesSync(path, future, future);
      const changedAtMs = performance.now();
      await waitFor(
        async () => text((await rawGet(changing.port, "/note.txt")).body) === "version two",
        3000,
        "the new content",
      );
      // The timer's window plus the rebuild and one request; generous for a loaded machine.
      expect(performance.now() - changedAtMs).toBeLessThan(REVALIDATE_MS * 10 + 500);
      const second = await rawGet(changing.port, "/note.txt");
      expect(second.headers.get("etag")).not.toBe(first.headers.get("etag"));
      await waitFor(() => gauge(changing, "staticRoutes") === 1, 2000, "the static route again");
      expect(text((await uncounted(changing, () => rawGet(changing.port, "/note.txt"))).body)).toBe("version two");
      unlinkSync(path);
      await waitFor(async () => (await rawGet(changing.port, "/note.txt")).status === 404, 3000, "404 after delete");
      expect(gauge(changing, "staticRoutes")).toBe(0);
    } finally {
      await changing.stop();
      removeDir(dir);
    }
  });

  test("an evicted file loses its static route (the rebuild that routes the newcomer drops it)", async () => {
    const dir = makeTempDir("hps-static-evict-");
    for (const name of ["a", "b", "c"]) writeFileSync(join(dir, `${name}.bin`), bytes);
    const small = await startSite(dir, { http: { ...STATIC.http, cache_bytes: 700, cache_max_file_bytes: 400 } });
    try {
      await staticallyRouted(small, ["/a.bin", "/b.bin"]);
      expect((await rawGet(small.port, "/c.bin")).status).toBe(200); // evicts one of the others
      expect(gauge(small, "entries")).toBe(2);
      await waitFor(
        () => gauge(small, "staticRoutes") === 2 && gauge(small, "routes") === 2,
        2000,
        "static routes for the cached files only",
      );
      for (const name of ["a", "b", "c"]) expect((await rawGet(small.port, `/${name}.bin`)).body).toEqual(bytes);
    } finally {
      await small.stop();
      removeDir(dir);
    }
  });

  test("off (the default): no static routes; cached paths keep handlers (Range honoured)", async () => {
    const plain = await startSite(root, { http: { cache_revalidate_ms: REVALIDATE_MS } });
    try {
      expect((await rawGet(plain.port, "/a.bin")).status).toBe(200);
      await waitFor(() => gauge(plain, "routes") >= 1, 2000, "a route for /a.bin");
      expect(gauge(plain, "staticRoutes")).toBe(0);
      expect((await rawGet(plain.port, "/a.bin", "Range: bytes=10-19\r\n")).status).toBe(206);
    } finally {
      await plain.stop();
    }
  });
});
