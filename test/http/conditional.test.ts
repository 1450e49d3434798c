// http: RFC 9110 preconditions in order, every Range form, multipart/byteranges parsed back, If-Range, 416.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  makeTempDir,
  rawGet,
  rawRequest,
  removeDir,
  startSite,
  type RawResponse,
  type RunningHttp,
} from "../helpers/http.ts";

const SIZE = 1000;
const LARGE_SIZE = 300_000;
const content = Uint8Array.from({ length: SIZE }, (_, i) => (i * 7) % 256);
const large = Uint8Array.from({ length: LARGE_SIZE }, (_, i) => (i * 13) % 251);
let root: string;
let site: RunningHttp;
/** Files over cache_max_file_bytes: served from disk through Bun.file. */
let diskSite: RunningHttp;
let etag: string;
let lastModified: string;
let mtimeSeconds: number;

beforeAll(async () => {
  root = makeTempDir("hps-cond-");
  writeFileSync(join(root, "data.bin"), content);
  writeFileSync(join(root, "large.bin"), large);
  mtimeSeconds = Math.floor(statSync(join(root, "data.bin")).mtimeMs / 1000);
  site = await startSite(root);
  diskSite = await startSite(root, { http: { cache_max_file_bytes: 64 * 1024, cache_bytes: 1024 * 1024 } });
  const first = await rawGet(site.port, "/data.bin");
  etag = first.headers.get("etag")!;
  lastModified = first.headers.get("last-modified")!;
});

afterAll(async () => {
  await site.stop();
  await diskSite.stop();
  removeDir(root);
});

const httpDate = (seconds: number) => new Date(seconds * 1000).toUTCString();
const get = (headers: string, target = "/data.bin") => rawGet(site.port, target, headers);

describe("validators", () => {
  test("every file response has a strong ETag and Last-Modified", async () => {
    expect(etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(Date.parse(lastModified) / 1000).toBe(mtimeSeconds);
  });
});

describe("preconditions (RFC 9110 §13.2.2 order)", () => {
  test("If-Match: matching tag, *, or a list containing it -> 200", async () => {
    for (const value of [etag, "*", `"nope", ${etag}`]) expect((await get(`If-Match: ${value}\r\n`)).status).toBe(200);
  });

  test("If-Match: other tag or a weak form of ours -> 412 with no file body", async () => {
    for (const value of ['"nope"', `W/${etag}`]) {
      const response = await get(`If-Match: ${value}\r\n`);
      expect(response.status).toBe(412);
      expect(response.body.length).toBeLessThan(100);
    }
  });

  test("If-Unmodified-Since: before the mtime -> 412; at or after -> 200; invalid date ignored", async () => {
    expect((await get(`If-Unmodified-Since: ${httpDate(mtimeSeconds - 10)}\r\n`)).status).toBe(412);
    expect((await get(`If-Unmodified-Since: ${httpDate(mtimeSeconds)}\r\n`)).status).toBe(200);
    expect((await get(`If-Unmodified-Since: ${httpDate(mtimeSeconds + 10)}\r\n`)).status).toBe(200);
    expect((await get("If-Unmodified-Since: yesterday\r\n")).status).toBe(200);
  });

  test("If-Match present: If-Unmodified-Since is not evaluated", async () => {
    expect((await get(`If-Match: ${etag}\r\nIf-Unmodified-Since: ${httpDate(mtimeSeconds - 10)}\r\n`)).status).toBe(
      200,
    );
  });

  test("If-None-Match: our tag (strong, weak, in a list, or *) -> 304 with validators and no body", async () => {
    for (const value of [etag, `W/${etag}`, `"a", ${etag}`, "*"]) {
      const response = await get(`If-None-Match: ${value}\r\n`);
      expect(response.status).toBe(304);
      expect(response.body.length).toBe(0);
      expect(response.headers.get("etag")).toBe(etag);
      expect(response.headers.get("last-modified")).toBe(lastModified);
    }
  });

  test("If-None-Match: other tag -> 200", async () => {
    const response = await get('If-None-Match: "other"\r\n');
    expect(response.status).toBe(200);
    expect(response.body).toEqual(content);
  });

  test("If-Modified-Since: at or after the mtime -> 304; before -> 200; invalid -> 200", async () => {
    expect((await get(`If-Modified-Since: ${lastModified}\r\n`)).status).toBe(304);
    expect((await get(`If-Modified-Since: ${httpDate(mtimeSeconds + 60)}\r\n`)).status).toBe(304);
    expect((await get(`If-Modified-Since: ${httpDate(mtimeSeconds - 60)}\r\n`)).status).toBe(200);
    expect((await get("If-Modified-Since: not a date\r\n")).status).toBe(200);
  });

  test("If-None-Match present: If-Modified-Since is not evaluated", async () => {
    expect((await get(`If-None-Match: "other"\r\nIf-Modified-Since: ${httpDate(mtimeSeconds + 60)}\r\n`)).status).toBe(
      200,
    );
  });

  test("If-Match fails before If-None-Match is looked at -> 412", async () => {
    expect((await get(`If-Match: "nope"\r\nIf-None-Match: ${etag}\r\n`)).status).toBe(412);
  });

  test("If-Unmodified-Since fails before If-None-Match -> 412", async () => {
    expect(
      (await get(`If-Unmodified-Since: ${httpDate(mtimeSeconds - 10)}\r\nIf-None-Match: ${etag}\r\n`)).status,
    ).toBe(412);
  });

  test("If-Match passes, If-None-Match matches -> 304", async () => {
    expect((await get(`If-Match: ${etag}\r\nIf-None-Match: ${etag}\r\n`)).status).toBe(304);
  });

  test("a 304 wins over Range", async () => {
    expect((await get(`If-None-Match: ${etag}\r\nRange: bytes=0-9\r\n`)).status).toBe(304);
  });

  test("HEAD with If-None-Match -> 304", async () => {
    const response = await rawRequest(
      site.port,
      `HEAD /data.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: ${etag}\r\n\r\n`,
    );
    expect(response.status).toBe(304);
  });
});

/** Splits a multipart/byteranges body into its parts (headers lower-cased, bytes exact). */
function parseMultipart(response: RawResponse): { contentRange: string; contentType: string; bytes: Uint8Array }[] {
  const type = response.headers.get("content-type")!;
  const boundary = /boundary=([^;]+)/.exec(type)![1]!;
  const body = Buffer.from(response.body);
  const parts: { contentRange: string; contentType: string; bytes: Uint8Array }[] = [];
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const afterDelimiter = at + delimiter.length;
    if (body.subarray(afterDelimiter, afterDelimiter + 2).toString() === "--") break; // closing delimiter
    const headerEnd = body.indexOf("\r\n\r\n", afterDelimiter);
    const headerLines = body
      .subarray(afterDelimiter + 2, headerEnd)
      .toString("latin1")
      .split("\r\n");
    const headers = new Map(
      headerLines.map((line) => [
        line.slice(0, line.indexOf(":")).toLowerCase(),
        line.slice(line.indexOf(":") + 1).trim(),
      ]),
    );
    const next = body.indexOf(delimiter, headerEnd + 4);
    parts.push({
      contentRange: headers.get("content-range")!,
      contentType: headers.get("content-type")!,
      bytes: new Uint8Array(body.subarray(headerEnd + 4, next)),
    });
    at = next;
  }
  return parts;
}

for (const [label, getSite, file, bytes] of [
  ["cached", () => site, "/data.bin", content],
  ["from disk (Bun.file)", () => diskSite, "/large.bin", large],
] as const) {
  describe(`ranges, ${label}`, () => {
    const size = bytes.length;
    const range = (spec: string, extra = "") => rawGet(getSite().port, file, `Range: ${spec}\r\n${extra}`);

    test("Accept-Ranges: bytes on full responses", async () => {
      const response = await rawGet(getSite().port, file);
      expect(response.status).toBe(200);
      expect(response.headers.get("accept-ranges")).toBe("bytes");
      expect(response.body).toEqual(bytes);
    });

    const singles: [string, number, number][] = [
      ["bytes=0-9", 0, 9],
      ["bytes=10-19", 10, 19],
      [`bytes=${size - 10}-`, size - 10, size - 1],
      ["bytes=-10", size - 10, size - 1],
      [`bytes=-${size * 2}`, 0, size - 1],
      [`bytes=500-${size * 5}`, 500, size - 1],
      ["bytes=0-0", 0, 0],
      [" bytes = 3-5 ", 3, 5],
    ];
    for (const [spec, start, end] of singles) {
      test(`single range ${JSON.stringify(spec)} -> 206 ${start}-${end}`, async () => {
        const response = await range(spec);
        expect(response.status).toBe(206);
        expect(response.headers.get("content-range")).toBe(`bytes ${start}-${end}/${size}`);
        expect(Number(response.headers.get("content-length"))).toBe(end - start + 1);
        expect(response.body).toEqual(bytes.slice(start, end + 1));
      });
    }

    test("HEAD with a range: 206 headers with the range's length and no body", async () => {
      const response = await rawRequest(getSite().port, `HEAD ${file} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n`);
      expect(response.status).toBe(206);
      expect(response.headers.get("content-length")).toBe("10");
      expect(response.body.length).toBe(0);
    });

    test("multiple ranges -> multipart/byteranges, parsed back and compared", async () => {
      const specs: [number, number][] = [
        [0, 9],
        [100, 149],
        [size - 5, size - 1],
      ];
      const response = await range(`bytes=${specs.map(([a, b]) => `${a}-${b}`).join(",")}`);
      expect(response.status).toBe(206);
      expect(response.headers.get("content-type")).toMatch(/^multipart\/byteranges; boundary=/);
      // In memory: Content-Length. From disk the parts are streamed, and Bun sends them chunked.
      if (response.headers.has("content-length"))
        expect(Number(response.headers.get("content-length"))).toBe(response.body.length);
      else expect(response.headers.get("transfer-encoding")).toBe("chunked");
      const head = await rawRequest(
        getSite().port,
        `HEAD ${file} HTTP/1.1\r\nHost: t\r\nRange: bytes=${specs.map(([a, b]) => `${a}-${b}`).join(",")}\r\n\r\n`,
      );
      expect(head.status).toBe(206);
      expect(Number(head.headers.get("content-length"))).toBe(response.body.length); // HEAD announces what GET sends
      const parts = parseMultipart(response);
      expect(parts.length).toBe(specs.length);
      parts.forEach((part, i) => {
        const [start, end] = specs[i]!;
        expect(part.contentRange).toBe(`bytes ${start}-${end}/${size}`);
        expect(part.contentType).toBe("application/octet-stream");
        expect(part.bytes).toEqual(bytes.slice(start, end + 1));
      });
    });

    test("a suffix and an open range together -> multipart with both", async () => {
      const parts = parseMultipart(await range("bytes=0-1,-2"));
      expect(parts.map((p) => p.contentRange)).toEqual([`bytes 0-1/${size}`, `bytes ${size - 2}-${size - 1}/${size}`]);
    });

    test("overlapping ranges -> the whole file with 200", async () => {
      const response = await range("bytes=0-10,5-15");
      expect(response.status).toBe(200);
      expect(response.body).toEqual(bytes);
    });

    test("more than http.max_ranges (16) ranges -> 200 whole file", async () => {
      const many = Array.from({ length: 17 }, (_, i) => `${i * 20}-${i * 20 + 5}`).join(",");
      const response = await range(`bytes=${many}`);
      expect(response.status).toBe(200);
      expect(response.body.length).toBe(size);
    });

    test("exactly 16 ranges -> multipart with 16 parts", async () => {
      const sixteen = Array.from({ length: 16 }, (_, i) => `${i * 20}-${i * 20 + 5}`).join(",");
      expect(parseMultipart(await range(`bytes=${sixteen}`)).length).toBe(16);
    });

    test("unsatisfiable -> 416 with Content-Range: bytes */size", async () => {
      for (const spec of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, "bytes=-0"]) {
        const response = await range(spec);
        expect(response.status).toBe(416);
        expect(response.headers.get("content-range")).toBe(`bytes */${size}`);
      }
    });

    test("malformed or other units -> ignored, 200 whole file", async () => {
      for (const spec of ["bytes=abc", "items=0-5", "bytes=5-1", "bytes", "bytes=1-2-3"]) {
        const response = await range(spec);
        expect(response.status).toBe(200);
        expect(response.body.length).toBe(size);
      }
    });

    test("If-Range: current ETag or Last-Modified -> 206; another tag or date -> 200 whole", async () => {
      const full = await rawGet(getSite().port, file);
      const tag = full.headers.get("etag")!;
      const modified = full.headers.get("last-modified")!;
      expect((await range("bytes=0-9", `If-Range: ${tag}\r\n`)).status).toBe(206);
      expect((await range("bytes=0-9", `If-Range: ${modified}\r\n`)).status).toBe(206);
      const stale = await range("bytes=0-9", 'If-Range: "stale"\r\n');
      expect(stale.status).toBe(200);
      expect(stale.body).toEqual(bytes);
      expect((await range("bytes=0-9", `If-Range: ${httpDate(Date.parse(modified) / 1000 - 100)}\r\n`)).status).toBe(
        200,
      );
      expect((await range("bytes=0-9", `If-Range: W/${tag}\r\n`)).status).toBe(200);
    });
  });
}
