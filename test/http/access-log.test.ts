// http: the access log names the client of every request it answered, even when the client has already gone.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { Counter } from "../../src/stats/stats.ts";
import { waitFor } from "../helpers/common.ts";
import { makeTempDir, rawGet, rawRequest, removeDir, startSite } from "../helpers/http.ts";

/** Connections that send a pipeline of requests and reset at once, as a load tester does when its run ends. */
const RESETTING_CONNECTIONS = 30;
const PIPELINED_REQUESTS = 200;

test("requests of a connection reset before they were handled are logged as 499, never as answered to '-'", async () => {
  const dir = makeTempDir("hps-access-reset-");
  writeFileSync(join(dir, "a.txt"), "x".repeat(100));
  const logFile = join(dir, "access.log");
  const site = await startSite(dir, { log: { access_log: true, access_file: logFile } });
  try {
    for (let i = 0; i < RESETTING_CONNECTIONS; i++) {
      const socket = net.connect(site.port, "127.0.0.1");
      await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      socket.on("error", () => {});
      socket.write("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".repeat(PIPELINED_REQUESTS));
      socket.resetAndDestroy(); // RST: the server may read the requests after the connection is gone
    }
    expect((await rawGet(site.port, "/a.txt")).status).toBe(200); // a live client, after them
    const stats = site.context.stats;
    await waitFor(
      () => {
        const text = readFileSync(logFile, { encoding: "utf8", flag: "a+" });
        return text.trimEnd().split("\n").length === stats.total(Counter.requests);
      },
      5000,
      "one access log line per request counted",
    );
  } finally {
    await site.stop();
  }
  const lines = readFileSync(logFile, "utf8").trimEnd().split("\n");
  removeDir(dir);
  const statusOf = (line: string) => Number(/" (\d{3}) /.exec(line)![1]);
  const unknownClient = lines.filter((line) => line.startsWith("- "));
  // An answered request always names its client; only one whose connection was already gone has none.
  expect(unknownClient.filter((line) => statusOf(line) !== 499)).toEqual([]);
  expect(lines.filter((line) => statusOf(line) === 499).every((line) => line.startsWith("- "))).toBe(true);
  expect(lines.at(-1)).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/a\.txt HTTP\/1\.1" 200 100 /);
});

test("the logged target is the one requested, whatever the Host (empty, absent) and whether Bun routed it", async () => {
  const dir = makeTempDir("hps-access-target-");
  writeFileSync(join(dir, "routed.txt"), "r");
  writeFileSync(join(dir, "other.txt"), "o");
  const logFile = join(dir, "access.log");
  const site = await startSite(dir, { log: { access_log: true, access_file: logFile } });
  const requests = [
    "GET /routed.txt?a=1 HTTP/1.1\r\nHost: \r\n\r\n",
    "GET /routed.txt?b=2 HTTP/1.0\r\n\r\n",
    "GET /other.txt?c=3 HTTP/1.0\r\n\r\n",
    "GET /routed.txt?d=4 HTTP/1.1\r\nHost: t\r\n\r\n",
  ];
  try {
    expect((await rawGet(site.port, "/routed.txt")).status).toBe(200);
    await waitFor(() => site.context.gauges.get("httpCache")!().routes! > 0, 5000, "the cached path's route");
    for (const request of requests) expect((await rawRequest(site.port, request)).status).toBe(200);
    await waitFor(
      () => readFileSync(logFile, { encoding: "utf8", flag: "a+" }).trimEnd().split("\n").length === 5,
      5000,
      "five access log lines",
    );
  } finally {
    await site.stop();
  }
  const logged = readFileSync(logFile, "utf8")
    .trimEnd()
    .split("\n")
    .map((line) => /"GET (\S+) HTTP\/1\.1"/.exec(line)?.[1]);
  removeDir(dir);
  expect(logged).toEqual(["/routed.txt", "/routed.txt?a=1", "/routed.txt?b=2", "/other.txt?c=3", "/routed.txt?d=4"]);
});
