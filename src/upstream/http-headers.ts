// Headers across the proxy: the request head sent upstream (hop-by-hop fields removed, X-Forwarded-*, Via) and the
// response headers passed back to the client (RFC 9110 §7.6).
import { equalsIgnoringCase } from "./ascii.ts";

/** Via pseudonym added by hps in both directions (RFC 9110 §7.6.3). */
export const VIA = "1.1 hps";

/** What one pass over the client's headers collects (module-level and reused: heads are built one at a time). */
const scan = {
  head: "",
  connection: null as string | null,
  host: null as string | null,
  forwardedFor: null as string | null,
  forwardedProto: null as string | null,
  forwardedHost: null as string | null,
  via: null as string | null,
  /** The peer is a trusted proxy: its claims about the client (Forwarded, X-Real-IP) are passed on. */
  isTrustedPeer: false,
  /** Extra fields the Connection header names (rare): left out on a second pass. */
  listed: null as string[] | null,
};

/**
 * Adds one client field to the head, unless it describes one connection and never crosses a proxy (RFC 9110
 * §7.6.1), or hps writes it itself: Expect (Bun answers 100-continue to the client; the body is then streamed
 * upstream), the body's framing, and the forwarding fields, which are kept aside. Names are lower case, as Bun's
 * Headers give them.
 */
function addField(value: string, name: string): void {
  switch (name) {
    case "connection":
      scan.connection = value;
      return;
    case "keep-alive":
    case "proxy-connection":
    case "te":
    case "trailer":
    case "transfer-encoding":
    case "upgrade":
    case "expect":
    case "content-length":
      return;
    case "x-forwarded-for":
      scan.forwardedFor = value;
      return;
    case "x-forwarded-proto":
      scan.forwardedProto = value;
      return;
    case "x-forwarded-host":
      scan.forwardedHost = value;
      return;
    case "via":
      scan.via = value;
      return;
    case "forwarded":
    case "x-real-ip":
      if (!scan.isTrustedPeer) return; // see isClientClaim
      break;
    case "host":
      scan.host = value;
      break;
  }
  if (scan.listed?.includes(name)) return;
  scan.head += `${name}: ${value}\r\n`;
}

/**
 * Fields other than X-Forwarded-* in which a proxy names the client (RFC 7239's Forwarded; X-Real-IP, nginx's habit):
 * a client could forge them, so they pass only from a trusted proxy (net.trusted_proxies), as X-Forwarded-* do.
 */
export function isClientClaim(name: string): boolean {
  return name === "forwarded" || name === "x-real-ip";
}

/** Connection options that are not extra fields to remove (or are removed anyway). */
function isPlainOption(token: string): boolean {
  return token === "keep-alive" || token === "close" || token === "upgrade";
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
 * the Connection header names), Host as the client sent it (`hostWhenNone` for an HTTP/1.0 client that sent none: the
 * head is HTTP/1.1, which must have one), X-Forwarded-For/-Proto/-Host, Via, and the body's framing. `upgrade` keeps Connection: upgrade and the Upgrade field (a WebSocket handshake). Returns a string when it is
 * ASCII (most heads), else its latin1 bytes (header values are latin1 strings in Bun, and must go out byte for byte).
 * One pass over the client's headers: the forwarding fields are picked up on the way, not looked up again.
 */
export function requestHead(
  method: string,
  target: string,
  headers: Headers,
  forwarding: Forwarding,
  framing: number,
  contentLength: number,
  upgrade: string | null,
  hostWhenNone: string,
): string | Uint8Array {
  const requestLine = `${method} ${target} HTTP/1.1\r\n`;
  scan.head = requestLine;
  scan.connection = null;
  scan.host = null;
  scan.forwardedFor = null;
  scan.forwardedProto = null;
  scan.forwardedHost = null;
  scan.via = null;
  scan.isTrustedPeer = forwarding.isTrustedPeer;
  scan.listed = null;
  headers.forEach(addField);
  if (scan.connection !== null) {
    const listed = connectionOptions(scan.connection).filter((token) => !isPlainOption(token));
    if (listed.length > 0) {
      // The client named fields of its own connection: a second pass leaves them out.
      scan.listed = listed;
      scan.head = requestLine;
      headers.forEach(addField);
      scan.listed = null;
    }
  }
  let head = scan.head;
  scan.head = "";
  if (scan.host === null) head += `host: ${hostWhenNone}\r\n`;
  const trusted = forwarding.isTrustedPeer;
  const forwardedFor = trusted ? scan.forwardedFor : null;
  head += `x-forwarded-for: ${forwardedFor === null ? forwarding.peerAddress : `${forwardedFor}, ${forwarding.peerAddress}`}\r\n`;
  const proto = trusted ? scan.forwardedProto : null;
  head += `x-forwarded-proto: ${proto ?? forwarding.scheme}\r\n`;
  const forwardedHost = (trusted ? scan.forwardedHost : null) ?? scan.host;
  if (forwardedHost !== null) head += `x-forwarded-host: ${forwardedHost}\r\n`;
  head += `via: ${scan.via === null ? VIA : `${scan.via}, ${VIA}`}\r\n`;
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
    if (!equalsIgnoringCase(name, "connection")) continue;
    const value = raw[i + 1]!;
    // The usual value names no other field (keep-alive is removed anyway): no list to build.
    if (!equalsIgnoringCase(value, "keep-alive")) listed = connectionOptions(value);
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Only names as long as a field handled here are compared at all.
    switch (name.length) {
      case 2:
        if (equalsIgnoringCase(name, "te")) continue;
        break;
      case 3:
        if (equalsIgnoringCase(name, "via")) {
          via = via === null ? raw[i + 1]! : `${via}, ${raw[i + 1]!}`;
          continue;
        }
        break;
      case 7:
        if (equalsIgnoringCase(name, "trailer") || equalsIgnoringCase(name, "upgrade")) continue;
        break;
      case 10:
        if (equalsIgnoringCase(name, "connection") || equalsIgnoringCase(name, "keep-alive")) continue;
        break;
      case 14:
        if (!keepLength && equalsIgnoringCase(name, "content-length")) continue;
        break;
      case 16:
        if (equalsIgnoringCase(name, "proxy-connection")) continue;
        break;
      case 17:
        if (equalsIgnoringCase(name, "transfer-encoding")) continue;
        break;
    }
    if (listed?.includes(name.toLowerCase())) continue; // (no lower-casing unless Connection named fields)
    headers.append(name, raw[i + 1]!);
  }
  headers.append("via", via === null ? VIA : `${via}, ${VIA}`); // (the server's Via was held back above)
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
