// [[http.routes]] in the running server: prefixes to upstreams and to directories, the edge before the proxy, the
// access log's upstream fields, forwarding headers behind a trusted proxy, reload of groups and routes, and nginx as
// the backend.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { Counter } from "../../src/stats/stats.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { makeTempDir, removeDir } from "../helpers/http.ts";
import { startBackend, startNginxBackend, upstreamSettings } from "../helpers/upstream.ts";

const dir = makeTempDir("hps-proxy-server-");
afterAll(() => removeDir(dir));
const site = join(dir, "site");
const assets = join(dir, "assets");
mkdirSync(site);
mkdirSync(assets);
writeFileSync(join(site, "index.html"), "the site");
writeFileSync(join(site, "page.txt"), "a page");
writeFileSync(join(assets, "app.css"), "body{}");

type Overrides = ConfigOverrides & { upstreams?: unknown };

function proxyConfig(servers: string[], overrides: Overrides = {}, routes?: unknown[]) {
  const { upstreams, ...rest } = overrides;
  return testConfig({
    ...rest,
    http: {
      root: site,
      routes: routes ?? [
        { path_prefix: "/api/", upstream: "app", strip_prefix: true },
        { path_prefix: "/assets/", root: assets, strip_prefix: true },
      ],
      ...rest.http,
    },
    upstreams: upstreams ?? [upstreamSettings(servers)],
  } as ConfigOverrides);
}

describe("http routes in the server", () => {
  test("a prefix goes to its upstream (stripped), another to its directory, the rest to http.root", async () => {
    await using backend = startBackend((request) => new Response(`app saw ${new URL(request.url).pathname}`));
    await using server = await startServer(proxyConfig([backend.address]));
    const base = `http://127.0.0.1:${server.port}`;
    expect(await (await fetch(`${base}/api/users/7?x=1`)).text()).toBe("app saw /users/7");
    expect(await (await fetch(`${base}/assets/app.css`)).text()).toBe("body{}");
    expect(await (await fetch(`${base}/page.txt`)).text()).toBe("a page");
    expect((await fetch(`${base}/assets/page.txt`)).status).toBe(404);
    // Methods the site refuses go upstream on a proxied route.
    const posted = await fetch(`${base}/api/form`, { method: "POST", body: "x=1" });
    expect(await posted.text()).toBe("app saw /form");
    await waitFor(() => server.stats.total(Counter.requests) === 5, 2000, "every request counted");
    expect(server.stats.total(Counter.http2xx)).toBe(4);
    expect(backend.requests).toBe(2);
  });

  test("the edge applies first: denied, rate-limited and oversized requests never reach the server", async () => {
    await using backend = startBackend(() => new Response("app"));
    await using denied = await startServer(proxyConfig([backend.address], { net: { deny: ["127.0.0.1"] } }));
    expect((await fetch(`http://127.0.0.1:${denied.port}/api/x`)).status).toBe(403);
    await using limited = await startServer(
      proxyConfig([backend.address], { rate_limit: { enabled: true, requests: 1, window_s: 60 } }),
    );
    expect((await fetch(`http://127.0.0.1:${limited.port}/api/x`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${limited.port}/api/x`)).status).toBe(429);
    await using small = await startServer(proxyConfig([backend.address], { limits: { max_request_bytes: 100 } }));
    const tooLarge = await fetch(`http://127.0.0.1:${small.port}/api/x`, { method: "POST", body: "x".repeat(200) });
    expect(tooLarge.status).toBe(413);
    expect(backend.requests).toBe(1);
  });

  test("the access log names the upstream server and its time; a server that is down is answered 502 and logged", async () => {
    await using backend = startBackend(() => new Response("app"));
    const logFile = join(dir, "access.log");
    await using server = await startServer(
      proxyConfig([backend.address], { log: { access_log: true, access_file: logFile } }),
    );
    await fetch(`http://127.0.0.1:${server.port}/api/logged`);
    await fetch(`http://127.0.0.1:${server.port}/page.txt`);
    await backend.stop();
    const failed = await fetch(`http://127.0.0.1:${server.port}/api/down`);
    expect(failed.status).toBe(502);
    await server.stop({ graceful: true, timeoutMs: 1000 });
    const lines = readFileSync(logFile, "utf8").trim().split("\n");
    expect(lines[0]).toMatch(
      new RegExp(`"GET /api/logged HTTP/1.1" 200 3 "-" "[^"]*" "${backend.address}" \\d+\\.\\d{3}$`),
    );
    expect(lines[1]).toMatch(/"GET \/page.txt HTTP\/1.1" 200 6 "-" "[^"]*"$/);
    expect(lines[2]).toMatch(new RegExp(`"GET /api/down HTTP/1.1" 502 \\d+ "-" "[^"]*" "${backend.address}" `));
  });

  test("a client that leaves before the server answers is logged 499 and counted, without waiting for read_timeout_s", async () => {
    await using backend = startBackend(async () => {
      await Bun.sleep(4000);
      return new Response("late");
    });
    const logFile = join(dir, "access-499.log");
    await using server = await startServer(
      proxyConfig([backend.address], { log: { access_log: true, access_file: logFile } }),
    );
    await fetch(`http://127.0.0.1:${server.port}/api/slow`, { signal: AbortSignal.timeout(200) }).catch(() => {});
    await waitFor(() => server.stats.total(Counter.http4xx) === 1, 3000, "the 499 to be counted");
    await server.stop({ graceful: true, timeoutMs: 1000 });
    const lines = readFileSync(logFile, "utf8").trim().split("\n");
    expect(lines[0]).toMatch(new RegExp(`"GET /api/slow HTTP/1.1" 499 0 "-" "[^"]*" "${backend.address}" 1\\.\\d{3}$`));
  });

  test("behind a trusted proxy, X-Forwarded-For is extended and X-Forwarded-Proto/Host are kept", async () => {
    let seen = new Headers();
    await using backend = startBackend((request) => {
      seen = request.headers;
      return new Response("ok");
    });
    await using server = await startServer(proxyConfig([backend.address], { net: { trusted_proxies: ["127.0.0.1"] } }));
    await fetch(`http://127.0.0.1:${server.port}/api/x`, {
      headers: { "x-forwarded-for": "198.51.100.4", "x-forwarded-proto": "https", "x-forwarded-host": "shop.example" },
    });
    expect(seen.get("x-forwarded-for")).toBe("198.51.100.4, 127.0.0.1");
    expect(seen.get("x-forwarded-proto")).toBe("https");
    expect(seen.get("x-forwarded-host")).toBe("shop.example");
  });

  test("WebSocket upgrades on a proxied route reach the server", async () => {
    const ws = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request, srv) => (srv.upgrade(request) ? undefined : new Response("no", { status: 400 })),
      websocket: { message: (socket, message) => void socket.send(`echo ${message}`) },
    });
    try {
      await using server = await startServer(proxyConfig([`127.0.0.1:${ws.port}`]));
      const client = new WebSocket(`ws://127.0.0.1:${server.port}/api/socket`);
      const reply = await new Promise<string>((resolve, reject) => {
        client.onopen = () => client.send("hi");
        client.onmessage = (event) => resolve(String(event.data));
        client.onerror = () => reject(new Error("websocket failed"));
      });
      expect(reply).toBe("echo hi");
      client.close();
    } finally {
      ws.stop(true);
    }
  });

  test("nginx as the backend: files and small answers pass through", async () => {
    const big = new Uint8Array(3 * 1024 * 1024 + 5);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const files = join(dir, "nginx-files");
    mkdirSync(files);
    writeFileSync(join(files, "big.bin"), big);
    await using nginx = await startNginxBackend(files, join(dir, "nginx"));
    await using server = await startServer(
      proxyConfig([], { upstreams: [upstreamSettings([nginx.address], { name: "app" })] }),
    );
    const base = `http://127.0.0.1:${server.port}`;
    expect(await (await fetch(`${base}/api/hello`)).text()).toBe("hello from nginx");
    const file = await fetch(`${base}/api/big.bin`);
    expect(file.status).toBe(200);
    expect(Buffer.compare(new Uint8Array(await file.arrayBuffer()), big)).toBe(0);
    const head = await fetch(`${base}/api/big.bin`, { method: "HEAD" });
    expect(head.headers.get("content-length")).toBe(String(big.length));
    expect((await fetch(`${base}/api/missing`)).status).toBe(404);
  });

  test("reload adds and removes servers and routes without dropping a request in flight", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    await using slow = startBackend(async () => {
      await gate;
      return new Response("slow finished");
    });
    await using added = startBackend(() => new Response("added"));
    const config = proxyConfig([slow.address]);
    await using server = await startServer(config);
    const base = `http://127.0.0.1:${server.port}`;
    const inFlight = fetch(`${base}/api/long`).then((response) => response.text());
    await waitFor(() => slow.requests === 1, 5000, "the slow request at its server");
    // The slow server is replaced by another, and a route is added.
    const next = proxyConfig([added.address], {}, [
      { path_prefix: "/api/", upstream: "app", strip_prefix: true },
      { path_prefix: "/v2/", upstream: "app", strip_prefix: false },
    ]);
    const report = await server.reload(next);
    expect(report.applied.sort()).toEqual(["http.routes", "upstreams"]);
    expect(await (await fetch(`${base}/api/x`)).text()).toBe("added");
    expect(await (await fetch(`${base}/v2/x`)).text()).toBe("added");
    const present = () =>
      server.context
        .upstreamStats!.read()
        .filter((numbers) => numbers.counters.present > 0 && numbers.server !== "-")
        .map((numbers) => numbers.server);
    // Removed, the slow server stays (unpicked) while its request is in flight...
    expect(present().sort()).toEqual([added.address, slow.address].sort());
    release();
    expect(await inFlight).toBe("slow finished");
    // ...and leaves, its connection closed, once that request is done.
    await waitFor(() => present().length === 1, 5000, "the removed server to leave");
    expect(present()).toEqual([added.address]);
    expect(slow.requests).toBe(1);
  });
});
