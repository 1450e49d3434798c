// WebSocket pass-through: an Upgrade request to a proxied route opens a WebSocket to the chosen server first; once that
// server has accepted, the client's connection is upgraded and messages are relayed both ways with backpressure.
//
// Bun.serve hands a route no raw socket for an upgraded connection, only a ServerWebSocket, so the relay works
// message by message (each hop negotiates its own extensions); the subprotocol the server chose is passed on.
import type { ServerWebSocket, WebSocketHandler } from "bun";
import type { UpstreamGroup } from "./group.ts";
import { type Forwarding, isClientClaim, VIA } from "./http-headers.ts";
import type { UpstreamServer } from "./server.ts";
import { Field } from "./stats.ts";

/** Bytes the server-side socket may hold unsent before the client's reads are paused. */
const UPSTREAM_HIGH_WATER_BYTES = 1024 * 1024;
/** How often a paused client is resumed once the server side has drained (the client WebSocket has no drain event). */
const DRAIN_POLL_MS = 5;
const EMPTY: readonly UpstreamServer[] = [];

/** Whether a request asks to become a WebSocket (RFC 6455 §4.1: GET with Upgrade: websocket). */
export function isWebSocketUpgrade(request: Request): boolean {
  if (request.method !== "GET") return false;
  const upgrade = request.headers.get("upgrade");
  return upgrade !== null && upgrade.toLowerCase() === "websocket";
}

/** Fields the WebSocket client writes itself, or that belong to one hop. */
function isHandshakeField(name: string): boolean {
  switch (name) {
    case "connection":
    case "upgrade":
    case "keep-alive":
    case "proxy-connection":
    case "te":
    case "trailer":
    case "transfer-encoding":
    case "sec-websocket-key":
    case "sec-websocket-version":
    case "sec-websocket-extensions":
    case "sec-websocket-protocol":
    case "host":
    case "x-forwarded-for":
    case "x-forwarded-proto":
    case "x-forwarded-host":
    case "via":
      return true;
    default:
      return false;
  }
}

/** One relayed WebSocket: the client's side (after the upgrade) and the server's. */
export class WebSocketRelay {
  readonly group: UpstreamGroup;
  readonly server: UpstreamServer;
  private readonly statsSlot: number;
  private readonly upstream: WebSocket;
  private client: ServerWebSocket<WebSocketRelay> | null = null;
  /** Server messages that arrived before the client's upgrade completed. */
  private early: (string | ArrayBuffer)[] = [];
  private drainTimer: ReturnType<typeof setInterval> | null = null;
  private isClosed = false;
  /** The subprotocol the server chose ("" when none). */
  readonly protocol: string;

  private constructor(group: UpstreamGroup, server: UpstreamServer, slot: number, upstream: WebSocket) {
    this.group = group;
    this.server = server;
    this.statsSlot = slot;
    this.upstream = upstream;
    this.protocol = upstream.protocol;
    upstream.binaryType = "arraybuffer";
    upstream.onmessage = (event) => this.fromServer(event.data as string | ArrayBuffer);
    upstream.onclose = (event) => this.serverClosed(event.code, event.reason);
  }

  /**
   * Opens the server side: picks a server and completes the WebSocket handshake with it (another server on failure,
   * up to `retries`). Resolves with the relay, or with the status hps answers (502: no server accepted; 503: none
   * available).
   */
  static async open(
    group: UpstreamGroup,
    request: Request,
    target: string,
    forwarding: Forwarding,
    clientKey: string,
  ): Promise<WebSocketRelay | number> {
    let exclude = EMPTY;
    let retriesLeft = group.settings.retries;
    const headers = handshakeHeaders(request.headers, forwarding);
    const offered = request.headers.get("sec-websocket-protocol");
    const protocols = offered === null ? [] : offered.split(",").map((name) => name.trim());
    for (;;) {
      const server = group.pick(clientKey, exclude);
      if (server === null) {
        if (exclude.length === 0) {
          group.stats.add(group.noServerSlot, Field.answered503, 1);
          return 503;
        }
        return 502;
      }
      const slot = group.member(server).statsSlot;
      server.inFlight += 1;
      const host = server.host.includes(":") ? `[${server.host}]` : server.host;
      const upstream = await handshake(
        `ws://${host}:${server.port}${target}`,
        headers,
        protocols,
        group.settings.connect_timeout_s * 1000,
      );
      if (upstream !== null) {
        group.stats.response(slot, 101, -1);
        server.health.succeeded(performance.now());
        return new WebSocketRelay(group, server, slot, upstream);
      }
      group.stats.add(slot, Field.connectFailures, 1);
      group.serverFailed(server, slot);
      group.finished(server);
      if (retriesLeft === 0) {
        group.stats.add(slot, Field.answered502, 1);
        return 502;
      }
      retriesLeft -= 1;
      group.stats.add(slot, Field.retries, 1);
      exclude = [...exclude, server];
    }
  }

  /** The client's upgrade did not happen (Bun refused it): the server side is closed. */
  abandon(): void {
    this.finish();
    this.upstream.close(1001, "client upgrade failed");
  }

  // Client side (ServerWebSocket events, see WEBSOCKET_RELAY).

  clientOpened(client: ServerWebSocket<WebSocketRelay>): void {
    this.client = client;
    client.binaryType = "arraybuffer";
    const early = this.early;
    this.early = [];
    for (const message of early) this.fromServer(message);
    if (this.isClosed) client.close(1001, "server went away");
  }

  fromClient(message: string | ArrayBuffer | Uint8Array): void {
    const upstream = this.upstream;
    if (upstream.readyState !== WebSocket.OPEN) return;
    upstream.send(message);
    if (upstream.bufferedAmount > UPSTREAM_HIGH_WATER_BYTES && this.drainTimer === null) {
      this.client?.pause();
      this.drainTimer = setInterval(() => {
        if (upstream.bufferedAmount > UPSTREAM_HIGH_WATER_BYTES / 2 && upstream.readyState === WebSocket.OPEN) return;
        this.stopDrainTimer();
        this.client?.resume();
      }, DRAIN_POLL_MS);
    }
  }

  clientDrained(): void {
    this.upstream.resume();
  }

  clientClosed(code: number, reason: string): void {
    this.client = null;
    if (this.isClosed) return;
    this.finish();
    if (this.upstream.readyState === WebSocket.OPEN || this.upstream.readyState === WebSocket.CONNECTING) {
      if (isSendableCode(code)) this.upstream.close(code, reason);
      else this.upstream.close(1000);
    }
  }

  // Server side.

  private fromServer(message: string | ArrayBuffer): void {
    const client = this.client;
    if (client === null) {
      this.early.push(message);
      return;
    }
    // -1: queued behind earlier messages (backpressure); the drain event resumes the server side.
    if (client.send(message) === -1) this.upstream.pause();
  }

  private serverClosed(code: number, reason: string): void {
    if (this.isClosed) return;
    this.finish();
    const client = this.client;
    if (client === null) return; // clientOpened closes it
    if (isSendableCode(code)) client.close(code, reason);
    else if (code === 1006)
      client.terminate(); // no close frame from the server: none to the client either
    else client.close(1000);
  }

  private finish(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopDrainTimer();
    this.group.finished(this.server);
  }

  private stopDrainTimer(): void {
    if (this.drainTimer !== null) clearInterval(this.drainTimer);
    this.drainTimer = null;
  }
}

/** Completes a WebSocket handshake within `timeoutMs`: the open socket, or null (refused, rejected, timed out). */
function handshake(
  url: string,
  headers: [string, string][],
  protocols: string[],
  timeoutMs: number,
): Promise<WebSocket | null> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { headers, protocols });
    const timer = setTimeout(() => {
      socket.onopen = null;
      socket.onclose = null;
      socket.close();
      resolve(null);
    }, timeoutMs);
    socket.onopen = () => {
      clearTimeout(timer);
      socket.onopen = null;
      socket.onclose = null;
      resolve(socket);
    };
    socket.onclose = () => {
      clearTimeout(timer);
      resolve(null);
    };
    socket.onerror = () => {}; // the close event follows
  });
}

/** The client's handshake headers for the server: end-to-end fields, Host as sent, X-Forwarded-*, Via. */
function handshakeHeaders(incoming: Headers, forwarding: Forwarding): [string, string][] {
  const headers: [string, string][] = [];
  const trusted = forwarding.isTrustedPeer;
  for (const [name, value] of incoming) {
    if (!isHandshakeField(name) && (trusted || !isClientClaim(name))) headers.push([name, value]);
  }
  const host = incoming.get("host");
  if (host !== null) headers.push(["host", host]);
  const forwardedFor = trusted ? incoming.get("x-forwarded-for") : null;
  headers.push([
    "x-forwarded-for",
    forwardedFor === null ? forwarding.peerAddress : `${forwardedFor}, ${forwarding.peerAddress}`,
  ]);
  headers.push(["x-forwarded-proto", (trusted ? incoming.get("x-forwarded-proto") : null) ?? forwarding.scheme]);
  const forwardedHost = (trusted ? incoming.get("x-forwarded-host") : null) ?? host;
  if (forwardedHost !== null) headers.push(["x-forwarded-host", forwardedHost]);
  const via = incoming.get("via");
  headers.push(["via", via === null ? VIA : `${via}, ${VIA}`]);
  return headers;
}

/** Close codes an endpoint may send (RFC 6455 §7.4): not 1005, 1006, 1015 or reserved ones. */
function isSendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/** Bun.serve's `websocket` handlers for relayed connections (ws.data is the relay). */
export const WEBSOCKET_RELAY: WebSocketHandler<WebSocketRelay> = {
  open: (ws) => ws.data.clientOpened(ws),
  message: (ws, message) => ws.data.fromClient(message),
  drain: (ws) => ws.data.clientDrained(),
  close: (ws, code, reason) => ws.data.clientClosed(code, reason),
};
