// What the server is told about the client: the forwarding fields a client could forge are only believed from a
// trusted proxy (net.trusted_proxies), for plain requests and WebSocket handshakes alike.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { testConfig } from "../helpers/common.ts";
import { makeTempDir, removeDir } from "../helpers/http.ts";
import { upstreamSettings } from "../helpers/upstream.ts";

const dir = makeTempDir("hps-proxy-forwarding-");
afterAll(() => removeDir(dir));
const site = join(dir, "site");
mkdirSync(site);

const FORGED = { forwarded: "for=198.51.100.9;proto=https", "x-real-ip": "198.51.100.9" };

/** A backend that answers plain requests and WebSocket handshakes with the forwarding fields it received. */
function forwardingBackend() {
  const fields = (headers: Headers) =>
    JSON.stringify({
      forwarded: headers.get("forwarded"),
      realIp: headers.get("x-real-ip"),
      forwardedFor: headers.get("x-forwarded-for"),
    });
  return Bun.serve<string>({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (request, server) =>
      server.upgrade(request, { data: fields(request.headers) }) ? undefined : new Response(fields(request.headers)),
    websocket: { open: (socket) => void socket.send(socket.data), message() {} },
  });
}

function proxyConfig(port: number | undefined, trustedProxies: string[]) {
  return testConfig({
    net: { trusted_proxies: trustedProxies },
    http: { root: site, routes: [{ path_prefix: "/", upstream: "app" }] },
    upstreams: [upstreamSettings([`127.0.0.1:${port}`])],
  } as ConfigOverrides);
}

async function viaWebSocket(port: number): Promise<string> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: FORGED });
  try {
    return await new Promise<string>((resolve, reject) => {
      socket.onmessage = (event) => resolve(String(event.data));
      socket.onerror = () => reject(new Error("the WebSocket failed"));
    });
  } finally {
    socket.close();
  }
}

describe("http proxy: forwarding fields", () => {
  test("from a peer that is not a trusted proxy, Forwarded and X-Real-IP are dropped (as X-Forwarded-* are replaced)", async () => {
    const backend = forwardingBackend();
    try {
      await using server = await startServer(proxyConfig(backend.port, ["10.0.0.0/8"]));
      const plain = await (await fetch(`http://127.0.0.1:${server.port}/x`, { headers: FORGED })).json();
      expect(plain).toEqual({ forwarded: null, realIp: null, forwardedFor: "127.0.0.1" });
      expect(JSON.parse(await viaWebSocket(server.port))).toEqual(plain);
    } finally {
      backend.stop(true);
    }
  });

  test("from a trusted proxy they are kept", async () => {
    const backend = forwardingBackend();
    try {
      await using server = await startServer(proxyConfig(backend.port, ["127.0.0.1"]));
      const plain = await (await fetch(`http://127.0.0.1:${server.port}/x`, { headers: FORGED })).json();
      expect(plain).toEqual({ forwarded: FORGED.forwarded, realIp: FORGED["x-real-ip"], forwardedFor: "127.0.0.1" });
      expect(JSON.parse(await viaWebSocket(server.port))).toEqual(plain);
    } finally {
      backend.stop(true);
    }
  });
});
