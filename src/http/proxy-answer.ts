// A WebSocket upgrade on a route with `upstream`: the server's handshake first, then the client's upgrade (Bun
// answers it); what happened is left in a WebSocketOutcome for the handler's counters and access log. Ordinary
// requests go through a ProxyExchange the handler owns (src/upstream/http-exchange.ts).
import type { Server } from "bun";
import type { UpstreamGroup } from "../upstream/group.ts";
import type { ClientSide } from "../upstream/http-proxy.ts";
import { WebSocketRelay } from "../upstream/websocket.ts";
import { errorResponse } from "./status.ts";

/** What the handler logs and counts for an upgrade. */
export interface WebSocketOutcome {
  /** 101 (upgraded), or the status hps answered (502, 503; 400 when Bun refused the client's handshake). */
  status: number;
  /** The server that accepted (or "-"). */
  upstreamAddress: string;
  /** Milliseconds until the server's handshake was done (or hps answered). */
  upstreamMs: number;
}

/**
 * Relays a WebSocket upgrade of `request` to `group`. Resolves with undefined once the client's connection is
 * upgraded (Bun.serve takes that as answered), or with hps's answer when no server accepted. Never rejects for an
 * upstream failure.
 */
export async function answerWebSocket(
  group: UpstreamGroup,
  request: Request,
  server: Server<unknown>,
  target: string,
  client: ClientSide,
  startedMs: number,
  outcome: WebSocketOutcome,
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
    return undefined;
  }
  // Bun refused the client's handshake (a malformed key or version): the server side is closed again.
  relay.abandon();
  outcome.status = 400;
  return errorResponse(400);
}
