// http: methods, HEAD lengths, directories, MIME and caching headers, encodings by q-value, the response cache.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, renameSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { Counter } from "../../src/stats/stats.ts";
import { contentTypeFor, KNOWN_EXTENSION_COUNT } from "../../src/http/mime.ts";
import { SiteRequest, StaticFiles } from "../../src/http/static.ts";
import { ResponseSummary } from "../../src/http/status.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { makeTempDir, rawGet, rawRequest, removeDir, startSite, text, type RunningHttp } from "../helpers/http.ts";

let root: string;
let site: RunningHttp;
const css = "body { color: red; }\n".repeat(200);
const js = "export const answer = 42;\n".repeat(100);

beforeAll(async () => {
  root = makeTempDir("hps-static-");
  writeFileSync(join(root, "index.html"), "<h1>home</h1>");
  writeFileSync(join(root, "style.css"), css);
  writeFileSync(join(root, "app.js"), js);
  writeFileSync(join(root, "app.js.br"), "BR-SIDECAR");
  writeFileSync(join(root, "app.js.gz"), "GZ-SIDECAR");
  writeFileSync(join(root, "app.js.zst"), "ZST-SIDECAR");
  writeFileSync(join(root, "lib.js"), js);
  writeFileSync(join(root, "lib.js.gz"), "LIB-GZ-SIDECAR");
  writeFileSync(join(root, "image.png"), new Uint8Array(300).fill(7));
  writeFileSync(join(root, "data.json"), '{"a":1}');
  writeFileSync(join(root, "font.woff2"), new Uint8Array(10));
  writeFileSync(join(root, "pic.svg"), "<svg/>");
  writeFileSync(join(root, "noext"), "x");
  writeFileSync(
    join(root, "big.bin"),
    new Uint8Array(200_000).map((_, i) => i % 256),
  );
  mkdirSync(join(root, "docs"));
  writeFileSync(join(root, "docs", "index.html"), "<p>docs</p>");
  mkdirSync(join(root, "empty"));
  mkdirSync(join(root, "evil.com"));
  mkdirSync(join(root, "assets"));
  writeFileSync(join(root, "assets", "app.123.js"), "x");
  site = await startSite(root, {
    http: { cache_max_file_bytes: 100_000, cache_bytes: 1_000_000, immutable_pattern: "^/assets/" },
  });
});

afterAll(async () => {
  await site.stop();
  removeDir(root);
});

const head = (port: number, target: string, extra = "") =>
  rawRequest(port, `HEAD ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`);
const method = (port: number, name: string, target: string) =>
  rawRequest(port, `${name} ${target} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n`);

describe("methods", () => {
  test("HEAD: same status and headers as GET, correct Content-Length, no body", async () => {
    for (const target of ["/index.html", "/image.png", "/big.bin", "/missing", "/docs/"]) {
      const getResponse = await rawGet(site.port, target);
      const headResponse = await head(site.port, target);
      expect(headResponse.status).toBe(getResponse.status);
      expect(Number(headResponse.headers.get("content-length"))).toBe(getResponse.body.length);
      expect(headResponse.body.length).toBe(0);
      for (const name of ["content-type", "etag", "last-modified", "accept-ranges", "cache-control"]) {
        expect(headResponse.headers.get(name)).toBe(getResponse.headers.get(name));
      }
    }
  });

  test("OPTIONS -> 204 with Allow: GET, HEAD, OPTIONS", async () => {
    const response = await method(site.port, "OPTIONS", "/index.html");
    expect(response.status).toBe(204);
    expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  });

  test("the other methods RFC 9110 defines (and PATCH) -> 405 with the same Allow", async () => {
    for (const name of ["POST", "PUT", "DELETE", "PATCH", "TRACE"]) {
      const response = await method(site.port, name, "/index.html");
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
      expect(text(response.body)).toBe("405 Method Not Allowed\n");
    }
  });
});

describe("directories", () => {
  test("/dir -> 301 to /dir/ (query kept); /dir/ serves the index", async () => {
    const redirect = await rawGet(site.port, "/docs?x=1");
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get("location")).toBe("/docs/?x=1");
    const index = await rawGet(site.port, "/docs/");
    expect(index.status).toBe(200);
    expect(text(index.body)).toBe("<p>docs</p>");
    expect(text((await rawGet(site.port, "/")).body)).toBe("<h1>home</h1>");
  });

  test("the redirect can never point at another host", async () => {
    const response = await rawGet(site.port, "//evil.com");
    expect(response.status).toBe(301);
    expect(response.headers.get("location")).toBe("/evil.com/");
  });

  test("a directory without index and listing off -> 404", async () => {
    expect((await rawGet(site.port, "/empty/")).status).toBe(404);
  });

  test("directory_listing = true: HTML listing with escaped names and links", async () => {
    const listed = makeTempDir("hps-list-");
    writeFileSync(join(listed, `<b>&"x".txt`), "1");
    writeFileSync(join(listed, "plain.txt"), "2");
    writeFileSync(join(listed, ".hidden"), "3");
    mkdirSync(join(listed, "sub dir"));
    const listing = await startSite(listed, { http: { directory_listing: true } });
    try {
      const response = await rawGet(listing.port, "/");
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      const html = text(response.body);
      expect(html).toContain("&#60;b&#62;&#38;&#34;x&#34;.txt");
      expect(html).not.toContain("<b>");
      expect(html).toContain('href="plain.txt"');
      expect(html).toContain('href="sub%20dir/"');
      expect(html).not.toContain(".hidden");
      const sub = await rawGet(listing.port, "/sub%20dir/");
      expect(text(sub.body)).toContain('href="../"');
    } finally {
      await listing.stop();
      removeDir(listed);
    }
  });

  test("fallback: paths with no file get the fallback file; real files, dotfiles and traversal are unaffected", async () => {
    const spa = await startSite(root, { http: { fallback: "index.html" } });
    try {
      for (const target of ["/app/route", "/missing.txt", "/empty/"]) {
        const response = await rawGet(spa.port, target);
        expect(response.status).toBe(200);
        expect(text(response.body)).toBe("<h1>home</h1>");
      }
      expect(text((await rawGet(spa.port, "/docs/")).body)).toBe("<p>docs</p>");
      expect((await rawGet(spa.port, "/.env")).status).toBe(404);
      expect((await rawGet(spa.port, "/..%5cx")).status).toBe(400);
    } finally {
      await spa.stop();
    }
  });
});

describe("content type and caching headers", () => {
  const expected: [string, string][] = [
    ["/index.html", "text/html; charset=utf-8"],
    ["/style.css", "text/css; charset=utf-8"],
    ["/app.js", "application/javascript; charset=utf-8"],
    ["/data.json", "application/json; charset=utf-8"],
    ["/image.png", "image/png"],
    ["/font.woff2", "font/woff2"],
    ["/pic.svg", "image/svg+xml; charset=utf-8"],
    ["/noext", "application/octet-stream"],
  ];
  for (const [target, type] of expected) {
    test(`${target} -> ${type}, nosniff, Cache-Control`, async () => {
      const response = await rawGet(site.port, target);
      expect(response.headers.get("content-type")).toBe(type);
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("cache-control")).toBe("no-cache");
    });
  }

  test("the MIME table covers nginx's mime.types", () => {
    const nginxSample: [string, string][] = [
      ["a.shtml", "text/html"],
      ["a.xml", "text/xml"],
      ["a.gif", "image/gif"],
      ["a.jpeg", "image/jpeg"],
      ["a.atom", "application/atom+xml"],
      ["a.rss", "application/rss+xml"],
      ["a.mml", "text/mathml"],
      ["a.jad", "text/vnd.sun.j2me.app-descriptor"],
      ["a.wml", "text/vnd.wap.wml"],
      ["a.htc", "text/x-component"],
      ["a.avif", "image/avif"],
      ["a.tiff", "image/tiff"],
      ["a.wbmp", "image/vnd.wap.wbmp"],
      ["a.webp", "image/webp"],
      ["a.ico", "image/x-icon"],
      ["a.jng", "image/x-jng"],
      ["a.bmp", "image/x-ms-bmp"],
      ["a.woff", "font/woff"],
      ["a.jar", "application/java-archive"],
      ["a.hqx", "application/mac-binhex40"],
      ["a.doc", "application/msword"],
      ["a.pdf", "application/pdf"],
      ["a.eps", "application/postscript"],
      ["a.rtf", "application/rtf"],
      ["a.m3u8", "application/vnd.apple.mpegurl"],
      ["a.kmz", "application/vnd.google-earth.kmz"],
      ["a.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"],
      ["a.wasm", "application/wasm"],
      ["a.7z", "application/x-7z-compressed"],
      ["a.jnlp", "application/x-java-jnlp-file"],
      ["a.rar", "application/x-rar-compressed"],
      ["a.rpm", "application/x-redhat-package-manager"],
      ["a.swf", "application/x-shockwave-flash"],
      ["a.crt", "application/x-x509-ca-cert"],
      ["a.xspf", "application/xspf+xml"],
      ["a.zip", "application/zip"],
      ["a.deb", "application/octet-stream"],
      ["a.iso", "application/octet-stream"],
      ["a.midi", "audio/midi"],
      ["a.mp3", "audio/mpeg"],
      ["a.ogg", "audio/ogg"],
      ["a.m4a", "audio/x-m4a"],
      ["a.ra", "audio/x-realaudio"],
      ["a.3gp", "video/3gpp"],
      ["a.ts", "video/mp2t"],
      ["a.mp4", "video/mp4"],
      ["a.mpg", "video/mpeg"],
      ["a.mov", "video/quicktime"],
      ["a.webm", "video/webm"],
      ["a.flv", "video/x-flv"],
      ["a.m4v", "video/x-m4v"],
      ["a.mng", "video/x-mng"],
      ["a.asx", "video/x-ms-asf"],
      ["a.wmv", "video/x-ms-wmv"],
      ["a.avi", "video/x-msvideo"],
      ["A.PDF", "application/pdf"],
    ];
    for (const [name, type] of nginxSample) expect(contentTypeFor(name).split(";")[0]).toBe(type);
    expect(KNOWN_EXTENSION_COUNT).toBeGreaterThanOrEqual(140);
  });

  test("immutable_pattern: matching paths get a year-long immutable Cache-Control", async () => {
    const response = await rawGet(site.port, "/assets/app.123.js");
    expect(response.headers.get("cache-control")).toBe("max-age=31536000, immutable");
  });

  test("cache_control = '' sends no Cache-Control", async () => {
    const bare = await startSite(root, { http: { cache_control: "" } });
    try {
      expect((await rawGet(bare.port, "/index.html")).headers.has("cache-control")).toBe(false);
    } finally {
      await bare.stop();
    }
  });
});

describe("encodings", () => {
  const cases: [string | null, string][] = [
    [null, "identity"],
    ["gzip", "gzip"],
    ["br", "br"],
    ["zstd", "zstd"],
    ["gzip, br", "br"],
    ["gzip, deflate, br, zstd", "br"],
    ["gzip;q=1, br;q=0.5", "gzip"],
    ["br;q=0.2, gzip;q=0.8, zstd;q=0.9", "zstd"],
    ["br;q=0, gzip;q=0", "identity"],
    ["identity", "identity"],
    ["*", "br"],
    ["*;q=0.5, gzip", "gzip"],
    ["*;q=0, identity;q=1", "identity"],
    ["x-gzip", "gzip"],
    ["GZIP;Q=0.5, BR;q=0.4", "gzip"],
  ];
  const sidecarBody: Record<string, string> = {
    identity: js,
    gzip: "GZ-SIDECAR",
    br: "BR-SIDECAR",
    zstd: "ZST-SIDECAR",
  };
  for (const [accept, chosen] of cases) {
    test(`precompressed: Accept-Encoding ${JSON.stringify(accept)} -> ${chosen}`, async () => {
      const response = await rawGet(site.port, "/app.js", accept === null ? "" : `Accept-Encoding: ${accept}\r\n`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-encoding") ?? "identity").toBe(chosen);
      expect(text(response.body)).toBe(sidecarBody[chosen]!);
      expect(response.headers.get("vary")).toBe("Accept-Encoding");
      expect(response.headers.get("content-type")).toBe("application/javascript; charset=utf-8");
    });
  }

  test("each encoding has its own ETag, and If-None-Match is checked against the chosen one", async () => {
    const tags = new Set<string>();
    for (const accept of ["identity", "gzip", "br", "zstd"])
      tags.add((await rawGet(site.port, "/app.js", `Accept-Encoding: ${accept}\r\n`)).headers.get("etag")!);
    expect(tags.size).toBe(4);
    const gzipTag = (await rawGet(site.port, "/app.js", "Accept-Encoding: gzip\r\n")).headers.get("etag")!;
    expect((await rawGet(site.port, "/app.js", `Accept-Encoding: gzip\r\nIf-None-Match: ${gzipTag}\r\n`)).status).toBe(
      304,
    );
    expect((await rawGet(site.port, "/app.js", `Accept-Encoding: br\r\nIf-None-Match: ${gzipTag}\r\n`)).status).toBe(
      200,
    );
  });

  test("on the fly: gzip and brotli of a compressible file decode to the original and are cached", async () => {
    const gz = await rawGet(site.port, "/style.css", "Accept-Encoding: gzip\r\n");
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    expect(gz.headers.get("vary")).toBe("Accept-Encoding");
    expect(gz.headers.get("etag")).toMatch(/-gzip"$/);
    expect(gunzipSync(gz.body).toString()).toBe(css);
    expect(gz.body.length).toBeLessThan(css.length);
    const bytesAfterGzip = site.context.gauges.get("httpCache")!().bytes!;
    const br = await rawGet(site.port, "/style.css", "Accept-Encoding: br\r\n");
    expect(br.headers.get("content-encoding")).toBe("br");
    expect(brotliDecompressSync(br.body).toString()).toBe(css);
    expect(site.context.gauges.get("httpCache")!().bytes!).toBe(bytesAfterGzip + br.body.length);
    const again = await rawGet(site.port, "/style.css", "Accept-Encoding: br\r\n");
    expect(again.body).toEqual(br.body);
    expect(site.context.gauges.get("httpCache")!().bytes!).toBe(bytesAfterGzip + br.body.length);
  });

  test("a sidecar serves its own encoding only: the others are still made on the fly", async () => {
    const gzip = await rawGet(site.port, "/lib.js", "Accept-Encoding: gzip\r\n");
    expect(text(gzip.body)).toBe("LIB-GZ-SIDECAR");
    const br = await rawGet(site.port, "/lib.js", "Accept-Encoding: br, gzip;q=0.5\r\n");
    expect(br.headers.get("content-encoding")).toBe("br");
    expect(brotliDecompressSync(br.body).toString()).toBe(js);
    expect(br.headers.get("etag")).toMatch(/-br"$/);
    expect(br.headers.get("etag")).not.toBe(gzip.headers.get("etag"));
  });

  test("binary types are not compressed and do not vary", async () => {
    const response = await rawGet(site.port, "/image.png", "Accept-Encoding: gzip, br\r\n");
    expect(response.headers.has("content-encoding")).toBe(false);
    expect(response.headers.has("vary")).toBe(false);
  });

  test("compress = false: no on-the-fly encoding (sidecars still used)", async () => {
    const plain = await startSite(root, { http: { compress: false } });
    try {
      expect(
        (await rawGet(plain.port, "/style.css", "Accept-Encoding: gzip\r\n")).headers.has("content-encoding"),
      ).toBe(false);
      expect(text((await rawGet(plain.port, "/app.js", "Accept-Encoding: gzip\r\n")).body)).toBe("GZ-SIDECAR");
    } finally {
      await plain.stop();
    }
  });
});

describe("response cache", () => {
  test("small files are cached: hits counted, served identical", async () => {
    const gauges = () => site.context.gauges.get("httpCache")!();
    await rawGet(site.port, "/data.json");
    const before = gauges();
    const response = await rawGet(site.port, "/data.json");
    expect(text(response.body)).toBe('{"a":1}');
    expect(gauges().hits).toBe(before.hits! + 1);
    expect(gauges().entries).toBeGreaterThan(0);
  });

  test("files over cache_max_file_bytes are served from disk and not cached", async () => {
    const before = site.context.gauges.get("httpCache")!();
    const response = await rawGet(site.port, "/big.bin");
    expect(response.body).toEqual(new Uint8Array(200_000).map((_, i) => i % 256));
    const after = site.context.gauges.get("httpCache")!();
    expect(after.entries).toBe(before.entries);
    expect(after.bytes).toBe(before.bytes);
  });

  test("cache off (cache_bytes = 0, cache_max_file_bytes = 0) and sendfile = false still serve every file correctly", async () => {
    for (const overrides of [
      { cache_bytes: 0, cache_max_file_bytes: 0 },
      { sendfile: false, cache_max_file_bytes: 0 },
    ]) {
      const uncached = await startSite(root, { http: overrides });
      try {
        const response = await rawGet(uncached.port, "/style.css");
        expect(text(response.body)).toBe(css);
        expect(
          (await rawGet(uncached.port, "/style.css", `If-None-Match: ${response.headers.get("etag")}\r\n`)).status,
        ).toBe(304);
        expect((await rawGet(uncached.port, "/big.bin", "Range: bytes=5-9\r\n")).body).toEqual(
          Uint8Array.from([5, 6, 7, 8, 9]),
        );
        expect(uncached.context.gauges.get("httpCache")!().entries).toBe(0);
      } finally {
        await uncached.stop();
      }
    }
  });

  test("a changed file is served new within cache_revalidate_ms, with a new ETag", async () => {
    const dir = makeTempDir("hps-change-");
    const path = join(dir, "note.txt");
    writeFileSync(path, "version one");
    const changing = await startSite(dir, { http: { cache_revalidate_ms: 100 } });
    try {
      const first = await rawGet(changing.port, "/note.txt");
      expect(text(first.body)).toBe("version one");
      expect(text((await rawGet(changing.port, "/note.txt")).body)).toBe("version one"); // a hit
      writeFileSync(path, "version two");
      const future = statSync(path).mtimeMs / 1000 + 5; // same size, so make sure the mtime moves too
      utimesSync(path, future, future);
      await waitFor(
        async () => text((await rawGet(changing.port, "/note.txt")).body) === "version two",
        3000,
        "the new content",
      );
      expect((await rawGet(changing.port, "/note.txt")).headers.get("etag")).not.toBe(first.headers.get("etag"));
      unlinkSync(path);
      await waitFor(async () => (await rawGet(changing.port, "/note.txt")).status === 404, 3000, "404 after delete");
    } finally {
      await changing.stop();
      removeDir(dir);
    }
  });

  test("cache_revalidate_ms = 0: every hit is checked, a change is seen at once", async () => {
    const dir = makeTempDir("hps-change0-");
    const path = join(dir, "a.txt");
    writeFileSync(path, "one");
    const strict = await startSite(dir, { http: { cache_revalidate_ms: 0 } });
    try {
      expect(text((await rawGet(strict.port, "/a.txt")).body)).toBe("one");
      writeFileSync(path, "three");
      expect(text((await rawGet(strict.port, "/a.txt")).body)).toBe("three");
    } finally {
      await strict.stop();
      removeDir(dir);
    }
  });

  test("the byte budget holds: entries are evicted past cache_bytes", async () => {
    const dir = makeTempDir("hps-budget-");
    for (let i = 0; i < 10; i++) writeFileSync(join(dir, `f${i}.bin`), new Uint8Array(1000).fill(i));
    const small = await startSite(dir, { http: { cache_bytes: 3000, cache_max_file_bytes: 1000 } });
    try {
      for (let i = 0; i < 10; i++)
        expect((await rawGet(small.port, `/f${i}.bin`)).body).toEqual(new Uint8Array(1000).fill(i));
      const gauges = small.context.gauges.get("httpCache")!();
      expect(gauges.bytes).toBeLessThanOrEqual(3000);
      expect(gauges.entries).toBeLessThanOrEqual(3);
    } finally {
      await small.stop();
      removeDir(dir);
    }
  });
});

describe("response cache accounting", () => {
  test("bytes accounted are the bytes held: an entry evicted by its own insertion, then compressed, adds nothing", () => {
    const dir = makeTempDir("hps-acct-");
    for (const name of ["a", "b", "c"]) writeFileSync(join(dir, `${name}.html`), `<p>${name}</p>`.repeat(375)); // 3000 compressible bytes
    const files = new StaticFiles(
      testConfig({ http: { root: dir, cache_bytes: 8192, cache_max_file_bytes: 8192, compress: true } }).http,
    );
    const summary = new ResponseSummary();
    const query = new SiteRequest();
    const get = (path: string, gzip: boolean) => {
      const headers = new Headers(gzip ? { "accept-encoding": "gzip" } : {});
      query.request = new Request(`http://t${path}`, { headers });
      query.headers = headers;
      query.rawPath = path;
      query.queryStart = -1;
      query.isHead = false;
      query.nowMs = performance.now();
      const response = files.respond(query, summary);
      expect(summary.status).toBe(200);
      return response;
    };
    try {
      for (let round = 0; round < 50; round++) {
        get("/a.html", false);
        get("/a.html", false);
        get("/b.html", false);
        get("/b.html", false); // a and b referenced: c's insertion evicts c itself
        expect(get("/c.html", true).headers.get("content-encoding")).toBe("gzip");
        expect(files.cache.gauges().bytes!).toBeLessThanOrEqual(8192);
      }
      // Dropping every entry must bring the total back to exactly 0.
      for (const key of [...files.cache.keys()]) files.cache.delete(key);
      expect(files.cache.gauges().entries).toBe(0);
      expect(files.cache.gauges().bytes).toBe(0);
    } finally {
      files.clear();
      removeDir(dir);
    }
  });
});

describe("symlinks re-pointed inside the root (atomic deploys)", () => {
  test("a cached file behind a re-pointed directory link is served from the new target within cache_revalidate_ms", async () => {
    const dir = makeTempDir("hps-deploy-");
    for (const version of ["v1", "v2"]) {
      mkdirSync(join(dir, "releases", version), { recursive: true });
      writeFileSync(join(dir, "releases", version, "app.js"), `release ${version}`); // same size
    }
    symlinkSync("releases/v1", join(dir, "current"));
    const deployed = await startSite(dir, { http: { cache_revalidate_ms: 50 } });
    try {
      expect(text((await rawGet(deployed.port, "/current/app.js")).body)).toBe("release v1");
      expect(text((await rawGet(deployed.port, "/current/app.js")).body)).toBe("release v1"); // a cache hit
      symlinkSync("releases/v2", join(dir, "current.next"));
      renameSync(join(dir, "current.next"), join(dir, "current")); // the atomic switch
      await waitFor(
        async () => text((await rawGet(deployed.port, "/current/app.js")).body) === "release v2",
        3000,
        "the new release",
      );
    } finally {
      await deployed.stop();
      removeDir(dir);
    }
  });

  test("a file link re-pointed to another file is noticed too (large, file-backed files as well)", async () => {
    const dir = makeTempDir("hps-deploy2-");
    writeFileSync(join(dir, "one.bin"), new Uint8Array(5000).fill(1));
    writeFileSync(join(dir, "two.bin"), new Uint8Array(5000).fill(2));
    symlinkSync("one.bin", join(dir, "latest.bin"));
    const deployed = await startSite(dir, {
      http: { cache_revalidate_ms: 50, cache_max_file_bytes: 1000, cache_bytes: 1000 },
    });
    try {
      expect((await rawGet(deployed.port, "/latest.bin")).body[0]).toBe(1);
      symlinkSync("two.bin", join(dir, "latest.next"));
      renameSync(join(dir, "latest.next"), join(dir, "latest.bin"));
      await waitFor(async () => (await rawGet(deployed.port, "/latest.bin")).body[0] === 2, 3000, "the new target");
    } finally {
      await deployed.stop();
      removeDir(dir);
    }
  });
});

describe("large files: metadata cached with the same revalidation window", () => {
  test("a file served from disk keeps its resolved path, headers and 304 answer in a bounded metadata cache", async () => {
    const gauges = () => site.context.gauges.get("httpCache")!();
    const first = await rawGet(site.port, "/big.bin");
    expect(gauges().fileBackedEntries).toBeGreaterThanOrEqual(1);
    const again = await rawGet(site.port, "/big.bin");
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("etag")).toBe(first.headers.get("etag"));
    const notModified = await rawGet(site.port, "/big.bin", `If-None-Match: ${first.headers.get("etag")}\r\n`);
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("etag")).toBe(first.headers.get("etag"));
  });

  test("a changed large file is served new (body and ETag) within cache_revalidate_ms; a removed one gets 404", async () => {
    const dir = makeTempDir("hps-bigchange-");
    const path = join(dir, "big.bin");
    writeFileSync(path, new Uint8Array(3000).fill(1));
    for (const sendfile of [true, false]) {
      const changing = await startSite(dir, {
        http: { cache_revalidate_ms: 50, cache_max_file_bytes: 1000, cache_bytes: 1000, sendfile },
      });
      try {
        writeFileSync(path, new Uint8Array(3000).fill(1));
        const first = await rawGet(changing.port, "/big.bin");
        expect(first.body.length).toBe(3000);
        writeFileSync(path, new Uint8Array(4000).fill(2));
        await waitFor(
          async () => (await rawGet(changing.port, "/big.bin")).body.length === 4000,
          3000,
          "the new content",
        );
        const changed = await rawGet(changing.port, "/big.bin");
        expect(changed.body[0]).toBe(2);
        expect(changed.headers.get("etag")).not.toBe(first.headers.get("etag"));
        unlinkSync(path);
        await waitFor(async () => (await rawGet(changing.port, "/big.bin")).status === 404, 3000, "404 after delete");
      } finally {
        await changing.stop();
      }
    }
    removeDir(dir);
  });

  test("sendfile = false: a large file removed within the revalidation window is a 404, never a 500", async () => {
    const dir = makeTempDir("hps-bigrm-");
    const path = join(dir, "big.bin");
    writeFileSync(path, new Uint8Array(3000).fill(1));
    const strict = await startSite(dir, {
      http: { cache_revalidate_ms: 3_600_000, cache_max_file_bytes: 1000, cache_bytes: 1000, sendfile: false },
    });
    try {
      expect((await rawGet(strict.port, "/big.bin")).status).toBe(200);
      unlinkSync(path);
      expect((await rawGet(strict.port, "/big.bin")).status).toBe(404);
    } finally {
      await strict.stop();
      removeDir(dir);
    }
  });
});

describe("stats", () => {
  test("requests, status classes, 304/404 and body bytes are counted", async () => {
    const dir = makeTempDir("hps-stats-");
    writeFileSync(join(dir, "a.txt"), "12345");
    const counted = await startSite(dir);
    try {
      const ok = await rawGet(counted.port, "/a.txt");
      await rawGet(counted.port, "/a.txt", `If-None-Match: ${ok.headers.get("etag")}\r\n`);
      await rawGet(counted.port, "/nope");
      await head(counted.port, "/a.txt");
      const stats = counted.context.stats;
      expect(stats.total(Counter.requests)).toBe(4);
      expect(stats.total(Counter.http2xx)).toBe(2);
      expect(stats.total(Counter.http304)).toBe(1);
      expect(stats.total(Counter.http404)).toBe(1);
      expect(stats.total(Counter.bytesWritten)).toBe(5 + "404 Not Found\n".length);
    } finally {
      await counted.stop();
      removeDir(dir);
    }
  });
});
