// Answers an HTTP request from an upstream group (a route with `upstream`): an ordinary request is proxied, a WebSocket
// upgrade is relayed; what happened is left in a ProxyOutcome for the handler's counters and access log.
import type { Server } from "bun";
import type { UpstreamGroup } from "../upstream/group.ts";
import { type ClientSide, proxyExchange } from "../upstream/http-proxy.ts";
import { isWebSocketUpgrade, WebSocketRelay } from "../upstream/websocket.ts";
import { errorResponse } from "./status.ts";

/** What the handler logs and counts for a proxied request. */
export interface ProxyOutcome {
  /** The status answered: the server's, 101 for a relayed WebSocket, or hps's own 502/503/504 (413 for a body too long). */
  status: number;
  /** Response body bytes known when the response started (the server's Content-Length, or what had arrived). */
  bodyBytes: number;
  /** The server that answered last ("-" when none was tried). */
  upstreamAddress: string;
  /** Milliseconds until the response head arrived (or hps answered). */
  upstreamMs: number;
  /** The request was upgraded to a WebSocket: Bun answers it, there is no Response to finish. */
  isUpgraded: boolean;
}

export function emptyOutcome(): ProxyOutcome {
  return { status: 0, bodyBytes: 0, upstreamAddress: "-", upstreamMs: 0, isUpgraded: false };
}

/**
 * Proxies `request` to `group` with `target` as its request target. Resolves with the Response for Bun.serve, or
 * undefined when the connection was upgraded to a relayed WebSocket. Never rejects for an upstream failure.
 */
export async function answerFromUpstream(
  group: UpstreamGroup,
  request: Request,
  server: Server<unknown>,
  target: string,
  client: ClientSide,
  startedMs: number,
  outcome: ProxyOutcome,
): Promise<Response | undefined> {
  if (isWebSocketUpgrade(request)) return upgrade(group, request, server, target, client, startedMs, outcome);
  const exchange = proxyExchange(group, request, target, client, startedMs);
  const response = await exchange.run();
  outcome.status = exchange.status;
  outcome.bodyBytes = exchange.bodyBytes;
  outcome.upstreamAddress = exchange.server?.address ?? "-";
  outcome.upstreamMs = exchange.headerMs;
  return response;
}

async function upgrade(
  group: UpstreamGroup,
  request: Request,
  server: Server<unknown>,
  target: string,
  client: ClientSide,
  startedMs: number,
  outcome: ProxyOutcome,
): Promise<Response | undefined> {
  const relay = await WebSocketRelay.open(group, request, target, client, client.clientAddress);
  outcome.upstreamMs = performance.now() - startedMs;
  if (typeof relay === "number") {
    outcome.status = relay;
    return errorResponse(relay, relay === 503 ? { "Retry-After": "1" } : undefined);
  }
  outcome.upstreamAddress = relay.server.address;
  const headers = relay.protocol === "" ? undefined : { "Sec-WebSocket-Protocol": relay.protocol };
  if ((server as Server<WebSocketRelay>).upgrade(request, { data: relay, headers })) {
    outcome.status = 101;
    outcome.isUpgraded = true;
    return undefined;
  }
  // Bun refused the client's handshake (a malformed key or version): the server side is closed again.
  relay.abandon();
  outcome.status = 400;
  return errorResponse(400);
}
