// http: connection behaviour over raw sockets — pipelining, max keep-alive requests, 413/431, access log, stop, admission.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StaticFiles } from "../../src/http/static.ts";
import { Counter } from "../../src/stats/stats.ts";
import {
  keptConnection,
  makeTempDir,
  parseResponses,
  rawExchange,
  rawGet,
  removeDir,
  startSite,
  text,
  type RunningHttp,
} from "../helpers/http.ts";

let root: string;
let site: RunningHttp;

beforeAll(async () => {
  root = makeTempDir("hps-conn-");
  writeFileSync(join(root, "a.txt"), "alpha");
  writeFileSync(join(root, "b.txt"), "bravo!");
  writeFileSync(
    join(root, "c.bin"),
    new Uint8Array(100).map((_, i) => i),
  );
  site = await startSite(root, { http: { max_keepalive_requests: 3 }, limits: { max_request_bytes: 1024 } });
});

afterAll(async () => {
  await site.stop();
  removeDir(root);
});

const request = (method: string, target: string, extra = "") =>
  `${method} ${target} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`;

describe("pipelining", () => {
  test("requests written in one TCP write are all answered, in order", async () => {
    const unlimited = await startSite(root, { http: { max_keepalive_requests: 0 } });
    try {
      const batch = [
        request("GET", "/a.txt"),
        request("HEAD", "/b.txt"),
        request("GET", "/missing"),
        request("GET", "/c.bin", "Range: bytes=10-19\r\n"),
        request("OPTIONS", "/a.txt"),
        request("GET", "/b.txt"),
      ].join("");
      const noBody = [false, true, false, false, false, false];
      const exchange = await rawExchange(unlimited.port, batch, (bytes) => parseResponses(bytes, noBody).length >= 6);
      const responses = parseResponses(exchange.bytes, noBody);
      expect(responses.map((r) => r.status)).toEqual([200, 200, 404, 206, 204, 200]);
      expect(text(responses[0]!.body)).toBe("alpha");
      expect(responses[1]!.headers.get("content-length")).toBe("6");
      expect(responses[3]!.body).toEqual(new Uint8Array(10).map((_, i) => i + 10));
      expect(text(responses[5]!.body)).toBe("bravo!");
      expect(exchange.closedByServer).toBe(false);
    } finally {
      await unlimited.stop();
    }
  });
});

describe("max_keepalive_requests", () => {
  test("pipelined: the 3rd response carries Connection: close and the connection closes; the 4th is never answered", async () => {
    const batch = [1, 2, 3, 4, 5].map(() => request("GET", "/a.txt")).join("");
    const exchange = await rawExchange(site.port, batch, () => false, 5000);
    expect(exchange.closedByServer).toBe(true);
    const responses = parseResponses(exchange.bytes);
    expect(responses.length).toBe(3);
    expect(responses[0]!.headers.get("connection") ?? "").not.toBe("close");
    expect(responses[1]!.headers.get("connection") ?? "").not.toBe("close");
    expect(responses[2]!.headers.get("connection")).toBe("close");
  });

  test("one request at a time on one socket: closed after the 3rd", async () => {
    const connection = await keptConnection(site.port);
    try {
      const responses = [];
      for (let i = 1; i <= 3; i++) responses.push(await connection.request(request("GET", "/b.txt")));
      expect(responses).toHaveLength(3);
      expect(await connection.closed()).toBe(true);
      expect(responses[2]!.headers.get("connection")).toBe("close");
    } finally {
      connection.end();
    }
  });

  test("separate connections each get their own count", async () => {
    for (let i = 0; i < 4; i++) {
      const response = await rawGet(site.port, "/a.txt");
      expect(response.status).toBe(200);
      expect(response.headers.get("connection") ?? "").not.toBe("close");
    }
  });
});

describe("limits", () => {
  test("a body over limits.max_request_bytes -> 413, counted, connection closed", async () => {
    const before = site.context.stats.total(Counter.requestsTooLarge);
    const body = "x".repeat(2000);
    const exchange = await rawExchange(
      site.port,
      `POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      () => false,
      5000,
    );
    const [response] = parseResponses(exchange.bytes);
    expect(response!.status).toBe(413);
    expect(exchange.closedByServer).toBe(true);
    expect(site.context.stats.total(Counter.requestsTooLarge)).toBe(before + 1);
  });

  test("a huge declared body is refused without waiting for it", async () => {
    const exchange = await rawExchange(
      site.port,
      "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n",
      () => false,
      5000,
    );
    expect(parseResponses(exchange.bytes)[0]!.status).toBe(413);
    expect(exchange.closedByServer).toBe(true);
  });

  test("a body within the limit is accepted (and ignored): GET answers 200, POST 405", async () => {
    const body = "y".repeat(1024);
    const get = await rawExchange(
      site.port,
      `GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      (b) => parseResponses(b).length >= 1,
    );
    expect(parseResponses(get.bytes)[0]!.status).toBe(200);
    const post = await rawExchange(
      site.port,
      `POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      (b) => parseResponses(b).length >= 1,
    );
    expect(parseResponses(post.bytes)[0]!.status).toBe(405);
  });

  test("a chunked body over limits.max_request_bytes -> 413 once the limit is passed (the rest unread), counted, connection closed", async () => {
    const before = site.context.stats.total(Counter.requestsTooLarge);
    const chunk = "a".repeat(600);
    // Two chunks (1200 bytes > 1024) and no terminating chunk: the answer must not wait for the body's end.
    const head = "POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    const exchange = await rawExchange(site.port, `${head}258\r\n${chunk}\r\n258\r\n${chunk}\r\n`, () => false, 5000);
    const [response] = parseResponses(exchange.bytes);
    expect(response!.status).toBe(413);
    expect(response!.headers.get("connection")).toBe("close");
    expect(exchange.closedByServer).toBe(true);
    expect(site.context.stats.total(Counter.requestsTooLarge)).toBe(before + 1);
  });

  test("a chunked body within the limit is read and ignored: GET answers 200, POST 405, the connection stays open", async () => {
    const connection = await keptConnection(site.port);
    try {
      const body = `100\r\n${"b".repeat(256)}\r\n0\r\n\r\n`;
      const got = await connection.request(
        `GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
      );
      expect(got.status).toBe(200);
      expect(text(got.body)).toBe("alpha");
      const posted = await connection.request(
        `POST /b.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
      );
      expect(posted.status).toBe(405);
      expect(text((await connection.request(request("GET", "/b.txt"))).body)).toBe("bravo!");
    } finally {
      connection.end();
    }
  });

  test("oversize request headers -> 431 and the connection is closed (answered by Bun itself)", async () => {
    const exchange = await rawExchange(
      site.port,
      request("GET", "/a.txt", `X-Big: ${"a".repeat(20_000)}\r\n`),
      () => false,
      5000,
    );
    expect(parseResponses(exchange.bytes)[0]!.status).toBe(431);
    expect(exchange.closedByServer).toBe(true);
  });

  test("headers just under Bun's limit are fine", async () => {
    const response = await rawGet(site.port, "/a.txt", `X-Big: ${"a".repeat(8_000)}\r\n`);
    expect(response.status).toBe(200);
  });
});

describe("access log", () => {
  test("Combined Log Format lines, escaped as nginx does, written on stop", async () => {
    const dir = makeTempDir("hps-log-");
    const logFile = join(dir, "access.log");
    const logged = await startSite(root, { log: { access_log: true, access_file: logFile } });
    await rawGet(logged.port, "/a.txt?x=1", 'Referer: http://ref.example/\r\nUser-Agent: test "agent"\r\n');
    await rawExchange(logged.port, request("HEAD", "/b.txt"), (b) => parseResponses(b, [true]).length >= 1);
    await rawGet(logged.port, "/missing");
    await logged.stop();
    const lines = readFileSync(logFile, "utf8").trimEnd().split("\n");
    removeDir(dir);
    expect(lines.length).toBe(3);
    const time = String.raw`\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]`;
    expect(lines[0]).toMatch(
      new RegExp(
        String.raw`^127\.0\.0\.1 - - ${time} "GET /a\.txt\?x=1 HTTP/1\.1" 200 5 "http://ref\.example/" "test \\x22agent\\x22"$`,
      ),
    );
    expect(lines[1]).toMatch(new RegExp(String.raw`^127\.0\.0\.1 - - ${time} "HEAD /b\.txt HTTP/1\.1" 200 0 "-" "-"$`));
    expect(lines[2]).toMatch(
      new RegExp(String.raw`^127\.0\.0\.1 - - ${time} "GET /missing HTTP/1\.1" 404 14 "-" "-"$`),
    );
  });

  test("lines are buffered: many requests, far fewer writes (all lines arrive)", async () => {
    const dir = makeTempDir("hps-log2-");
    const logFile = join(dir, "access.log");
    const logged = await startSite(root, { log: { access_log: true, access_file: logFile } });
    const batch = Array.from({ length: 50 }, () => request("GET", "/a.txt")).join("");
    await rawExchange(logged.port, batch, (b) => parseResponses(b).length >= 50);
    expect(readFileSync(logFile, "utf8")).toBe(""); // nothing written yet: the batch waits for its timer or stop
    await logged.stop();
    expect(readFileSync(logFile, "utf8").trimEnd().split("\n").length).toBe(50);
    removeDir(dir);
  });
});

describe("access log reopening (SIGHUP after logrotate)", () => {
  test("reopenLogs: lines before go to the moved file, lines after to a new file at log.access_file", async () => {
    const dir = makeTempDir("hps-rotate-");
    const logFile = join(dir, "access.log");
    const logged = await startSite(root, { log: { access_log: true, access_file: logFile } });
    try {
      await rawGet(logged.port, "/a.txt?before");
      renameSync(logFile, `${logFile}.1`); // what logrotate does
      await logged.listener.reopenLogs!();
      await rawGet(logged.port, "/b.txt?after");
    } finally {
      await logged.stop();
    }
    const rotated = readFileSync(`${logFile}.1`, "utf8").trimEnd().split("\n");
    const fresh = readFileSync(logFile, "utf8").trimEnd().split("\n");
    removeDir(dir);
    expect(rotated.length).toBe(1);
    expect(rotated[0]).toContain('"GET /a.txt?before HTTP/1.1" 200 5');
    expect(fresh.length).toBe(1);
    expect(fresh[0]).toContain('"GET /b.txt?after HTTP/1.1" 200 6');
  });

  test("reopenLogs appends to an existing file and is harmless when the access log goes to stdout or is off", async () => {
    const dir = makeTempDir("hps-rotate2-");
    const logFile = join(dir, "access.log");
    writeFileSync(logFile, "kept line\n");
    const logged = await startSite(root, { log: { access_log: true, access_file: logFile } });
    const quiet = await startSite(root, { log: { access_log: false } });
    try {
      await logged.listener.reopenLogs!();
      await quiet.listener.reopenLogs!();
      await rawGet(logged.port, "/a.txt");
    } finally {
      await logged.stop();
      await quiet.stop();
    }
    const lines = readFileSync(logFile, "utf8").trimEnd().split("\n");
    removeDir(dir);
    expect(lines[0]).toBe("kept line");
    expect(lines.length).toBe(2);
  });
});

describe("a handler exception (a bug)", () => {
  test("500 with a plain body, counted as a request, a 5xx, its bytes and a system error, and access-logged", async () => {
    const dir = makeTempDir("hps-500-");
    const logFile = join(dir, "access.log");
    const broken = await startSite(root, { log: { access_log: true, access_file: logFile } });
    const original = StaticFiles.prototype.respond;
    StaticFiles.prototype.respond = function (
      this: StaticFiles,
      ...args: Parameters<StaticFiles["respond"]>
    ): Response {
      if (args[0].rawPath === "/explode") throw new Error("injected bug");
      return original.apply(this, args);
    };
    try {
      const response = await rawGet(broken.port, "/explode?x=1");
      expect(response.status).toBe(500);
      expect(text(response.body)).toBe("500 Internal Server Error\n");
      expect((await rawGet(broken.port, "/a.txt")).status).toBe(200); // the server goes on
    } finally {
      StaticFiles.prototype.respond = original;
      await broken.stop();
    }
    const stats = broken.context.stats;
    expect(stats.total(Counter.requests)).toBe(2);
    expect(stats.total(Counter.http5xx)).toBe(1);
    expect(stats.total(Counter.errorsSystem)).toBe(1);
    expect(stats.total(Counter.bytesWritten)).toBe("500 Internal Server Error\n".length + 5);
    const lines = readFileSync(logFile, "utf8").trimEnd().split("\n");
    removeDir(dir);
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/explode\?x=1 HTTP\/1\.1" 500 26 "-" "-"$/);
  });
});

describe("lifecycle and admission", () => {
  test("graceful stop: in-flight reaches 0, the port stops accepting, the cache gauge is unregistered", async () => {
    const running = await startSite(root);
    expect((await rawGet(running.port, "/a.txt")).status).toBe(200);
    expect(running.listener.inFlight()).toBe(0);
    expect(running.context.gauges.has("httpCache")).toBe(true);
    await running.listener.stop({ graceful: true, timeoutMs: 1000 });
    expect(running.context.gauges.has("httpCache")).toBe(false);
    await expect(fetch(`${running.base}/a.txt`)).rejects.toThrow();
  });

  test("rate limit: 429 with Retry-After and RateLimit-* headers once the burst is spent", async () => {
    const limited = await startSite(root, {
      rate_limit: { enabled: true, requests: 2, window_s: 60, burst: 2, headers: true },
    });
    try {
      const statuses: number[] = [];
      let last = await rawGet(limited.port, "/a.txt");
      statuses.push(last.status);
      expect(last.headers.get("ratelimit-limit")).toBe("2");
      for (let i = 0; i < 3; i++) {
        last = await rawGet(limited.port, "/a.txt");
        statuses.push(last.status);
      }
      expect(statuses).toEqual([200, 200, 429, 429]);
      expect(text(last.body)).toBe("429 Too Many Requests\n");
      expect(Number(last.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(last.headers.get("ratelimit-remaining")).toBe("0");
      expect(limited.context.stats.total(Counter.rateLimited)).toBe(2);
    } finally {
      await limited.stop();
    }
  });

  test("denied addresses get 403", async () => {
    const denied = await startSite(root, { net: { deny: ["127.0.0.0/8"] } });
    try {
      expect((await rawGet(denied.port, "/a.txt")).status).toBe(403);
    } finally {
      await denied.stop();
    }
  });
});
