// http: what an HTTP linter and a hostile corpus check (issue 14): Host, HEAD fields, dispositions, methods, Vary, zstd.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KNOWN_EXTENSIONS } from "../../src/http/mime.ts";
import { waitFor } from "../helpers/common.ts";
import {
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
const css = "body { color: red; }\n".repeat(200);
const bigBytes = 300_000; // over cache_max_file_bytes below: served from disk with Bun.file

beforeAll(async () => {
  root = makeTempDir("hps-conformance-");
  writeFileSync(join(root, "index.html"), "<h1>home</h1>");
  writeFileSync(join(root, "style.css"), css);
  writeFileSync(join(root, "image.png"), new Uint8Array(300).fill(7));
  mkdirSync(join(root, "deep/er/path"), { recursive: true });
  for (const target of ["/deep/er/path/file.txt", "/short.txt"]) writeFileSync(join(root, target), `file ${target}`);
  for (const name of ["big.bin", "big.pdf", "big.js", "big.png", "big.json"])
    writeFileSync(join(root, name), new Uint8Array(bigBytes).fill(65));
  site = await startSite(root, { http: { cache_max_file_bytes: 100_000, cache_bytes: 1_000_000 } });
});

afterAll(async () => {
  await site.stop();
  removeDir(root);
});

describe("Host (RFC 9112 §3.2)", () => {
  test("two Host lines -> 400 and the connection is closed", async () => {
    const exchange = await rawExchange(
      site.port,
      "GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /index.html HTTP/1.1\r\nHost: a\r\n\r\n",
      () => false,
    );
    const responses = parseResponses(exchange.bytes);
    expect(responses.map((response) => response.status)).toEqual([400]);
    expect(responses[0]!.headers.get("connection")).toBe("close");
    expect(exchange.closedByServer).toBe(true);
  });

  test("a Host with spaces or other bytes no host[:port] has -> 400", async () => {
    const malformed = ["a b c", "a\tb", "a/b", "a@b", "ä.example", 'a"b'];
    // Brackets only around an IP literal, one colon before an all-digit port, and a host before the port.
    malformed.push("a:b:c", "a:8o", ":80", "[::1", "[::1]x", "[::1]:8x", "a]b", "a[b]", "[]", "[a]b]");
    for (const host of malformed) {
      const response = await rawRequest(site.port, `GET /index.html HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      expect([host, response.status]).toEqual([host, 400]);
    }
  });

  test("valid hosts are served: names, addresses, ports, IPv6 literals, empty", async () => {
    const valid = ["example.com", "127.0.0.1:8080", "[::1]:80", "[::1]", "[v1.x]", "a:", "xn--bcher-kva.example"];
    valid.push("a_b.local", "a%2Eb", "");
    for (const host of valid) {
      const response = await rawRequest(site.port, `GET /index.html HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      expect([host, response.status]).toEqual([host, 200]);
    }
  });

  test("an empty Host, or none on HTTP/1.0, gets the file the target names (Bun's URL is then only the target)", async () => {
    // Files no other test asks for: they are not cached, so the URL is read (not a natively routed path).
    const requests = [
      ["/deep/er/path/file.txt", "GET /deep/er/path/file.txt HTTP/1.1\r\nHost: \r\n\r\n"],
      ["/short.txt", "GET /short.txt HTTP/1.0\r\n\r\n"],
      ["/deep/er/path/file.txt", "GET /deep/er/path/file.txt?v=1 HTTP/1.0\r\n\r\n"],
    ] as const;
    for (const [target, request] of requests) {
      const response = await rawRequest(site.port, request);
      expect([request, response.status, text(response.body)]).toEqual([request, 200, `file ${target}`]);
    }
    const redirect = await rawRequest(site.port, "GET /deep/er?x=1 HTTP/1.1\r\nHost:\r\n\r\n");
    expect([redirect.status, redirect.headers.get("location")]).toEqual([301, "/deep/er/?x=1"]);
  });

  test("a path Bun routes natively (a cached file) checks the Host too", async () => {
    await rawGet(site.port, "/index.html");
    await waitFor(() => site.context.gauges.get("httpCache")!().routes! > 0, 5000, "the cached path's route");
    const response = await rawRequest(site.port, "GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    expect(response.status).toBe(400);
  });
});

describe("HEAD carries the fields GET does (RFC 9110 §9.3.2)", () => {
  const names = (headers: Map<string, string>) => [...headers.keys()].sort();
  for (const [target, extra] of [
    ["/index.html", ""],
    ["/big.bin", ""],
    ["/missing", ""],
    ["/style.css", "Accept-Encoding: gzip\r\n"],
    ["/big.bin", "Range: bytes=0-9\r\n"],
    ["/index.html", 'If-Match: "nope"\r\n'],
  ] as const) {
    test(`${target} ${extra.trim()}: same header names, Date included`, async () => {
      const get = await rawRequest(site.port, `GET ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`);
      const head = await rawRequest(site.port, `HEAD ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`);
      expect(head.status).toBe(get.status);
      expect(head.headers.get("date")).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      expect(names(head.headers)).toEqual(names(get.headers));
    });
  }
});

describe("Content-Disposition", () => {
  test("files sent from disk (GET, HEAD, a range) never carry a disposition without a type", async () => {
    for (const name of ["big.bin", "big.pdf", "big.js", "big.png", "big.json"]) {
      for (const request of [
        `GET /${name} HTTP/1.1\r\nHost: t\r\n\r\n`,
        `HEAD /${name} HTTP/1.1\r\nHost: t\r\n\r\n`,
        `GET /${name} HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\n\r\n`,
      ]) {
        const response = await rawRequest(site.port, request);
        expect(response.status).toBeLessThan(300);
        const disposition = response.headers.get("content-disposition") ?? null;
        expect([name, request.slice(0, 4), disposition]).toEqual([name, request.slice(0, 4), disposition && "inline"]);
      }
    }
  });

  test("files held in memory carry none", async () => {
    for (const target of ["/index.html", "/style.css", "/image.png"])
      expect((await rawGet(site.port, target)).headers.has("content-disposition")).toBe(false);
  });

  test("no type in the MIME table gets Bun's filename-only disposition from disk", async () => {
    const dir = makeTempDir("hps-disposition-");
    for (const extension of KNOWN_EXTENSIONS) writeFileSync(join(dir, `f.${extension}`), "x".repeat(64));
    const fromDisk = await startSite(dir, { http: { cache_max_file_bytes: 16, cache_bytes: 1024, compress: false } });
    try {
      for (const extension of KNOWN_EXTENSIONS) {
        const response = await rawGet(fromDisk.port, `/f.${extension}`);
        expect(response.status).toBe(200);
        const disposition = response.headers.get("content-disposition") ?? null;
        expect([extension, disposition]).toEqual([extension, disposition === null ? null : "inline"]);
      }
    } finally {
      await fromDisk.stop();
      removeDir(dir);
    }
  });
});

describe("methods (RFC 9110 §9.1)", () => {
  test("methods Bun passes on that hps does not implement -> 501", async () => {
    for (const name of ["PROPFIND", "MKCOL", "PURGE", "LOCK", "REPORT"]) {
      const response = await rawRequest(
        site.port,
        `${name} /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n`,
      );
      expect([name, response.status]).toEqual([name, 501]);
      expect(text(response.body)).toBe("501 Not Implemented\n");
    }
  });

  test("the methods RFC 9110 defines stay 405 with Allow", async () => {
    const response = await rawRequest(site.port, "DELETE /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  });
});

describe("Vary on every answer about a file that negotiates its encoding", () => {
  test("412 and 416 carry Vary: Accept-Encoding like the 200 and 304", async () => {
    const ok = await rawGet(site.port, "/style.css", "Accept-Encoding: gzip\r\n");
    expect(ok.headers.get("vary")).toBe("Accept-Encoding");
    const notModified = await rawGet(
      site.port,
      "/style.css",
      `If-None-Match: ${ok.headers.get("etag")}\r\nAccept-Encoding: gzip\r\n`,
    );
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("vary")).toBe("Accept-Encoding");
    const failed = await rawGet(site.port, "/style.css", 'If-Match: "other"\r\n');
    expect(failed.status).toBe(412);
    expect(failed.headers.get("vary")).toBe("Accept-Encoding");
    const unsatisfiable = await rawGet(site.port, "/style.css", "Range: bytes=999999-\r\n");
    expect(unsatisfiable.status).toBe(416);
    expect(unsatisfiable.headers.get("vary")).toBe("Accept-Encoding");
  });

  test("a file with one representation does not vary, on any status", async () => {
    expect((await rawGet(site.port, "/image.png", 'If-Match: "other"\r\n')).headers.has("vary")).toBe(false);
    expect((await rawGet(site.port, "/image.png", "Range: bytes=999999-\r\n")).headers.has("vary")).toBe(false);
  });
});

describe("zstd on the fly", () => {
  test("Accept-Encoding: zstd gets zstd that decodes to the file, with its own ETag, cached", async () => {
    const gauges = () => site.context.gauges.get("httpCache")!();
    const first = await rawGet(site.port, "/style.css", "Accept-Encoding: zstd\r\n");
    expect(first.headers.get("content-encoding")).toBe("zstd");
    expect(first.headers.get("vary")).toBe("Accept-Encoding");
    expect(first.headers.get("etag")).toMatch(/-zstd"$/);
    expect(new TextDecoder().decode(Bun.zstdDecompressSync(first.body))).toBe(css);
    expect(first.body.length).toBeLessThan(css.length);
    const bytesCached = gauges().bytes!;
    const again = await rawGet(site.port, "/style.css", "Accept-Encoding: zstd\r\n");
    expect(again.body).toEqual(first.body);
    expect(gauges().bytes!).toBe(bytesCached);
    const revalidated = await rawGet(
      site.port,
      "/style.css",
      `Accept-Encoding: zstd\r\nIf-None-Match: ${first.headers.get("etag")}\r\n`,
    );
    expect(revalidated.status).toBe(304);
  });

  test("q-values choose among br, zstd and gzip (ties: br, then zstd, then gzip)", async () => {
    const chosen = async (accept: string) =>
      (await rawGet(site.port, "/style.css", `Accept-Encoding: ${accept}\r\n`)).headers.get("content-encoding");
    expect(await chosen("zstd;q=1, br;q=0.5, gzip;q=0.9")).toBe("zstd");
    expect(await chosen("gzip, zstd")).toBe("zstd");
    expect(await chosen("gzip, deflate, br, zstd")).toBe("br");
    expect(await chosen("zstd;q=0, gzip")).toBe("gzip");
  });
});
