// WebSocket pass-through: the handshake reaches the chosen server, messages flow both ways, closes pass on.
import { describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { waitFor } from "../helpers/common.ts";
import { closedPort, startProxyFront, upstreamSettings } from "../helpers/upstream.ts";

interface Seen {
  headers: Headers;
}

/** A Bun WebSocket backend: echoes messages; "close:<code>" makes it close with that code; chooses "chat.v2". */
function startWsBackend(name: string) {
  const seen: Seen[] = [];
  const server = Bun.serve<{ path: string }>({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request, srv) {
      seen.push({ headers: request.headers });
      const url = new URL(request.url);
      if (url.pathname === "/refuse") return new Response("no", { status: 403 });
      const offered = request.headers.get("sec-websocket-protocol");
      const headers = offered?.includes("chat.v2") ? { "Sec-WebSocket-Protocol": "chat.v2" } : undefined;
      if (srv.upgrade(request, { data: { path: url.pathname }, headers })) return undefined;
      return new Response("not a websocket", { status: 400 });
    },
    websocket: {
      open(ws: ServerWebSocket<{ path: string }>) {
        ws.send(`hello from ${name} at ${ws.data.path}`);
      },
      message(ws, message) {
        if (typeof message === "string" && message.startsWith("close:")) {
          ws.close(Number(message.slice(6)), "asked to");
          return;
        }
        ws.send(message);
      },
    },
  });
  return { server, address: `127.0.0.1:${server.port}`, seen, [Symbol.dispose]: () => server.stop(true) };
}

/** Opens a client WebSocket and collects what it receives. */
async function connect(url: string, protocols: string[] = []) {
  const messages: (string | ArrayBuffer)[] = [];
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (event) => messages.push(event.data as string | ArrayBuffer);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.onclose = (event) => resolve({ code: event.code, reason: event.reason });
  });
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("websocket failed to open"));
  });
  return { ws, messages, closed };
}

describe("websocket pass-through", () => {
  test("upgrades through to the server: both directions, text and binary, subprotocol and forwarding headers", async () => {
    using backend = startWsBackend("a");
    await using front = startProxyFront(upstreamSettings([backend.address]));
    const client = await connect(`ws://127.0.0.1:${front.port}/socket?x=1`, ["chat.v1", "chat.v2"]);
    expect(client.ws.protocol).toBe("chat.v2");
    await waitFor(() => client.messages.length === 1, 5000, "the greeting");
    expect(client.messages[0]).toBe("hello from a at /socket");
    client.ws.send("ping text");
    client.ws.send(new Uint8Array([1, 2, 3, 255]));
    await waitFor(() => client.messages.length === 3, 5000, "the echoes");
    expect(client.messages[1]).toBe("ping text");
    expect(new Uint8Array(client.messages[2] as ArrayBuffer)).toEqual(new Uint8Array([1, 2, 3, 255]));
    const handshake = backend.seen[0]!.headers;
    expect(handshake.get("x-forwarded-for")).toBe("127.0.0.1");
    expect(handshake.get("via")).toBe("1.1 hps");
    expect(handshake.get("host")).toBe(`127.0.0.1:${front.port}`);
    expect(front.group.servers[0]!.inFlight).toBe(1);
    client.ws.close(4001, "bye");
    await waitFor(() => front.group.servers[0]!.inFlight === 0, 5000, "the relay to end");
  });

  test("a close from the server reaches the client with its code and reason", async () => {
    using backend = startWsBackend("a");
    await using front = startProxyFront(upstreamSettings([backend.address]));
    const client = await connect(`ws://127.0.0.1:${front.port}/`);
    client.ws.send("close:4321");
    expect(await client.closed).toEqual({ code: 4321, reason: "asked to" });
    await waitFor(() => front.group.servers[0]!.inFlight === 0, 5000, "the relay to end");
  });

  test("a large binary stream both ways arrives intact (backpressure on both sides)", async () => {
    using backend = startWsBackend("a");
    await using front = startProxyFront(upstreamSettings([backend.address]));
    const client = await connect(`ws://127.0.0.1:${front.port}/`);
    await waitFor(() => client.messages.length === 1, 5000, "the greeting");
    const message = new Uint8Array(256 * 1024);
    for (let i = 0; i < message.length; i++) message[i] = i & 0xff;
    for (let i = 0; i < 64; i++) client.ws.send(message);
    await waitFor(() => client.messages.length === 65, 20_000, "64 echoes");
    for (const echoed of client.messages.slice(1)) expect(new Uint8Array(echoed as ArrayBuffer)).toEqual(message);
    client.ws.close();
  });

  test("a server that refuses the handshake or cannot be reached: the next one; none: 502", async () => {
    using backend = startWsBackend("b");
    const dead = `127.0.0.1:${closedPort()}`;
    await using front = startProxyFront(upstreamSettings([dead, backend.address], { max_fails: 0 }));
    for (let i = 0; i < 2; i++) {
      const client = await connect(`ws://127.0.0.1:${front.port}/`);
      await waitFor(() => client.messages.length === 1, 5000, "the greeting");
      expect(client.messages[0]).toBe("hello from b at /");
      client.ws.close();
    }
    const refused = await fetch(`${front.base}/refuse`, {
      headers: {
        Upgrade: "websocket",
        Connection: "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
      },
    });
    expect(refused.status).toBe(502);
  });
});
