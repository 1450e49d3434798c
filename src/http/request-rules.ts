// What a request says about itself: its target, its Host, its method's standing, whether it asks to close, its size.

/**
 * Index of the request target's path in Bun's request.url, -1 when it has none. The URL is absolute
 * ("http://host/path?query") when the request names a host, but only the target ("/path?query") when its Host is
 * empty or absent (HTTP/1.0), both of which are served.
 */
export function pathStartOf(url: string): number {
  if (url.charCodeAt(0) === 47 /* / */) return 0;
  return url.indexOf("/", 8); // after "http://" or "https://" and at least one host character
}

/** Whether a request's Connection header carries the `close` option (RFC 9112 §9.6; a token list, any case). */
export function asksToClose(connection: string | null): boolean {
  if (connection === null) return false;
  if (connection.length === 5) return connection.toLowerCase() === "close";
  return /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}

/** 1 for each byte of a reg-name, or inside an IP literal's brackets with `:` (RFC 3986: unreserved, sub-delims, %). */
const HOST_NAME_BYTES = new Uint8Array(128);
for (const char of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=") {
  HOST_NAME_BYTES[char.charCodeAt(0)] = 1;
}
const COLON = 58;
const OPEN_BRACKET = 91;

/** Whether a character code may appear in a reg-name (or, with `:`, inside an IP literal's brackets). */
function isHostNameByte(code: number): boolean {
  return code < 128 && HOST_NAME_BYTES[code] === 1;
}

/**
 * Whether a Host field value is one uri-host [":" port] (RFC 9112 §3.2, RFC 3986 §3.2.2): a reg-name or an IP
 * literal in brackets, then optionally a colon and digits. Bun 1.4.5 joins repeated Host lines into one value with
 * ", ", and a space is never valid, so two Host lines fail here too. A missing Host (HTTP/1.0; Bun itself answers
 * 400 to an HTTP/1.1 request without one) and an empty one are valid.
 */
export function isValidHost(host: string | null): boolean {
  if (host === null) return true;
  const length = host.length;
  let at = 0;
  if (length > 0 && host.charCodeAt(0) === OPEN_BRACKET) {
    const close = host.indexOf("]");
    if (close < 2) return false;
    for (at = 1; at < close; at++) {
      const code = host.charCodeAt(at);
      if (code !== COLON && !isHostNameByte(code)) return false;
    }
    at = close + 1;
  } else {
    for (; at < length; at++) {
      const code = host.charCodeAt(at);
      if (code === COLON) break;
      if (!isHostNameByte(code)) return false;
    }
    if (at === 0 && length > 0) return false; // a port without a host
  }
  if (at === length) return true;
  if (host.charCodeAt(at) !== COLON) return false;
  for (at++; at < length; at++) {
    const code = host.charCodeAt(at);
    if (code < 48 || code > 57) return false;
  }
  return true;
}

/** How hps treats a request method that reaches it. */
export const MethodKind = {
  /** GET, HEAD, OPTIONS: answered. */
  served: 0,
  /** Defined by RFC 9110 (or PATCH, RFC 5789) but not allowed on static files: 405 with Allow. */
  notAllowed: 1,
  /** Any other method Bun lets through (WebDAV's PROPFIND, PURGE, …): 501 Not Implemented (RFC 9110 §9.1). */
  notImplemented: 2,
} as const;

const NOT_ALLOWED = new Set(["POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"]);

export function methodKind(method: string): number {
  if (method === "GET" || method === "HEAD" || method === "OPTIONS") return MethodKind.served;
  return NOT_ALLOWED.has(method) ? MethodKind.notAllowed : MethodKind.notImplemented;
}

/** Bytes of "HTTP/1.1" + CRLF + the two spaces of a request line. */
const REQUEST_LINE_FIXED_BYTES = 12;
/** Bytes of "Host: " + CRLF. */
const HOST_LINE_FIXED_BYTES = 8;
/** The shortest header field line: a one-character name, a colon and CRLF. */
const SHORTEST_FIELD_LINE_BYTES = 4;
/** The empty line that ends the header section. */
const HEADER_END_BYTES = 2;

/**
 * A lower bound for the bytes of a request's head, without reading every header (Bun gives no byte count): the
 * request line (exact when `targetBytes` is the whole target), the Host line exactly, 4 bytes for every other field
 * (the shortest one possible) and the closing empty line. `host` is the Host value (null when absent), `fieldCount`
 * the number of header fields Bun reports.
 */
export function requestHeadBytesLowerBound(
  method: string,
  targetBytes: number,
  host: string | null,
  fieldCount: number,
): number {
  const hostLineBytes = host === null ? 0 : host.length + HOST_LINE_FIXED_BYTES;
  const otherFields = Math.max(0, fieldCount - (host === null ? 0 : 1));
  return (
    method.length +
    targetBytes +
    REQUEST_LINE_FIXED_BYTES +
    hostLineBytes +
    otherFields * SHORTEST_FIELD_LINE_BYTES +
    HEADER_END_BYTES
  );
}
