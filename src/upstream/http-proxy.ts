// The HTTP reverse proxy's entry: a request Bun.serve received, turned into an exchange with an upstream group.
import { declaredBodyBytes } from "../http/request-body.ts";
import type { UpstreamGroup } from "./group.ts";
import { ProxyExchange, type OutgoingRequest } from "./http-exchange.ts";
import { BodyFraming, type Forwarding, requestHead } from "./http-headers.ts";

/** Request bodies up to this size are read before the first attempt (so a failed attempt can be retried). */
export const BUFFERED_BODY_MAX_BYTES = 64 * 1024;

/** What the proxy knows about the client besides the request. */
export interface ClientSide extends Forwarding {
  /** The client's address as the edge determined it (ip_hash's key). */
  clientAddress: string;
  /** limits.max_request_bytes: a longer streamed body is cut off with 413. */
  maxRequestBytes: number;
}

/** RFC 9110 §9.2.2: methods a retry cannot turn into a second effect. */
function isIdempotent(method: string): boolean {
  switch (method) {
    case "GET":
    case "HEAD":
    case "OPTIONS":
    case "TRACE":
    case "PUT":
    case "DELETE":
      return true;
    default:
      return false;
  }
}

/**
 * Prepares the exchange for `request` to `group`, with `target` (path and query) as the request target; run() it for
 * the Response. A Content-Length over limits.max_request_bytes is refused before this (by the edge).
 */
export function proxyExchange(
  group: UpstreamGroup,
  request: Request,
  target: string,
  client: ClientSide,
  startedMs: number,
): ProxyExchange {
  const method = request.method;
  const headers = request.headers;
  const stream = request.body;
  let framing: number = BodyFraming.NONE;
  let contentLength = 0;
  let body: OutgoingRequest["body"] = null;
  let isChunked = false;
  if (stream !== null) {
    const lengthText = headers.get("content-length");
    if (lengthText !== null) {
      framing = BodyFraming.LENGTH;
      contentLength = declaredBodyBytes(lengthText);
      if (contentLength > 0) body = contentLength <= BUFFERED_BODY_MAX_BYTES ? request.bytes() : stream;
    } else {
      framing = BodyFraming.CHUNKED;
      isChunked = true;
      body = stream;
    }
  } else if (headers.get("content-length") === "0") {
    framing = BodyFraming.LENGTH;
  }
  const outgoing: OutgoingRequest = {
    head: requestHead(method, target, headers, client, framing, contentLength, null, group.settings.name),
    body,
    isChunked,
    isIdempotent: isIdempotent(method),
    isHead: method === "HEAD",
    clientKey: client.clientAddress,
    maxBodyBytes: client.maxRequestBytes,
    client: request,
  };
  return new ProxyExchange(group, outgoing, startedMs);
}
