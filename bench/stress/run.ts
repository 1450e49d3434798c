// `bun run stress` (via bench/stress.sh): bounded, loopback-only, self-checking stress of hps; prints what held, exits 1 if anything did not.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect, type Socket as NetSocket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HpsClient } from "../../src/client/hps-client.ts";
import { parseLoadArgs } from "../../src/client/options.ts";
import { runLoad, type LoadReport } from "../../src/client/run.ts";
import { encodeFrame } from "../../src/tcp/frame.ts";
import { freePorts, startChild, stopAll, stopChildrenOnSignals, within, type Child } from "../e2e/process.ts";
import { churn } from "./churn.ts";
import {
  adminStats,
  Download,
  exchange,
  HeldConnections,
  HeldRawConnections,
  httpGet,
  parseResponse,
  waitUntil,
  type AdminSnapshot,
} from "./clients.ts";
import { parseToolArgs } from "../cli.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const HANDLERS = new URL("./handlers.ts", import.meta.url).pathname;
const OP_EXIT = 0x80;
const OP_DELAY = 0x81;
const OP_PING = 0x00;
const STATUS_OK = 0;
const STATUS_INTERNAL = 6;
const SMALL_BYTES = 1024;
const BIG_BYTES = 64 * 1024 * 1024;
/** The rate-limited server allows RATE_BURST requests at once, then RATE_BURST per RATE_WINDOW_S (10/s). */
const RATE_BURST = 100;
const RATE_WINDOW_S = 10;
const POOL_THREADS = 2;

const USAGE = `Usage: bench/stress.sh [options]   (or: bun run stress [options])

Starts hps (http, echo, custom, and http with a rate limit) on loopback and checks, in about --seconds:
  10,000 concurrent connections held while normal requests succeed; connection churn with no fd growth;
  slow readers and slowloris; a burst above the rate limit; malformed requests and frames; a pool worker
  killed mid-load; SIGTERM under load with every in-flight request completed and exit 0.
Prints a table of what held; exits 1 if anything did not.

Options:
  --seconds S       time budget for the whole run (default 60); churn gets what the other checks leave
  --connections N   connections to hold at once (default 10000; limited by ulimit -n)
  --churn N         short connections for the churn check, echo and HTTP together (default 100000)
  -h, --help        this text
`;

interface CheckResult {
  name: string;
  held: boolean;
  detail: string;
}

interface Running {
  child: Child;
  port: number;
  adminPort: number;
}

class Failure extends Error {}

async function stats(server: Running): Promise<AdminSnapshot> {
  const snapshot = await adminStats(server.adminPort);
  if (snapshot === null)
    throw new Failure(
      `${server.child.name}: /stats did not answer (process ${server.child.isRunning ? "running" : "gone"})`,
    );
  return snapshot;
}

function load(argv: string[]): Promise<LoadReport> {
  const options = parseLoadArgs(argv);
  if (options === null) throw new Error("load: help requested");
  return runLoad(options);
}

function loadErrors(report: LoadReport): string {
  const e = report.errors;
  return `${report.requests.ok} ok, errors: connect ${e.connect}, read ${e.read}, timeout ${e.timeout}, non-OK ${e.nonOk}, mismatch ${e.mismatch}`;
}

function softFdLimit(): number {
  const match = /Max open files\s+(\d+|unlimited)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return match === null || match[1] === "unlimited" ? 1_048_576 : Number(match[1]);
}

// ---------------------------------------------------------------- checks

async function checkHeldConnections(http: Running, target: number, deadlineMs: number): Promise<CheckResult> {
  const name = `${target.toLocaleString("en-US")} concurrent HTTP connections held`;
  const held = new HeldConnections(http.port);
  try {
    const opened = await held.open(target, 200, "/small.txt", deadlineMs);
    const snapshot = await stats(http);
    const report = await load([`http://127.0.0.1:${http.port}/small.txt`, "-c", "16", "-d", "2s", "--timeout", "3s"]);
    const answeredAgain = await held.askAll("/small.txt", Math.max(2000, deadlineMs - Date.now()));
    const stillOpen = held.stillOpen();
    const held_ =
      opened.opened === target &&
      opened.ok === target &&
      snapshot.process.fileDescriptorsUsed >= target &&
      report.errors.total === 0 &&
      report.requests.ok > 0 &&
      answeredAgain === target;
    return {
      name,
      held: held_,
      detail:
        `opened ${opened.opened}/${target} (connect failures ${held.connectFailures}), first GET 200 on ${opened.ok}; server fds ${snapshot.process.fileDescriptorsUsed}; ` +
        `meanwhile 16-conn load: ${Math.round(report.requests.perSecond.mean)} req/s, ${loadErrors(report)}, p99 ${(report.latency.p99Micros / 1000).toFixed(1)} ms; ` +
        `second GET 200 on ${answeredAgain}, still open ${stillOpen}`,
    };
  } finally {
    held.closeAll();
  }
}

async function checkHeldFrames(custom: Running, target: number, deadlineMs: number): Promise<CheckResult> {
  const name = `${target.toLocaleString("en-US")} concurrent HPS/1 connections held`;
  // A PING response is 12 bytes; the request id does not matter to a held connection.
  const held = new HeldRawConnections(custom.port, encodeFrame(OP_PING, 0, 1), 12);
  try {
    const ok = await held.open(target, 200, deadlineMs);
    const during = await stats(custom);
    const report = await load([
      `hps://127.0.0.1:${custom.port}`,
      "--opcode",
      "hash",
      "-s",
      "64",
      "-c",
      "16",
      "-d",
      "1.5s",
      "--timeout",
      "3s",
    ]);
    const again = await held.exchangeAll(Math.max(2000, deadlineMs - Date.now()));
    const openGauge = during.gauges.tcp?.openConnections ?? -1;
    held.closeAll();
    const released = await waitUntil(async () => (await stats(custom)).gauges.tcp?.openConnections === 0, 5000);
    return {
      name,
      held:
        held.opened === target &&
        ok === target &&
        openGauge >= target &&
        report.errors.total === 0 &&
        report.requests.ok > 0 &&
        again === target &&
        released,
      detail:
        `opened ${held.opened}/${target} (connect failures ${held.connectFailures}), PING answered on ${ok}; server open connections ${openGauge}, fds ${during.process.fileDescriptorsUsed}; ` +
        `meanwhile 16-conn HASH load: ${Math.round(report.requests.perSecond.mean)}/s, ${loadErrors(report)}; second PING answered on ${again}; all released after close: ${released}`,
    };
  } finally {
    held.closeAll();
  }
}

async function checkChurn(
  kind: "echo" | "http",
  server: Running,
  total: number,
  deadlineMs: number,
): Promise<CheckResult> {
  const name = `connection churn (${kind}), no fd growth`;
  // Let connections from earlier checks finish closing, so the baseline is the server at rest.
  await waitUntil(async () => (await stats(server)).counters.activeConnections === 0 || kind === "http", 3000);
  const before = await stats(server);
  const result = await churn(kind, server.port, total, 64, deadlineMs);
  let after = await stats(server);
  const settled = await waitUntil(async () => {
    after = await stats(server);
    return (
      after.process.fileDescriptorsUsed <= before.process.fileDescriptorsUsed + 2 &&
      (kind === "http" || after.counters.activeConnections === 0)
    );
  }, 5000);
  const accepted = after.counters.connectionsAccepted - before.counters.connectionsAccepted;
  const counted = kind === "http" || accepted === result.ok + result.badExchanges;
  return {
    name,
    held: result.ok > 0 && result.badExchanges === 0 && result.connectFailures === 0 && settled && counted,
    detail:
      `${result.ok.toLocaleString("en-US")} short connections in ${result.seconds.toFixed(1)} s (${Math.round(result.ok / result.seconds)}/s; asked for ${total.toLocaleString("en-US")}), ` +
      `bad ${result.badExchanges}, connect failures ${result.connectFailures}; server fds ${before.process.fileDescriptorsUsed} before, ${after.process.fileDescriptorsUsed} after` +
      (kind === "echo" ? `; accepted ${accepted}, open now ${after.counters.activeConnections}` : ""),
  };
}

async function checkSlowReadersHttp(http: Running): Promise<CheckResult> {
  const name = "slow readers (HTTP 64 MiB downloads not read)";
  const before = await stats(http);
  const downloads = Array.from({ length: 20 }, () => new Download(http.port, "/big.bin"));
  try {
    // Every response is under way, and the server is blocked on their full sockets.
    const started = await within(Promise.all(downloads.map((d) => d.headArrived)), 5000);
    if (started === null) throw new Failure("not every 64 MiB download got its response head within 5 s");
    const report = await load([`http://127.0.0.1:${http.port}/small.txt`, "-c", "8", "-d", "1.5s", "--timeout", "3s"]);
    const during = await stats(http);
    const rssGrowthMiB = (during.process.rssBytes - before.process.rssBytes) / 2 ** 20;
    // Four of them start reading: they must get every byte.
    const resumed = downloads.slice(0, 4);
    for (const download of resumed) download.resume();
    const finished = await within(Promise.all(resumed.map((d) => d.done)), 8000);
    const complete = finished?.filter((r) => r.status === 200 && r.bodyBytes === BIG_BYTES).length ?? 0;
    return {
      name,
      held: report.errors.total === 0 && report.requests.ok > 0 && rssGrowthMiB < 256 && complete === resumed.length,
      detail:
        `20 stalled downloads; meanwhile ${loadErrors(report)}, p99 ${(report.latency.p99Micros / 1000).toFixed(1)} ms; server RSS +${rssGrowthMiB.toFixed(0)} MiB; ` +
        `${complete}/${resumed.length} resumed downloads got all ${BIG_BYTES} bytes`,
    };
  } finally {
    for (const download of downloads) download.destroy();
  }
}

/** tcp.send_timeout_s of the stress run's echo server. */
const ECHO_SEND_TIMEOUT_S = 2;

async function checkSlowReaderEcho(echo: Running): Promise<CheckResult> {
  const name = "slow reader (echo client that never reads: its sends block, cut after tcp.send_timeout_s)";
  const before = await stats(echo);
  const socket = netConnect({ host: "127.0.0.1", port: echo.port });
  socket.pause();
  let closed = false;
  let writtenBytes = 0;
  socket.on("error", () => {});
  socket.on("close", () => {
    closed = true;
  });
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const pump = () => {
    while (!closed && writtenBytes < 256 * 2 ** 20) {
      writtenBytes += chunk.length;
      if (!socket.write(chunk)) return;
    }
  };
  socket.on("connect", pump);
  socket.on("drain", pump);
  try {
    const cut = await waitUntil(
      async () =>
        closed && (await stats(echo)).counters.disconnectedSlowReader > before.counters.disconnectedSlowReader,
      8000,
    );
    const other = await exchange(echo.port, Buffer.from("still-here"), 2000, (received) => received.length >= 10);
    const after = await stats(echo);
    // Flow control: the server stopped reading, so the client's sends blocked long before the 256 MiB it offered.
    const blocked = writtenBytes < 64 * 2 ** 20;
    return {
      name,
      held: cut && blocked && other.received.toString() === "still-here",
      detail:
        `client wrote ${(writtenBytes / 2 ** 20).toFixed(0)} MiB without reading (${blocked ? "then its sends blocked" : "its sends NEVER blocked"}); ${closed ? "disconnected" : "NOT disconnected"}, ` +
        `disconnectedSlowReader ${before.counters.disconnectedSlowReader} → ${after.counters.disconnectedSlowReader}; another client echoed ${JSON.stringify(other.received.toString())}`,
    };
  } finally {
    socket.destroy();
  }
}

async function checkSlowloris(http: Running, custom: Running): Promise<CheckResult> {
  const name = "slowloris (HTTP headers and HPS/1 frames dribbled)";
  const sockets: NetSocket[] = [];
  let cutByServer = 0;
  const open = (port: number, first: Uint8Array) => {
    const socket = netConnect({ host: "127.0.0.1", port });
    socket.on("error", () => {});
    socket.on("close", () => cutByServer++);
    socket.on("connect", () => socket.write(first));
    sockets.push(socket);
    return socket;
  };
  const httpDribblers = Array.from({ length: 1000 }, () =>
    open(http.port, Buffer.from("GET /small.txt HTTP/1.1\r\nHost: stress\r\n")),
  );
  const frameStart = encodeFrame(OP_PING, 0, 1).subarray(0, 6);
  for (let i = 0; i < 300; i++) open(custom.port, frameStart);
  let line = 0;
  const dribble = setInterval(() => {
    line++;
    for (const socket of httpDribblers) if (!socket.destroyed) socket.write(`X-Slow-${line}: y\r\n`);
  }, 500);
  try {
    const [httpReport, customReport] = await Promise.all([
      load([`http://127.0.0.1:${http.port}/small.txt`, "-c", "16", "-d", "2s", "--timeout", "3s"]),
      load([`hps://127.0.0.1:${custom.port}`, "--opcode", "ping", "-c", "8", "-d", "2s", "--timeout", "3s"]),
    ]);
    const httpP99Ms = httpReport.latency.p99Micros / 1000;
    const closedSoFar = cutByServer;
    return {
      name,
      held:
        httpReport.errors.total === 0 &&
        httpReport.requests.ok > 0 &&
        customReport.errors.total === 0 &&
        customReport.requests.ok > 0 &&
        httpP99Ms < 1000,
      detail:
        `1000 HTTP + 300 HPS/1 dribbling connections; meanwhile HTTP ${loadErrors(httpReport)} (p99 ${httpP99Ms.toFixed(1)} ms), ` +
        `PING ${loadErrors(customReport)}; dribblers cut by the server within the window: ${closedSoFar}`,
    };
  } finally {
    clearInterval(dribble);
    for (const socket of sockets) socket.destroy();
  }
}

async function checkRateLimit(rated: Running): Promise<CheckResult> {
  const name = "burst above the rate limit → 429 counted";
  const before = await stats(rated);
  const total = 2000;
  const report = await load([
    `http://127.0.0.1:${rated.port}/small.txt`,
    "-n",
    String(total),
    "-c",
    "8",
    "--timeout",
    "3s",
  ]);
  const after = await stats(rated);
  const ok = report.statuses["200"] ?? 0;
  const limited = report.statuses["429"] ?? 0;
  const counted = after.counters.rateLimited - before.counters.rateLimited;
  // the burst at once, then the sustained rate for the run's length, plus one token of slack
  const allowed = RATE_BURST + Math.ceil((report.durationSeconds * RATE_BURST) / RATE_WINDOW_S) + 1;
  // The bucket is empty now, but a token comes back every RATE_WINDOW_S / RATE_BURST s (100 ms), so the next request
  // alone may be admitted when the machine is slow (seen: 200, no Retry-After). Of a few sent back to back, at most
  // one per 100 ms gets through: the first 429 among them shows the Retry-After.
  let head = "";
  let afterBurst200 = 0;
  for (let i = 0; i < 20; i++) {
    const one = await exchange(rated.port, httpGet("/small.txt"), 2000, (received) => parseResponse(received) !== null);
    head = one.received.toString("latin1");
    if (head.slice(9, 12) !== "200") break;
    afterBurst200++;
  }
  const retryAfter = Number(/\r\nretry-after:\s*(\d+)/i.exec(head)?.[1] ?? "NaN");
  // One token comes back every RATE_WINDOW_S / RATE_BURST seconds; Retry-After (whole seconds) covers it.
  await Bun.sleep(Math.min(Number.isFinite(retryAfter) ? retryAfter : 1, 2) * 1000);
  const again = await exchange(rated.port, httpGet("/small.txt"), 2000, (received) => parseResponse(received) !== null);
  const recovered = parseResponse(again.received)?.status === 200;
  const e = report.errors;
  return {
    name,
    held:
      ok + limited === total &&
      ok <= allowed &&
      limited >= total - allowed &&
      counted === limited &&
      e.connect + e.read + e.timeout + e.mismatch === 0 &&
      head.slice(9, 12) === "429" &&
      Number.isFinite(retryAfter) &&
      recovered,
    detail:
      `${total} requests in ${report.durationSeconds.toFixed(2)} s at a limit of ${RATE_BURST} per ${RATE_WINDOW_S} s (burst ${RATE_BURST}): ${ok} × 200 (at most ${allowed} allowed), ${limited} × 429; ` +
      `server counted rateLimited +${counted}; then ${afterBurst200} × 200 (refilled tokens) before a ${head.slice(9, 12) || "no answer"} with Retry-After ${retryAfter}; ` +
      `after waiting that long: ${parseResponse(again.received)?.status ?? "no answer"}`,
  };
}

const MALFORMED_HTTP: Array<[string, Uint8Array]> = [
  ["garbage request line", Buffer.from("GARBAGE\r\n\r\n")],
  ["bad version", Buffer.from("GET / HTTP/9.9\r\nHost: x\r\n\r\n")],
  ["bad Content-Length", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")],
  [
    "CL + TE (smuggling)",
    Buffer.from("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
  ],
  [
    "bad chunk size",
    Buffer.from("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
  ],
  ["space in header name", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")],
  ["NUL in path", Buffer.from("GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n")],
  ["100 KB URL", Buffer.from(`GET /${"a".repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)],
  [
    "200 KB of headers",
    Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\n${"X-Big: ".concat("b".repeat(1000), "\r\n").repeat(200)}\r\n`),
  ],
  ["traversal ../../etc/passwd", Buffer.from("GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")],
  ["encoded traversal", Buffer.from("GET /%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")],
  ["random bytes", Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 0xff)],
];
/** Sent, then the client half-closes: the server must close too (not wait for the rest). */
const TRUNCATED_HTTP = Buffer.from("GET / HT");

async function checkMalformedHttp(http: Running): Promise<CheckResult> {
  const name = "malformed HTTP requests";
  const before = await stats(http);
  const seen: string[] = [];
  let bad = 0;
  for (const [label, bytes] of MALFORMED_HTTP) {
    const result = await exchange(http.port, bytes, 2000, (received) => parseResponse(received) !== null);
    const text = result.received.toString("latin1");
    const status = text.startsWith("HTTP/1.") ? Number(text.slice(9, 12)) : 0;
    // Refused (4xx, or 501/505 from the parser) or closed are fine; a 2xx/3xx, a 500 (handler failure) or passwd contents are not.
    const fine =
      (status === 0 || (status >= 400 && status < 500) || status === 501 || status === 505) && !text.includes("root:");
    if (!fine) bad++;
    seen.push(`${label}: ${status === 0 ? (result.closedByPeer ? "closed" : "no answer") : status}${fine ? "" : " ✗"}`);
  }
  const truncated = await exchange(http.port, TRUNCATED_HTTP, 3000, () => false, true);
  if (!truncated.closedByPeer) bad++;
  seen.push(`truncated, then half-close: ${truncated.closedByPeer ? "closed" : "left open ✗"}`);
  const normal = await exchange(http.port, httpGet("/small.txt"), 2000, (received) => parseResponse(received) !== null);
  const normalStatus = parseResponse(normal.received)?.status ?? 0;
  const after = await stats(http);
  const serverErrors = after.counters.errorsSystem - before.counters.errorsSystem;
  return {
    name,
    held: bad === 0 && normalStatus === 200 && serverErrors === 0 && http.child.isRunning,
    detail: `${seen.join("; ")}; then a normal GET: ${normalStatus}; errorsSystem +${serverErrors}`,
  };
}

async function checkMalformedFrames(custom: Running): Promise<CheckResult> {
  const name = "malformed HPS/1 frames";
  const parts: string[] = [];
  let bad = 0;
  const expectConnectionError = async (label: string, bytes: Uint8Array, status: number) => {
    const result = await exchange(custom.port, bytes, 2000);
    const got = result.received.length >= 12 ? result.received.readUInt16BE(6) : -1;
    const id = result.received.length >= 12 ? result.received.readUInt32BE(8) : -1;
    const fine = got === status && id === 0 && result.closedByPeer;
    if (!fine) bad++;
    parts.push(`${label}: status ${got}, id ${id}, ${result.closedByPeer ? "closed" : "left open"}${fine ? "" : " ✗"}`);
  };
  const badVersion = encodeFrame(OP_PING, 0, 7);
  badVersion[4] = 9;
  await expectConnectionError("bad version", badVersion, 3);
  const tooLarge = encodeFrame(OP_PING, 0, 8);
  new DataView(tooLarge.buffer, tooLarge.byteOffset).setUint32(0, 0x7fff_fff0);
  await expectConnectionError("length 2 GiB", tooLarge, 2);
  const tooShort = encodeFrame(OP_PING, 0, 9);
  new DataView(tooShort.buffer, tooShort.byteOffset).setUint32(0, 3);
  await expectConnectionError("length below the header", tooShort, 3);

  // Unknown opcode: status 1 and the connection stays usable.
  const client = await HpsClient.connect("127.0.0.1", custom.port, { timeoutMs: 3000 });
  try {
    const unknown = await client.request(0x7e);
    const ping = await client.request(OP_PING);
    const fine = unknown.status === 1 && ping.status === STATUS_OK;
    if (!fine) bad++;
    parts.push(
      `unknown opcode 0x7e: status ${unknown.status}, then PING on the same connection: ${ping.status}${fine ? "" : " ✗"}`,
    );
  } finally {
    client.close();
  }

  // Fuzz: random bytes and mutated frames on 100 connections.
  let state = 0x9e3779b9;
  const random = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state;
  };
  const fuzz = Array.from({ length: 100 }, (_, i) => {
    const bytes =
      i % 2 === 0
        ? Uint8Array.from({ length: 2048 }, () => random() & 0xff)
        : encodeFrame(random() & 0xff, random() & 0xffff, random(), new Uint8Array(64));
    if (i % 2 === 1) for (let k = 0; k < 3; k++) bytes[random() % bytes.length] = random() & 0xff;
    return exchange(custom.port, bytes, 1000);
  });
  await Promise.all(fuzz);
  const after = await HpsClient.connect("127.0.0.1", custom.port, { timeoutMs: 3000 });
  let pingAfter = -1;
  try {
    pingAfter = (await after.request(OP_PING)).status;
  } finally {
    after.close();
  }
  parts.push(`100 fuzzed connections, then PING on a fresh connection: ${pingAfter}`);
  return { name, held: bad === 0 && pingAfter === STATUS_OK && custom.child.isRunning, detail: parts.join("; ") };
}

async function checkWorkerKilled(custom: Running): Promise<CheckResult> {
  const name = "pool worker killed mid-load";
  const before = await stats(custom);
  const connections = 16;
  const running = load([
    `hps://127.0.0.1:${custom.port}`,
    "--opcode",
    "hash",
    "-s",
    "64",
    "-c",
    String(connections),
    "-d",
    "3s",
    "--timeout",
    "5s",
  ]);
  await Bun.sleep(1000); // let the load reach full speed before the kill
  const killer = await HpsClient.connect("127.0.0.1", custom.port, { timeoutMs: 5000 });
  let killStatus = -1;
  try {
    killStatus = (await killer.request(OP_EXIT)).status;
  } finally {
    killer.close();
  }
  const report = await running;
  const replaced = await waitUntil(async () => (await stats(custom)).gauges.pool?.workers === POOL_THREADS, 5000);
  const after = await stats(custom);
  const hashClient = await HpsClient.connect("127.0.0.1", custom.port, { timeoutMs: 3000 });
  let hashStatus = -1;
  try {
    hashStatus = (await hashClient.request(0x02, new Uint8Array(64))).status;
  } finally {
    hashClient.close();
  }
  const e = report.errors;
  const crashed = after.counters.poolCrashed - before.counters.poolCrashed;
  return {
    name,
    held:
      killStatus === STATUS_INTERNAL &&
      e.connect + e.read + e.timeout + e.mismatch === 0 &&
      e.nonOk <= connections &&
      crashed >= 1 &&
      replaced &&
      hashStatus === STATUS_OK,
    detail:
      `kill request answered status ${killStatus}; HASH load ${Math.round(report.requests.perSecond.mean)}/s: ${loadErrors(report)} (at most ${connections} in flight may fail); ` +
      `poolCrashed +${crashed}; workers back to ${after.gauges.pool?.workers ?? "?"}/${POOL_THREADS}: ${replaced}; HASH afterwards: ${hashStatus}`,
  };
}

async function checkSigtermCustom(custom: Running): Promise<CheckResult> {
  const name = "SIGTERM under load (custom): in-flight completed, exit 0";
  const clients = await Promise.all(
    Array.from({ length: 16 }, () => HpsClient.connect("127.0.0.1", custom.port, { timeoutMs: 10_000 })),
  );
  const before = await stats(custom);
  const delayMs = 400;
  const payload = Uint8Array.of(delayMs >> 8, delayMs & 0xff, 1, 2, 3);
  const background = load([
    `hps://127.0.0.1:${custom.port}`,
    "--opcode",
    "ping",
    "-c",
    "8",
    "-d",
    "3s",
    "--timeout",
    "3s",
  ]);
  await Bun.sleep(300); // the background load is under way
  const requests = clients.flatMap((client) =>
    Array.from({ length: 8 }, () =>
      client
        .request(OP_DELAY, payload)
        .catch((error: Error) => ({ status: -1, payload: new TextEncoder().encode(error.message) })),
    ),
  );
  const inFlight = requests.length;
  // The server has read every one of them once it handed them all to the pool (poolSubmitted; the background load is
  // PING, answered inline). The tcp gauge inFlight is no proof: it also counts whatever earlier checks left running.
  const allSeen = await waitUntil(async () => {
    const now = await adminStats(custom.adminPort);
    return now !== null && now.counters.poolSubmitted - before.counters.poolSubmitted >= inFlight;
  }, 3000);
  const signalledMs = performance.now();
  custom.child.proc.kill("SIGTERM");
  const responses = await Promise.all(requests);
  const exitCode = await within(custom.child.proc.exited, 15_000);
  const exitSeconds = (performance.now() - signalledMs) / 1000;
  const report = await background;
  for (const client of clients) client.close();
  const completed = responses.filter((r) => r.status === STATUS_OK && r.payload.length === payload.length).length;
  const refused = await exchange(custom.port, encodeFrame(OP_PING, 0, 1), 1000);
  const firstFailure = responses.find((r) => r.status !== STATUS_OK);
  return {
    name,
    // The background load's connections each lose at most the one request in transit when the server closes them.
    held:
      allSeen &&
      completed === inFlight &&
      exitCode === 0 &&
      report.errors.read <= 8 &&
      report.errors.timeout + report.errors.mismatch + report.errors.nonOk === 0,
    detail:
      `${inFlight} slow requests (${delayMs} ms) in flight at SIGTERM${allSeen ? "" : " (server never showed them all in flight)"}: ${completed} completed OK` +
      (firstFailure === undefined
        ? ""
        : ` (first failure: status ${firstFailure.status} ${new TextDecoder().decode(firstFailure.payload).slice(0, 80)})`) +
      `; exit code ${exitCode ?? "none within 15 s"} after ${exitSeconds.toFixed(2)} s; background PING load (8 conns, each may lose the one request in transit at close): ${loadErrors(report)}; ` +
      `new connection afterwards: ${refused.connectFailed ? "refused" : `answered ${refused.received.length} bytes`}`,
  };
}

async function checkSigtermHttp(http: Running): Promise<CheckResult> {
  const name = "SIGTERM under load (HTTP): in-flight downloads completed, exit 0";
  const background = load([`http://127.0.0.1:${http.port}/small.txt`, "-c", "8", "-d", "3s", "--timeout", "3s"]);
  await Bun.sleep(300);
  const downloads = Array.from({ length: 8 }, () => new Download(http.port, "/big.bin"));
  // In flight for certain: each response has begun (its head arrived), then its reader paused.
  const answered = (await within(Promise.all(downloads.map((d) => d.headArrived)), 5000)) !== null;
  http.child.proc.kill("SIGTERM");
  const signalledMs = performance.now();
  for (const download of downloads) download.resume();
  const results = await within(Promise.all(downloads.map((d) => d.done)), 15_000);
  const exitCode = await within(http.child.proc.exited, 15_000);
  const exitSeconds = (performance.now() - signalledMs) / 1000;
  const report = await background;
  for (const download of downloads) download.destroy();
  const complete = results?.filter((r) => r.status === 200 && r.bodyBytes === BIG_BYTES) ?? [];
  const shortest = results === null ? 0 : Math.min(...results.map((r) => r.bodyBytes));
  return {
    name,
    held:
      answered &&
      complete.length === downloads.length &&
      exitCode === 0 &&
      report.errors.read <= 8 &&
      report.errors.timeout + report.errors.mismatch + report.errors.nonOk === 0,
    detail:
      `${downloads.length} × 64 MiB downloads in flight at SIGTERM${answered ? "" : " (not all had begun)"}: ${complete.length} complete` +
      (complete.length === downloads.length ? "" : ` (shortest got ${shortest} of ${BIG_BYTES} bytes)`) +
      `; exit code ${exitCode ?? "none within 15 s"} after ${exitSeconds.toFixed(2)} s; background keep-alive load (8 conns, each may lose the one request in transit at close): ${loadErrors(report)}`,
  };
}

// ---------------------------------------------------------------- main

async function main(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("stress", USAGE, {
    args: argv,
    options: {
      seconds: { type: "string", default: "60" },
      connections: { type: "string", default: "10000" },
      churn: { type: "string", default: "100000" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const args = parsed.values;
  const budgetSeconds = Number(args.seconds);
  const wantedConnections = Number(args.connections);
  const churnTotal = Number(args.churn);
  if (!(budgetSeconds >= 20) || !(wantedConnections >= 1) || !(churnTotal >= 1)) {
    process.stderr.write("stress: --seconds must be at least 20; --connections and --churn at least 1\n");
    return 2;
  }
  const startedMs = Date.now();
  const budgetEndMs = startedMs + budgetSeconds * 1000;
  // The server and this client each hold one descriptor per connection, plus their own.
  const fdLimit = softFdLimit();
  const connections = Math.min(wantedConnections, fdLimit - 1024);
  const notes: string[] = [];
  if (connections < wantedConnections)
    notes.push(
      `held connections limited to ${connections} by ulimit -n ${fdLimit} (run through bench/stress.sh, which raises it)`,
    );

  const tempDir = mkdtempSync(join(tmpdir(), "hps-stress-"));
  stopChildrenOnSignals();
  const results: CheckResult[] = [];
  const record = (result: CheckResult) => {
    results.push(result);
    const elapsed = ((Date.now() - startedMs) / 1000).toFixed(1);
    process.stderr.write(
      `[${elapsed.padStart(5)} s] ${result.held ? "held  " : "FAILED"} ${result.name}: ${result.detail}\n`,
    );
  };
  const attempt = async (name: string, run: () => Promise<CheckResult>) => {
    try {
      record(await run());
    } catch (error) {
      record({ name, held: false, detail: `check failed to run: ${(error as Error).message}` });
    }
  };

  try {
    const www = join(tempDir, "www");
    await Bun.write(join(www, "small.txt"), "s".repeat(SMALL_BYTES));
    const big = new Uint8Array(BIG_BYTES);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    await Bun.write(join(www, "big.bin"), big);
    const emptyConfig = join(tempDir, "empty.toml");
    writeFileSync(emptyConfig, "# defaults; the stress run sets what it needs with --set\n");

    const ports = freePorts(8);
    const common = [
      "server.bind=127.0.0.1",
      "log.level=warn",
      "stats.interval_s=0",
      "log.access_log=false",
      "limits.max_connections=30000",
      "server.shutdown_timeout_s=10",
    ];
    const start = async (name: string, index: number, sets: string[]): Promise<Running> => {
      const port = ports[index * 2]!;
      const adminPort = ports[index * 2 + 1]!;
      const all = [...common, `server.port=${port}`, `admin.port=${adminPort}`, ...sets];
      const child = await startChild({
        name,
        argv: ["bun", join(REPO, "src/main.ts"), "--config", emptyConfig, ...all.flatMap((set) => ["--set", set])],
        core: null,
        readyPort: port,
        readyTimeoutMs: 15_000,
        cwd: REPO,
        logPath: join(tempDir, `${name}.log`),
      });
      return { child, port, adminPort };
    };
    const [http, echo, custom, rated] = await Promise.all([
      start("hps-http", 0, ["server.protocol=http", `http.root=${www}`, "http.keepalive_timeout_s=120"]),
      // A short send timeout: the never-reading client below is cut within the check's time.
      start("hps-echo", 1, ["server.protocol=echo", `tcp.send_timeout_s=${ECHO_SEND_TIMEOUT_S}`]),
      start("hps-custom", 2, [
        "server.protocol=custom",
        `custom.handlers=${HANDLERS}`,
        `pool.threads=${POOL_THREADS}`,
        "pool.task_timeout_ms=5000",
      ]),
      start("hps-http-rate-limited", 3, [
        "server.protocol=http",
        `http.root=${www}`,
        "rate_limit.enabled=true",
        `rate_limit.requests=${RATE_BURST}`,
        `rate_limit.window_s=${RATE_WINDOW_S}`,
      ]),
    ]);
    process.stderr.write(
      `stress: 4 servers up (http ${http.port}, echo ${echo.port}, custom ${custom.port}, rate-limited http ${rated.port}); budget ${budgetSeconds} s\n`,
    );

    // Time each check may take at most; churn gets what is left before the last checks' reserve.
    const RESERVE_AFTER_CHURN_MS = 25_000;
    await attempt("concurrent connections held", () => checkHeldConnections(http, connections, Date.now() + 15_000));
    await attempt("concurrent HPS/1 connections held", () => checkHeldFrames(custom, connections, Date.now() + 15_000));
    const churnEndMs = Math.max(Date.now() + 4000, budgetEndMs - RESERVE_AFTER_CHURN_MS);
    const churnSplitMs = Date.now() + (churnEndMs - Date.now()) * 0.6;
    await attempt("connection churn (echo)", () =>
      checkChurn("echo", echo, Math.round(churnTotal * 0.6), churnSplitMs),
    );
    await attempt("connection churn (http)", () => checkChurn("http", http, Math.round(churnTotal * 0.4), churnEndMs));
    await attempt("slow readers (HTTP)", () => checkSlowReadersHttp(http));
    await attempt("slow reader (echo)", () => checkSlowReaderEcho(echo));
    await attempt("slowloris", () => checkSlowloris(http, custom));
    await attempt("rate limit burst", () => checkRateLimit(rated));
    await attempt("malformed HTTP", () => checkMalformedHttp(http));
    await attempt("malformed frames", () => checkMalformedFrames(custom));
    await attempt("worker killed", () => checkWorkerKilled(custom));
    await attempt("SIGTERM custom", () => checkSigtermCustom(custom));
    await attempt("SIGTERM http", () => checkSigtermHttp(http));
    for (const [name, server] of [
      ["echo", echo],
      ["rate-limited http", rated],
    ] as const) {
      const code = await server.child.stop("SIGTERM", 15_000);
      if (code !== 0) record({ name: `SIGTERM at rest (${name}): exit 0`, held: false, detail: `exit code ${code}` });
    }
  } finally {
    await stopAll();
    rmSync(tempDir, { recursive: true, force: true });
  }

  const totalSeconds = (Date.now() - startedMs) / 1000;
  const failed = results.filter((r) => !r.held);
  const lines = [
    "",
    `hps stress — ${new Date().toISOString().slice(0, 19)}Z, ${totalSeconds.toFixed(1)} s (budget ${budgetSeconds} s)`,
    "",
    "| check | held | detail |",
    "| --- | --- | --- |",
  ];
  for (const result of results)
    lines.push(`| ${result.name} | ${result.held ? "yes" : "**NO**"} | ${result.detail.replaceAll("|", "/")} |`);
  if (totalSeconds > budgetSeconds * 1.25)
    notes.push(`the run took ${totalSeconds.toFixed(0)} s, over its ${budgetSeconds} s budget`);
  for (const note of notes) lines.push(`\nNote: ${note}`);
  lines.push(
    "",
    failed.length === 0
      ? `All ${results.length} checks held.`
      : `${failed.length} of ${results.length} checks did not hold: ${failed.map((r) => r.name).join("; ")}`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
  return failed.length === 0 ? 0 : 1;
}

process.exitCode = await main(Bun.argv.slice(2));
