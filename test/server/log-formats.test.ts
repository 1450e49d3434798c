// Log formats (text/JSON server log, combined/JSON access log) and logs that never block: a bounded buffer whose
// overflow is dropped and counted when the destination is a pipe nobody reads.
import { afterAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AccessLog, newAccessEntry } from "../../src/http/access-log.ts";
import { Logger } from "../../src/log.ts";
import { renderMetrics } from "../../src/stats/prometheus.ts";
import { snapshot } from "../../src/stats/snapshot.ts";
import { rawExchange, startSite } from "../helpers/http.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-log-formats-"));
const root = join(dir, "site");
mkdirSync(root);
writeFileSync(join(root, "a.txt"), "hello");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("server log", () => {
  test("json: one object per line with time, level and msg; a report keeps its lines in an array", async () => {
    const path = join(dir, "server.json.log");
    const logger = new Logger({ level: "info", file: path, format: "json" });
    logger.info('started "quoted"\nand a second line');
    logger.error("broken");
    logger.block("info", "status", ["a: 1", "b: 2"]);
    await logger.close();
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(3);
    const [first, second, third] = lines.map((line) => JSON.parse(line));
    expect(first).toEqual({ time: expect.any(String), level: "info", msg: 'started "quoted"\nand a second line' });
    expect(new Date(first.time).toISOString()).toBe(first.time);
    expect(second).toMatchObject({ level: "error", msg: "broken" });
    expect(third).toMatchObject({ level: "info", msg: "status", lines: ["a: 1", "b: 2"] });
  });

  test("a line logged after close is appended directly, not lost", async () => {
    const path = join(dir, "late.log");
    const logger = new Logger({ level: "info", file: path });
    logger.info("before close");
    await logger.close();
    logger.warn("after close");
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(2);
    expect(lines[1]).toMatch(/WARN {2}after close$/);
  });

  test("setFormat switches between lines (a reload)", async () => {
    const path = join(dir, "switch.log");
    const logger = new Logger({ level: "info", file: path });
    logger.info("as text");
    logger.setFormat("json");
    logger.info("as json");
    await logger.close();
    const [text, json] = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(text).toMatch(/Z INFO {2}as text$/);
    expect(JSON.parse(json!).msg).toBe("as json");
  });
});

describe("access log", () => {
  test("json: time, client, method, path, protocol, status, bytes, duration_us, referer, user_agent", async () => {
    const logFile = join(dir, "access.json.log");
    const site = await startSite(root, { log: { access_log: true, access_file: logFile, access_format: "json" } });
    await fetch(`${site.base}/a.txt?x=1`, { headers: { Referer: "http://ref.example/", "User-Agent": 'agent "7"' } });
    await fetch(`${site.base}/missing`, { method: "HEAD" });
    await site.stop();
    const [hit, miss] = readFileSync(logFile, "utf8")
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(hit).toEqual({
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      client: "127.0.0.1",
      method: "GET",
      path: "/a.txt?x=1",
      protocol: "HTTP/1.1",
      status: 200,
      bytes: 5,
      duration_us: expect.any(Number),
      referer: "http://ref.example/",
      user_agent: 'agent "7"',
    });
    expect(Number.isInteger(hit.duration_us) && hit.duration_us >= 0).toBe(true);
    expect(Math.abs(Date.parse(hit.time) - Date.now())).toBeLessThan(60_000);
    expect(miss).toMatchObject({ method: "HEAD", path: "/missing", status: 404, bytes: 0, referer: null });
  });

  test("json: a user agent and referer in UTF-8 are logged as their text; bytes that are not UTF-8 as U+FFFD", async () => {
    const logFile = join(dir, "access.utf8.log");
    const site = await startSite(root, { log: { access_log: true, access_file: logFile, access_format: "json" } });
    // Raw bytes on the wire (fetch would refuse them): "café ☕" in UTF-8, then a lone 0xFF and a cut sequence.
    const utf8 = Buffer.from("Mozilla/5.0 (café ☕)", "utf8");
    const request = Buffer.concat([
      Buffer.from("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: "),
      utf8,
      Buffer.from("\r\nReferer: http://x.example/\xff\xe2\x98\r\n\r\n", "latin1"),
    ]);
    await rawExchange(site.port, request, (bytes) => Buffer.from(bytes).includes("hello"));
    await site.stop();
    const line = readFileSync(logFile, "utf8").trimEnd();
    const entry = JSON.parse(line);
    expect(entry.user_agent).toBe("Mozilla/5.0 (café ☕)");
    expect(entry.referer).toBe("http://x.example/\ufffd\ufffd");
  });

  test("a proxied request carries the upstream fields (filled by the proxy), an unknown request nulls", async () => {
    const logFile = join(dir, "access.upstream.log");
    const log = new AccessLog({ file: logFile, format: "json" });
    const entry = newAccessEntry();
    Object.assign(entry, { timeMs: Date.UTC(2026, 10, 26, 1, 2, 3, 456), client: "10.0.0.9", method: "GET" });
    Object.assign(entry, { target: "/api", status: 502, bodyBytes: 11, durationMicros: 1500 });
    Object.assign(entry, { upstream: "10.0.0.5:8080", upstreamStatus: 503, upstreamMicros: 1200 });
    log.write(entry);
    const unknown = newAccessEntry();
    unknown.timeMs = Date.UTC(2026, 10, 26, 1, 2, 4);
    unknown.status = 500;
    log.write(unknown);
    await log.close();
    const [proxied, lost] = readFileSync(logFile, "utf8")
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(proxied).toMatchObject({
      time: "2026-11-26T01:02:03.456Z",
      upstream: "10.0.0.5:8080",
      upstream_status: 503,
      upstream_duration_us: 1200,
    });
    expect(lost).toMatchObject({ client: "-", method: null, path: null, status: 500 });
    expect(lost).not.toHaveProperty("upstream");
  });
});

/** "done" when `promise` settles within `ms`, else "timed out". */
async function within(promise: Promise<unknown>, ms: number): Promise<"done" | "timed out"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timed out">((resolve) => {
    timer = setTimeout(() => resolve("timed out"), ms);
  });
  const result = await Promise.race([promise.then(() => "done" as const), timeout]);
  clearTimeout(timer);
  return result;
}

/** A FIFO with a reader that reads nothing until told to: writes fill the pipe, then block (on the writer thread). */
function stuckPipe(name: string): { path: string; startReading(): void; text(): string; close(): void } {
  const path = join(dir, name);
  expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const buffer = new Uint8Array(65536);
  const decoder = new TextDecoder();
  let received = "";
  let reader: ReturnType<typeof setInterval> | null = null;
  const readAvailable = () => {
    for (;;) {
      let count: number;
      try {
        count = readSync(readFd, buffer);
      } catch {
        return; // EAGAIN: nothing at the moment
      }
      if (count === 0) return;
      received += decoder.decode(buffer.subarray(0, count), { stream: true });
    }
  };
  return {
    path,
    startReading() {
      reader ??= setInterval(readAvailable, 2);
    },
    /** What the writer has written so far (read now, so nothing written before the call is missed). */
    text() {
      readAvailable();
      return received;
    },
    close() {
      if (reader !== null) clearInterval(reader);
      closeSync(readFd);
    },
  };
}

describe("a log destination that does not keep up", () => {
  test("access log to a pipe nobody reads: requests are all answered, the overflow is dropped and counted", async () => {
    const pipe = stuckPipe("access.fifo");
    const site = await startSite(root, {
      log: { access_log: true, access_file: pipe.path, max_buffered_bytes: 64 * 1024 },
    });
    try {
      const longAgent = "x".repeat(1000); // ~1.1 KB per line: the pipe (64 KiB) and the bound (64 KiB) fill fast
      const requests = 600;
      for (let i = 0; i < requests; i += 50) {
        const batch = Array.from({ length: 50 }, () =>
          fetch(`${site.base}/a.txt`, { headers: { "User-Agent": longAgent } }).then((response) => response.text()),
        );
        expect(await Promise.all(batch)).toEqual(Array(50).fill("hello"));
      }
      const counters = snapshot(site.context).counters;
      expect(counters.requests).toBe(requests);
      // 600 lines of ~1.1 KB cannot fit in 64 KiB of pipe plus 64 KiB of buffer: most were dropped, and counted.
      expect(counters.accessLogLinesDropped).toBeGreaterThan(requests / 2);
      expect(counters.accessLogLinesDropped).toBeLessThan(requests);
      expect(renderMetrics(site.context)).toContain(
        `hps_log_lines_dropped_total{log="access"} ${counters.accessLogLinesDropped}`,
      );
      // Still serving while the log is stuck.
      expect(await (await fetch(`${site.base}/a.txt`)).text()).toBe("hello");
      pipe.startReading();
      await site.stop();
      // Every line not dropped arrived, whole and in order.
      const lines = pipe.text().trimEnd().split("\n");
      expect(lines.length).toBe(requests + 1 - counters.accessLogLinesDropped);
      for (const line of lines)
        expect(line).toMatch(/^127\.0\.0\.1 - - \[.*\] "GET \/a\.txt HTTP\/1\.1" 200 5 "-" "(x{1000}|Bun\/[\d.]+)"$/);
    } finally {
      pipe.close();
    }
  }, 30_000);

  test("an access log stuck on a pipe nobody reads does not hold back the server log's file", async () => {
    const pipe = stuckPipe("stuck-access.fifo");
    const serverLogPath = join(dir, "beside-stuck.log");
    const access = new AccessLog({ file: pipe.path, format: "json", maxBufferedBytes: 64 * 1024 });
    const logger = new Logger({ level: "info", file: serverLogPath });
    try {
      const entry = newAccessEntry();
      entry.method = "GET";
      entry.target = `/${"z".repeat(1000)}`;
      // ~50 KB a round until the pipe (64 KiB) is full and the access log's writer waits on it.
      let isStuck = false;
      for (let round = 0; round < 20 && !isStuck; round++) {
        for (let i = 0; i < 50; i++) access.write(entry);
        isStuck = (await within(access.flush(), 200)) === "timed out";
      }
      expect(isStuck).toBe(true);
      logger.error("written while the access log is stuck");
      expect(await within(logger.flush(), 3000)).toBe("done");
      expect(readFileSync(serverLogPath, "utf8")).toContain("ERROR written while the access log is stuck");
    } finally {
      pipe.startReading();
      await Promise.all([access.close(), logger.close()]);
      pipe.close();
    }
  }, 30_000);

  test("a FIFO nobody opened for reading is refused at once, at start and on a reopen, never waited for", async () => {
    // In a child process: on a blocking open the whole process waits for a reader, test runner included.
    const fifo = join(dir, "unread.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const script = `
      import { closeSync, constants, openSync } from "node:fs";
      import { AccessLog } from ${JSON.stringify(join(import.meta.dir, "../../src/http/access-log.ts"))};
      import { Logger } from ${JSON.stringify(join(import.meta.dir, "../../src/log.ts"))};
      const fifo = ${JSON.stringify(fifo)};
      try { new AccessLog({ file: fifo }); console.log("start: opened"); }
      catch (error) { console.log("start: " + error.message); }
      // A reader for a while: the logger opens; then it goes, and SIGHUP's reopen meets a FIFO without a reader.
      const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      const logger = new Logger({ level: "info", file: fifo });
      closeSync(reader);
      await logger.reopen().then(() => console.log("reopen: opened"), (error) => console.log("reopen: " + error.message));
      console.log("event loop free");
      process.exit(0);
    `;
    const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const [code, output] = await Promise.all([child.exited, new Response(child.stdout).text()]);
    clearTimeout(killer);
    expect(output).toContain(`start: ${fifo} is a FIFO that no process has open for reading: start its reader first`);
    expect(output).toContain(`reopen: ${fifo} is a FIFO that no process has open for reading`);
    expect(output).toContain("event loop free");
    expect(code).toBe(0);
  }, 30_000);

  test("server log to a pipe nobody reads: logging returns at once, drops are counted, then reported once it drains", async () => {
    const pipe = stuckPipe("server.fifo");
    const logger = new Logger({ level: "info", file: pipe.path, maxBufferedBytes: 64 * 1024 });
    let dropped = 0;
    logger.countDroppedWith((lines) => {
      dropped += lines;
    });
    const line = "y".repeat(500);
    const startedMs = performance.now();
    for (let i = 0; i < 2000; i++) logger.info(line); // ~1 MB: 16 times the bound
    const loggingMs = performance.now() - startedMs;
    expect(dropped).toBeGreaterThan(1000);
    // Nothing waited for the pipe: the calls cost what formatting costs.
    expect(loggingMs).toBeLessThan(1000);
    try {
      pipe.startReading();
      await logger.flush(); // what was kept reaches the reader
      logger.info("after the pipe drained");
      await logger.close();
      const text = pipe.text();
      expect(text).toContain(`WARN  log: ${dropped} lines were dropped: more than 65536 bytes were waiting`);
      expect(text.trimEnd().split("\n").at(-1)).toMatch(/INFO {2}after the pipe drained$/);
      expect(text.split("\n").filter((entry) => entry.endsWith(line)).length).toBe(2000 - dropped);
    } finally {
      pipe.close();
    }
  }, 30_000);
});
