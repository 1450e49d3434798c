// http: path safety — traversal corpus over raw sockets, dotfiles, symlink escapes, decodeRequestPath rules.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync } from "node:zlib";
import { decodeRequestPath } from "../../src/http/path.ts";
import { makeTempDir, rawGet, removeDir, startSite, text, type RunningHttp } from "../helpers/http.ts";

const SECRET = "TOP-SECRET-OUTSIDE-ROOT";
let outside: string;
let root: string;
let site: RunningHttp;
let dotSite: RunningHttp;

beforeAll(async () => {
  outside = makeTempDir("hps-outside-");
  writeFileSync(join(outside, "secret.txt"), SECRET);
  mkdirSync(join(outside, "dir"));
  writeFileSync(join(outside, "dir", "inner.txt"), SECRET);
  root = join(outside, "www"); // the root sits inside the directory that holds the secret: "../secret.txt" would reach it
  mkdirSync(root);
  writeFileSync(join(root, "index.html"), "<h1>home</h1>");
  writeFileSync(join(root, "hello.txt"), "hello");
  writeFileSync(join(root, "100% real.txt"), "percent");
  writeFileSync(join(root, "hash#name.txt"), "hash");
  mkdirSync(join(root, "sub"));
  writeFileSync(join(root, "sub", "file.txt"), "sub file");
  writeFileSync(join(root, ".env"), "SECRET_ENV=1");
  mkdirSync(join(root, ".git"));
  writeFileSync(join(root, ".git", "config"), "[core]");
  mkdirSync(join(root, ".well-known"));
  writeFileSync(join(root, ".well-known", "security.txt"), "Contact: x");
  symlinkSync(join(outside, "secret.txt"), join(root, "escape.txt"));
  symlinkSync(join(outside, "dir"), join(root, "escape-dir"));
  symlinkSync(join(root, "hello.txt"), join(root, "inside-link.txt"));
  writeFileSync(join(root, "page.css"), "body{}".repeat(50));
  symlinkSync(join(outside, "secret.txt"), join(root, "page.css.br")); // a sidecar that escapes must never be used
  site = await startSite(root);
  dotSite = await startSite(root, { http: { dotfiles: "allow" } });
});

afterAll(async () => {
  await site.stop();
  await dotSite.stop();
  removeDir(outside);
});

/** At least 30 ways to spell a path that leaves the root (or hides a dangerous byte). */
const TRAVERSAL_CORPUS = [
  "/../secret.txt",
  "/../../secret.txt",
  "/sub/../../secret.txt",
  "/%2e%2e/secret.txt",
  "/%2E%2E/secret.txt",
  "/.%2e/secret.txt",
  "/%2e./secret.txt",
  "/%2e%2e%2fsecret.txt",
  "/%2e%2e%2Fsecret.txt",
  "/..%2fsecret.txt",
  "/..%2Fsecret.txt",
  "/sub%2f..%2f..%2fsecret.txt",
  "/%252e%252e/secret.txt",
  "/%252e%252e%252fsecret.txt",
  "/..%252fsecret.txt",
  "/%25%32%65%25%32%65/secret.txt",
  "/..\\secret.txt",
  "/..%5csecret.txt",
  "/..%5Csecret.txt",
  "/%5c..%5csecret.txt",
  "/sub\\..\\..\\secret.txt",
  "/%c0%ae%c0%ae/secret.txt",
  "/%c0%af../secret.txt",
  "/%e0%80%ae%e0%80%ae/secret.txt",
  "/..%c0%afsecret.txt",
  "/%uff0e%uff0e/secret.txt",
  "/hello.txt%00.html",
  "/hello.txt%00",
  "/%00/../secret.txt",
  "/sub/%2e%2e/%2e%2e/secret.txt",
  "/./../secret.txt",
  "/sub/./../../secret.txt",
  "/%2e/%2e%2e/secret.txt",
  "/%0d%0aSet-Cookie:x/../secret.txt",
  "//../secret.txt",
  "/escape.txt",
  "/escape-dir/inner.txt",
  "/escape-dir/",
  "/%65scape.txt",
  "/escape-dir%2finner.txt",
];

describe("traversal corpus", () => {
  test("the corpus has at least 30 entries", () => {
    expect(TRAVERSAL_CORPUS.length).toBeGreaterThanOrEqual(30);
  });

  for (const target of TRAVERSAL_CORPUS) {
    test(`refuses ${target}`, async () => {
      const response = await rawGet(site.port, target);
      expect([400, 404]).toContain(response.status);
      expect(text(response.body)).not.toContain(SECRET);
    });
  }

  test("allows what is inside: encoded names, symlinks inside the root, collapsed slashes", async () => {
    expect(text((await rawGet(site.port, "/100%25%20real.txt")).body)).toBe("percent");
    expect(text((await rawGet(site.port, "/inside-link.txt")).body)).toBe("hello");
    expect(text((await rawGet(site.port, "//sub//file.txt")).body)).toBe("sub file");
    expect(text((await rawGet(site.port, "/%73ub/file.txt")).body)).toBe("sub file");
  });

  test("a sidecar symlinked outside the root is never served", async () => {
    const response = await rawGet(site.port, "/page.css", "Accept-Encoding: br\r\n");
    expect(response.status).toBe(200);
    // Whatever encoding was chosen (br is built on the fly from page.css), the bytes are page.css, never the secret.
    const body =
      response.headers.get("content-encoding") === "br" ? brotliDecompressSync(response.body) : response.body;
    expect(text(body)).toBe("body{}".repeat(50));
    const plain = await startSite(root, { http: { compress: false } });
    try {
      const noCompression = await rawGet(plain.port, "/page.css", "Accept-Encoding: br\r\n");
      expect(noCompression.headers.has("content-encoding")).toBe(false); // the escaping .br sidecar was ignored
      expect(text(noCompression.body)).toBe("body{}".repeat(50));
    } finally {
      await plain.stop();
    }
  });
});

describe("encoded slashes", () => {
  test("%2F (any case) is refused with 400, even where the decoded path names a file", async () => {
    expect((await rawGet(site.port, "/sub/file.txt")).status).toBe(200);
    for (const target of ["/sub%2ffile.txt", "/sub%2Ffile.txt", "/%2fsub/file.txt", "/sub%2f"]) {
      const response = await rawGet(site.port, target);
      expect([target, response.status]).toEqual([target, 400]);
    }
  });

  test("a double-encoded slash is a literal name (decoded once): 404, not the file", async () => {
    expect((await rawGet(site.port, "/sub%252ffile.txt")).status).toBe(404);
  });
});

describe("fragments", () => {
  test("a raw '#' (a fragment: no part of a request target) gets 400, even where the path before it is a file", async () => {
    expect((await rawGet(site.port, "/hello.txt")).status).toBe(200);
    for (const target of ["/hello.txt#x", "/hash#name.txt", "/sub#/file.txt"]) {
      const response = await rawGet(site.port, target);
      expect([target, response.status]).toEqual([target, 400]);
    }
  });

  test("an encoded '#' (%23) names the file, and a '#' after '?' is part of the query", async () => {
    expect(text((await rawGet(site.port, "/hash%23name.txt")).body)).toBe("hash");
    expect(text((await rawGet(site.port, "/hello.txt?a#b")).body)).toBe("hello");
  });
});

describe("dotfiles", () => {
  test("deny (default): any segment starting with '.' is 404", async () => {
    for (const target of ["/.env", "/.git/config", "/.git/", "/sub/.hidden", "/%2eenv"]) {
      const response = await rawGet(site.port, target);
      expect(response.status).toBe(404);
      expect(text(response.body)).not.toContain("SECRET_ENV");
    }
  });

  test(".well-known is served even when dotfiles are denied", async () => {
    const response = await rawGet(site.port, "/.well-known/security.txt");
    expect(response.status).toBe(200);
    expect(text(response.body)).toBe("Contact: x");
  });

  test("allow: dotfiles are served", async () => {
    const response = await rawGet(dotSite.port, "/.env");
    expect(response.status).toBe(200);
    expect(text(response.body)).toBe("SECRET_ENV=1");
  });

  test("allow still refuses traversal and symlink escapes", async () => {
    for (const target of ["/../secret.txt", "/%2e%2e/secret.txt", "/escape.txt"]) {
      const response = await rawGet(dotSite.port, target);
      expect([400, 404]).toContain(response.status);
      expect(text(response.body)).not.toContain(SECRET);
    }
  });
});

describe("decodeRequestPath", () => {
  test("decodes once and keeps a trailing slash", () => {
    expect(decodeRequestPath("/a%20b/c.txt", false)).toBe("/a b/c.txt");
    expect(decodeRequestPath("/dir/", false)).toBe("/dir/");
    expect(decodeRequestPath("/", false)).toBe("/");
    expect(decodeRequestPath("//a///b", false)).toBe("/a/b");
    expect(decodeRequestPath("/%252e%252e/x", false)).toBe("/%2e%2e/x"); // decoded once: a literal name, not ".."
  });

  test("refuses invalid encodings, control bytes, backslashes, dot segments, double encoding", () => {
    for (const raw of [
      "/%",
      "/%zz",
      "/%c0",
      "/a%00b",
      "/a\\b",
      "/a/../b",
      "/./a",
      "/%2e%2e/x",
      "relative",
      "/a%0ab",
      "/a%7fb",
      "/a%2fb",
      "/a%2Fb",
      "/a%5cb",
      "/a#b",
    ]) {
      expect(decodeRequestPath(raw, true)).toBe(400);
    }
  });

  test("dotfiles: 404 when denied, allowed otherwise, .well-known always", () => {
    expect(decodeRequestPath("/.env", false)).toBe(404);
    expect(decodeRequestPath("/a/.b/c", false)).toBe(404);
    expect(decodeRequestPath("/.env", true)).toBe("/.env");
    expect(decodeRequestPath("/.well-known/x", false)).toBe("/.well-known/x");
  });
});
