// Headers across the proxy: the request head sent upstream (hop-by-hop fields removed, X-Forwarded-*, Via) and the
// response headers passed back to the client (RFC 9110 §7.6).

/** Via pseudonym added by hps in both directions (RFC 9110 §7.6.3). */
export const VIA = "1.1 hps";

/**
 * Fields that describe one connection, not the message, and never cross a proxy (RFC 9110 §7.6.1), plus the ones
 * hps answers itself: Expect (Bun answers 100-continue to the client; the body is then streamed upstream) and the
 * forwarding fields it writes anew. Lower case, as Bun's Headers iterate them.
 */
function isRequestHopField(name: string): boolean {
  switch (name) {
    case "connection":
    case "keep-alive":
    case "proxy-connection":
    case "te":
    case "trailer":
    case "transfer-encoding":
    case "upgrade":
    case "expect":
    case "content-length":
    case "x-forwarded-for":
    case "x-forwarded-proto":
    case "x-forwarded-host":
    case "via":
      return true;
    default:
      return false;
  }
}

/** What the proxy adds about the client and itself. */
export interface Forwarding {
  /** The socket peer: appended to X-Forwarded-For. */
  peerAddress: string;
  /** The peer is in net.trusted_proxies: its X-Forwarded-* are kept (extended), not replaced. */
  isTrustedPeer: boolean;
  /** "http" or "https": how the client reached hps. */
  scheme: string;
}

/** How the request body travels upstream. */
export const BodyFraming = { NONE: 0, LENGTH: 1, CHUNKED: 2 } as const;

/** Anything but printable ASCII, tab, CR and LF: header values are latin1 strings and may hold such bytes. */
const NON_ASCII = /[^\t\n\r -~]/;

/**
 * The request head for the upstream server: request line, the client's headers without hop-by-hop fields (and those
 * the Connection header names), Host as the client sent it, X-Forwarded-For/-Proto/-Host, Via, and the body's framing.
 * `upgrade` keeps Connection: upgrade and the Upgrade field (a WebSocket handshake). Returns a string when it is
 * ASCII (most heads), else its latin1 bytes (header values are latin1 strings in Bun, and must go out byte for byte).
 */
export function requestHead(
  method: string,
  target: string,
  headers: Headers,
  forwarding: Forwarding,
  framing: number,
  contentLength: number,
  upgrade: string | null,
): string | Uint8Array {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  const connection = headers.get("connection");
  const listed = connection === null ? null : connectionOptions(connection);
  for (const [name, value] of headers) {
    if (isRequestHopField(name) || listed?.includes(name)) continue;
    head += `${name}: ${value}\r\n`;
  }
  const trusted = forwarding.isTrustedPeer;
  const forwardedFor = trusted ? headers.get("x-forwarded-for") : null;
  head += `x-forwarded-for: ${forwardedFor === null ? forwarding.peerAddress : `${forwardedFor}, ${forwarding.peerAddress}`}\r\n`;
  const proto = trusted ? headers.get("x-forwarded-proto") : null;
  head += `x-forwarded-proto: ${proto ?? forwarding.scheme}\r\n`;
  const forwardedHost = (trusted ? headers.get("x-forwarded-host") : null) ?? headers.get("host");
  if (forwardedHost !== null) head += `x-forwarded-host: ${forwardedHost}\r\n`;
  const via = headers.get("via");
  head += `via: ${via === null ? VIA : `${via}, ${VIA}`}\r\n`;
  if (upgrade !== null) head += `connection: upgrade\r\nupgrade: ${upgrade}\r\n`;
  if (framing === BodyFraming.LENGTH) head += `content-length: ${contentLength}\r\n\r\n`;
  else if (framing === BodyFraming.CHUNKED) head += "transfer-encoding: chunked\r\n\r\n";
  else head += "\r\n";
  return NON_ASCII.test(head) ? Buffer.from(head, "latin1") : head;
}

/**
 * The response headers for the client from the parser's name/value list: hop-by-hop fields (and those Connection
 * names) left out, Via added. `keepLength`: Content-Length is passed on (a streamed body, or HEAD); otherwise Bun
 * sets it from the body it is given.
 */
export function responseHeaders(raw: readonly string[], keepLength: boolean): Headers {
  const headers = new Headers();
  let listed: string[] | null = null;
  let via: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 10 && name.toLowerCase() === "connection") listed = connectionOptions(raw[i + 1]!);
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    switch (lower) {
      case "connection":
      case "keep-alive":
      case "proxy-connection":
      case "te":
      case "trailer":
      case "transfer-encoding":
      case "upgrade":
        continue;
      case "content-length":
        if (!keepLength) continue;
        break;
      case "via":
        via = via === null ? raw[i + 1]! : `${via}, ${raw[i + 1]!}`;
        continue;
    }
    if (listed?.includes(lower)) continue;
    headers.append(name, raw[i + 1]!);
  }
  headers.set("via", via === null ? VIA : `${via}, ${VIA}`);
  return headers;
}

/** The field names a Connection header lists (lower case), e.g. "keep-alive, X-Trace" → ["keep-alive", "x-trace"]. */
export function connectionOptions(value: string): string[] {
  const names: string[] = [];
  for (const part of value.split(",")) {
    const name = part.trim().toLowerCase();
    if (name !== "") names.push(name);
  }
  return names;
}
