// Requests whose framing or head is unusual, through the running server to a real backend: what the server receives
// must say the same as what the client sent (no body lost, no length invented), and the edge's limits still apply.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { testConfig } from "../helpers/common.ts";
import { makeTempDir, rawRequest, removeDir, text } from "../helpers/http.ts";
import { startBackend, upstreamSettings } from "../helpers/upstream.ts";

const dir = makeTempDir("hps-proxy-framing-");
afterAll(() => removeDir(dir));
const site = join(dir, "site");
mkdirSync(site);

function proxyConfig(servers: string[], overrides: ConfigOverrides = {}) {
  return testConfig({
    ...overrides,
    http: { root: site, routes: [{ path_prefix: "/api/", upstream: "app", strip_prefix: false }] },
    upstreams: [upstreamSettings(servers)],
  } as ConfigOverrides);
}

/** A backend that answers with what it received: the body and the framing headers. */
function echoBackend() {
  return startBackend(async (request) => {
    const body = await request.text();
    return Response.json({
      body,
      length: request.headers.get("content-length"),
      chunked: request.headers.get("transfer-encoding"),
      host: request.headers.get("host"),
    });
  });
}

describe("http proxy: request framing", () => {
  test("a Content-Length repeated with equal values frames the body upstream and counts against the limit", async () => {
    await using backend = echoBackend();
    await using server = await startServer(proxyConfig([backend.address], { limits: { max_request_bytes: 64 } }));
    // Bun accepts the repeated field when the values agree; its Headers join them as "4, 4".
    const small = await rawRequest(
      server.port,
      "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
    );
    expect(small.status).toBe(200);
    expect(JSON.parse(text(small.body))).toMatchObject({ body: "abcd", length: "4", chunked: null });
    const large = await rawRequest(
      server.port,
      `POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nContent-Length: 100\r\n\r\n${"a".repeat(100)}`,
    );
    expect(large.status).toBe(413);
    expect(backend.requests).toBe(1);
  });

  test("an HTTP/1.0 request without Host goes upstream as HTTP/1.1 with the group's name as Host (as nginx does)", async () => {
    await using backend = echoBackend();
    await using server = await startServer(proxyConfig([backend.address]));
    // Bun refuses an HTTP/1.1 request without Host (RFC 9112 §3.2): the backend would answer 400.
    const response = await rawRequest(server.port, "GET /api/x HTTP/1.0\r\n\r\n");
    expect(response.status).toBe(200);
    expect(JSON.parse(text(response.body))).toMatchObject({ host: "app" });
    const withHost = await rawRequest(server.port, "GET /api/x HTTP/1.0\r\nHost: shop.example\r\n\r\n");
    expect(JSON.parse(text(withHost.body))).toMatchObject({ host: "shop.example" });
  });

  test("a GET with a body is refused (501), not passed on without it: Bun drops GET and HEAD bodies", async () => {
    await using backend = echoBackend();
    await using server = await startServer(proxyConfig([backend.address]));
    const lengthed = await rawRequest(server.port, "GET /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd");
    expect(lengthed.status).toBe(501);
    const chunked = await rawRequest(
      server.port,
      "GET /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    );
    expect(chunked.status).toBe(501);
    expect(backend.requests).toBe(0);
    // An empty body is no body; other methods keep theirs.
    const empty = await rawRequest(server.port, "GET /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    expect(empty.status).toBe(200);
    const deleted = await rawRequest(server.port, "DELETE /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd");
    expect(JSON.parse(text(deleted.body))).toMatchObject({ body: "abcd", length: "4" });
  });
});
