// http: Listener.reconfigure swaps the per-configuration handler on the running server; requests after it see the new settings.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { Counter } from "../../src/stats/stats.ts";
import { rawConnect, testConfig, waitFor } from "../helpers/common.ts";
import {
  keptConnection,
  makeTempDir,
  parseResponses,
  rawGet,
  rawRequest,
  removeDir,
  startSite,
  text,
  type RunningHttp,
} from "../helpers/http.ts";

let rootA: string;
let rootB: string;
const running: RunningHttp[] = [];
const bytes = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);

/** A site on rootA with `overrides`, stopped in afterAll. */
async function site(overrides: ConfigOverrides = {}): Promise<RunningHttp> {
  const started = await startSite(rootA, overrides);
  running.push(started);
  return started;
}

/** Applies a configuration built from `overrides` (http.root defaults to rootA) with the site's shared stats, logger, gauges and admission. */
async function reconfigure(running: RunningHttp, overrides: ConfigOverrides): Promise<void> {
  const config = testConfig({ ...overrides, http: { root: rootA, ...overrides.http } });
  const prepared = await running.listener.prepareReconfigure!({ ...running.context, config });
  prepared.commit();
}

/**
 * A POST whose chunked body is left unfinished, so the handler that took it waits across a reconfigure;
 * `finish` sends the last chunk and returns its response.
 */
async function slowPost(served: RunningHttp, target: string) {
  const client = await rawConnect(served.port);
  client.socket.write(`POST ${target} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n`);
  await waitFor(() => served.listener.inFlight() === 1, 2000, "the request in flight");
  return {
    async finish() {
      client.socket.write("0\r\n\r\n");
      await waitFor(() => parseResponses(client.received()).length === 1, 2000, "the slow request's response");
      return parseResponses(client.received())[0]!;
    },
    end: () => void client.socket.end(),
  };
}

const gauge = (running: RunningHttp, name: string) => running.context.gauges.get("httpCache")!()[name]!;
const lines = (file: string) =>
  (existsSync(file) ? readFileSync(file, "utf8") : "").split("\n").filter((line) => line !== "");
const logFile = (name: string) => join(rootA, "..", `${rootA.split("/").pop()}-${name}.log`);

beforeAll(() => {
  rootA = makeTempDir("hps-reconfigure-a-");
  rootB = makeTempDir("hps-reconfigure-b-");
  writeFileSync(join(rootA, "page.txt"), "from A\n");
  writeFileSync(join(rootB, "page.txt"), "from B, longer\n");
  writeFileSync(join(rootA, ".secret"), "dot\n");
  writeFileSync(join(rootA, "a.bin"), bytes);
  writeFileSync(join(rootA, "file-not-dir"), "x");
});

afterAll(async () => {
  await Promise.all(running.map((started) => started.stop()));
  removeDir(rootA);
  removeDir(rootB);
  for (const name of [
    "on",
    "first",
    "second",
    "inflight-first",
    "inflight-second",
    "kept",
    "late-first",
    "late-second",
  ])
    rmSync(logFile(name), { force: true });
});

describe("the site's settings", () => {
  test("http.root switched: a path cached and natively routed before is served from the new root", async () => {
    const served = await site();
    expect(text((await rawGet(served.port, "/page.txt")).body)).toBe("from A\n");
    await waitFor(() => gauge(served, "routes") >= 1, 2000, "a native route for /page.txt");
    expect(text((await rawGet(served.port, "/page.txt")).body)).toBe("from A\n");

    await reconfigure(served, { http: { root: rootB } });
    const after = await rawGet(served.port, "/page.txt");
    expect(after.status).toBe(200);
    expect(text(after.body)).toBe("from B, longer\n");
    expect(text((await rawGet(served.port, "/page.txt")).body)).toBe("from B, longer\n");
  });

  test("http.cache_control changed: the header follows, for a path cached before", async () => {
    const served = await site({ http: { cache_control: "no-cache" } });
    expect((await rawGet(served.port, "/page.txt")).headers.get("cache-control")).toBe("no-cache");
    await reconfigure(served, { http: { cache_control: "public, max-age=60" } });
    expect((await rawGet(served.port, "/page.txt")).headers.get("cache-control")).toBe("public, max-age=60");
  });

  test("a reload that leaves the site's settings alone keeps its cache (hits go on, paths routed again); one that changes them starts empty", async () => {
    const served = await site();
    await rawGet(served.port, "/page.txt");
    await waitFor(() => gauge(served, "routes") === 1, 2000, "the cached path routed");
    const missesBefore = gauge(served, "misses");
    const hitsBefore = gauge(served, "hits");
    await reconfigure(served, { rate_limit: { enabled: true, requests: 1_000_000 } }); // rebuilds the handler set, not the site
    expect(gauge(served, "entries")).toBe(1);
    expect(await text((await rawGet(served.port, "/page.txt")).body)).toBe("from A\n");
    expect(gauge(served, "misses")).toBe(missesBefore);
    expect(gauge(served, "hits")).toBe(hitsBefore + 1);
    await waitFor(() => gauge(served, "routes") === 1, 2000, "the path routed again");
    await reconfigure(served, { http: { cache_control: "no-store" } });
    expect(gauge(served, "entries")).toBe(0);
    await rawGet(served.port, "/page.txt");
    expect(gauge(served, "misses")).toBe(missesBefore + 1); // counters carry on across the new cache
  });

  test("http.dotfiles deny -> allow", async () => {
    const served = await site({ http: { dotfiles: "deny" } });
    expect((await rawGet(served.port, "/.secret")).status).not.toBe(200);
    await reconfigure(served, { http: { dotfiles: "allow" } });
    const after = await rawGet(served.port, "/.secret");
    expect(after.status).toBe(200);
    expect(text(after.body)).toBe("dot\n");
  });

  test("limits.max_request_bytes lowered: a body now over it gets 413", async () => {
    const served = await site({ limits: { max_request_bytes: 1024 } });
    const post = `POST /page.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n${"x".repeat(100)}`;
    expect((await rawRequest(served.port, post)).status).toBe(405);
    await reconfigure(served, { limits: { max_request_bytes: 16 } });
    expect((await rawRequest(served.port, post)).status).toBe(413);
    expect(served.context.stats.total(Counter.requestsTooLarge)).toBe(1);
  });

  test("http.static_routes turned on: a file cached before is served whole, then by a static route", async () => {
    const served = await site();
    expect((await rawGet(served.port, "/a.bin")).body).toEqual(bytes);
    await reconfigure(served, {
      http: { static_routes: true, compress: false, cache_revalidate_ms: 1000 },
      log: { access_log: false },
    });
    const first = await rawGet(served.port, "/a.bin");
    expect(first.status).toBe(200);
    expect(first.body).toEqual(bytes);
    await waitFor(() => gauge(served, "staticRoutes") >= 1, 2000, "a static route for /a.bin");
    const requestsBefore = served.context.stats.total(Counter.requests);
    const routed = await rawGet(served.port, "/a.bin");
    expect(routed.status).toBe(200);
    expect(routed.body).toEqual(bytes);
    expect(served.context.stats.total(Counter.requests)).toBe(requestsBefore); // answered by Bun, not JavaScript
  });
});

describe("a root that is not a directory", () => {
  test("missing: reconfigure rejects, naming it, and the old root keeps serving", async () => {
    const served = await site();
    const missing = join(rootA, "no-such-dir");
    await expect(reconfigure(served, { http: { root: missing, cache_control: "no-store" } })).rejects.toThrow(
      `http.root "${missing}" does not exist`,
    );
    const after = await rawGet(served.port, "/page.txt");
    expect(after.status).toBe(200);
    expect(text(after.body)).toBe("from A\n");
    expect(after.headers.get("cache-control")).not.toBe("no-store");
  });

  test("a file: reconfigure rejects", async () => {
    const served = await site();
    const file = join(rootA, "file-not-dir");
    await expect(reconfigure(served, { http: { root: file } })).rejects.toThrow("is not a directory");
    expect(text((await rawGet(served.port, "/page.txt")).body)).toBe("from A\n");
  });
});

describe("the access log", () => {
  test("turned on, then off: lines for the requests in between only", async () => {
    const file = logFile("on");
    const served = await site();
    await rawGet(served.port, "/page.txt?before");
    await reconfigure(served, { log: { access_log: true, access_file: file } });
    await rawGet(served.port, "/page.txt?during");
    await waitFor(() => lines(file).length === 1, 2000, "the access log line");
    await reconfigure(served, { log: { access_log: false } });
    await rawGet(served.port, "/page.txt?after");
    await served.stop(); // every log is closed once stop resolves: nothing more can be written
    const logged = lines(file);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('"GET /page.txt?during HTTP/1.1" 200');
  });

  test("log.access_file changed: the old file has the earlier lines complete, the new file the later ones", async () => {
    const first = logFile("first");
    const second = logFile("second");
    const served = await site({ log: { access_log: true, access_file: first } });
    for (let i = 0; i < 3; i++) await rawGet(served.port, `/page.txt?one-${i}`);
    await reconfigure(served, { log: { access_log: true, access_file: second } });
    for (let i = 0; i < 2; i++) await rawGet(served.port, `/page.txt?two-${i}`);
    await served.stop();
    expect(readFileSync(first, "utf8").endsWith("\n")).toBe(true);
    const earlier = lines(first);
    const later = lines(second);
    expect(earlier.map((line) => line.match(/\?(\S+) HTTP/)![1])).toEqual(["one-0", "one-1", "one-2"]);
    expect(later.map((line) => line.match(/\?(\S+) HTTP/)![1])).toEqual(["two-0", "two-1"]);
    for (const line of [...earlier, ...later])
      expect(line).toMatch(/^127\.0\.0\.1 - - \[.+\] "GET \S+ HTTP\/1\.1" 200 \d+ "-" "-"$/);
  });

  test("a request in flight through the switch is logged to the old file, closed at the switch, after the line before it", async () => {
    const first = logFile("inflight-first");
    const second = logFile("inflight-second");
    const served = await site({ log: { access_log: true, access_file: first } });
    const slow = await slowPost(served, "/page.txt?slow");
    try {
      await reconfigure(served, { log: { access_log: true, access_file: second } });
      await rawGet(served.port, "/page.txt?new");
      expect((await slow.finish()).status).toBe(405);
      await waitFor(() => lines(first).length === 1, 2000, "the slow request's line in the old file");
    } finally {
      slow.end();
    }
    await served.stop();
    expect(lines(first)).toHaveLength(1);
    expect(lines(first)[0]).toContain('"POST /page.txt?slow HTTP/1.1" 405');
    expect(lines(second)).toHaveLength(1);
    expect(lines(second)[0]).toContain('"GET /page.txt?new HTTP/1.1" 200');
  });
});

describe("the access log across reloads", () => {
  test("unchanged log settings: one log across the reload, a request in flight through it logged in order", async () => {
    const file = logFile("kept");
    const served = await site({ log: { access_log: true, access_file: file } });
    await rawGet(served.port, "/page.txt?before");
    const slow = await slowPost(served, "/page.txt?slow");
    try {
      await reconfigure(served, { http: { cache_control: "no-store" }, log: { access_log: true, access_file: file } });
      await rawGet(served.port, "/page.txt?after");
      await slow.finish();
    } finally {
      slow.end();
    }
    await served.stop();
    expect(lines(file).map((line) => line.match(/\?(\S+) HTTP/)![1])).toEqual(["before", "after", "slow"]);
  });

  test("a request still waiting for its body when its log is replaced gets its line appended to the old file, none in the new", async () => {
    const first = logFile("late-first");
    const second = logFile("late-second");
    const served = await site({ log: { access_log: true, access_file: first } });
    const slow = await slowPost(served, "/page.txt?late");
    try {
      // The commit closes the old log at once: from then on its lines are appended directly (AccessLog.writeLate).
      await reconfigure(served, { log: { access_log: true, access_file: second } });
      expect((await slow.finish()).status).toBe(405);
      await waitFor(() => lines(first).length === 1, 2000, "the late line in the old file");
    } finally {
      slow.end();
    }
    await served.stop();
    expect(lines(first)[0]).toContain('"POST /page.txt?late HTTP/1.1" 405');
    expect(lines(second)).toHaveLength(0);
  });
});

describe("connections", () => {
  test("a keep-alive connection opened before keeps working after, its admission slot released by the old set", async () => {
    // One connection per address: were the old set's slot kept, the connection's next request (a new connection to the new set) would get 503.
    const limits: ConfigOverrides = {
      http: { connection_limits: true, max_keepalive_requests: 100 },
      limits: { max_connections_per_ip: 1 },
    };
    const served = await site(limits);
    const connection = await keptConnection(served.port);
    try {
      const before = await connection.request("GET /page.txt HTTP/1.1\r\nHost: t\r\n\r\n");
      expect(text(before.body)).toBe("from A\n");
      await reconfigure(served, { ...limits, http: { ...limits.http, root: rootB } });
      const after = await connection.request("GET /page.txt HTTP/1.1\r\nHost: t\r\n\r\n");
      expect(after.status).toBe(200);
      expect(text(after.body)).toBe("from B, longer\n");
      expect(after.headers.get("connection")).not.toBe("close");
      expect((await connection.request("GET /page.txt HTTP/1.1\r\nHost: t\r\n\r\n")).status).toBe(200);
    } finally {
      connection.end();
    }
  });
});
