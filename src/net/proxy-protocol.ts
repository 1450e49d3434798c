// PROXY protocol v1 (text) and v2 (binary) header parser: the client address a trusted proxy passes on.
//
// Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt. The parser is incremental: given the
// bytes received so far it answers NEED_MORE while the header can still become valid, ERROR as soon as it
// cannot, or OK with the header's length (the application data starts right after it).
import { isAddress } from "./cidr.ts";

export const ProxyParse = { NEED_MORE: 0, OK: 1, ERROR: 2 } as const;

export interface ProxyHeader {
  /** ProxyParse.NEED_MORE, OK or ERROR. */
  readonly result: number;
  /** Bytes of the header (OK only); strip them before handing data to the protocol. */
  readonly headerBytes: number;
  /** Client address (OK only); null for v1 UNKNOWN, v2 LOCAL or a non-IP family: the socket peer stands. */
  readonly address: string | null;
  /** Client port (0 when address is null). */
  readonly port: number;
  /** Why the header was refused (ERROR only). */
  readonly reason: string;
}

/** The v1 header is at most 107 bytes, CRLF included. */
export const PROXY_V1_MAX_BYTES = 107;
/** v2 signature (12 bytes) + version/command, family/transport, 2-byte length. */
const V2_FIXED_BYTES = 16;
const V2_SIGNATURE = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = new Uint8Array([0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]); // "PROXY "
const CR = 0x0d;
const LF = 0x0a;

const NEED_MORE: ProxyHeader = { result: ProxyParse.NEED_MORE, headerBytes: 0, address: null, port: 0, reason: "" };

function error(reason: string): ProxyHeader {
  return { result: ProxyParse.ERROR, headerBytes: 0, address: null, port: 0, reason };
}

function ok(headerBytes: number, address: string | null, port: number): ProxyHeader {
  return { result: ProxyParse.OK, headerBytes, address, port, reason: "" };
}

/** True when bytes[0, n) equals prefix[0, n) for n = min of both lengths. */
function matchesPrefix(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Parses a PROXY v1 or v2 header at the start of `bytes` (everything received so far on the connection). */
export function parseProxyHeader(bytes: Uint8Array): ProxyHeader {
  if (bytes.length === 0) return NEED_MORE;
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes);
  if (bytes[0] === V1_PREFIX[0]) return parseV1(bytes);
  return error("no PROXY protocol header");
}

function parseV1(bytes: Uint8Array): ProxyHeader {
  if (!matchesPrefix(bytes, V1_PREFIX)) return error("malformed PROXY v1 header");
  const limit = Math.min(bytes.length, PROXY_V1_MAX_BYTES - 1); // the CR is at index 105 at most
  let lineEnd = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const byte = bytes[i]!;
    if (byte === LF) return error("PROXY v1 header line ends without CR");
    if (byte === CR) {
      if (i + 1 >= bytes.length) return NEED_MORE;
      if (bytes[i + 1] !== LF) return error("PROXY v1 header: CR without LF");
      lineEnd = i;
      break;
    }
    if (byte < 0x20 || byte > 0x7e) return error("PROXY v1 header has a non-printable byte");
  }
  if (lineEnd < 0)
    return bytes.length < PROXY_V1_MAX_BYTES - 1 ? NEED_MORE : error("PROXY v1 header longer than 107 bytes");
  const line = new TextDecoder().decode(bytes.subarray(0, lineEnd));
  const parts = line.split(" ");
  const headerBytes = lineEnd + 2;
  if (parts[1] === "UNKNOWN") return ok(headerBytes, null, 0);
  if (parts.length !== 6) return error("PROXY v1 header needs: PROXY TCP4|TCP6 src dst srcport dstport");
  const [, family, source, , sourcePort, destinationPort] = parts as [string, string, string, string, string, string];
  if (family === "TCP4") {
    if (!isIpv4Text(source)) return error("PROXY v1 TCP4 source is not an IPv4 address");
  } else if (family === "TCP6") {
    if (!isIpv6Text(source)) return error("PROXY v1 TCP6 source is not an IPv6 address");
  } else {
    return error("PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN");
  }
  const port = parsePort(sourcePort);
  if (port < 0 || parsePort(destinationPort) < 0) return error("PROXY v1 port must be 0-65535");
  return ok(headerBytes, family === "TCP6" ? source.toLowerCase() : source, port);
}

function parseV2(bytes: Uint8Array): ProxyHeader {
  if (!matchesPrefix(bytes, V2_SIGNATURE)) return error("malformed PROXY v2 signature");
  if (bytes.length < V2_FIXED_BYTES) return NEED_MORE;
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) return error("PROXY v2 header version must be 2");
  const command = versionCommand & 0x0f;
  if (command > 1) return error("PROXY v2 command must be LOCAL or PROXY");
  const family = bytes[13]! >> 4;
  const transport = bytes[13]! & 0x0f;
  const bodyBytes = (bytes[14]! << 8) | bytes[15]!;
  const headerBytes = V2_FIXED_BYTES + bodyBytes;
  if (family > 3 || transport > 2) return error("PROXY v2 family or transport unknown");
  const addressBytes = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0;
  if (bodyBytes < addressBytes) return error("PROXY v2 header too short for its address family");
  if (bytes.length < headerBytes) return NEED_MORE;
  // LOCAL (health checks from the proxy itself) and unspecified/unix families: keep the socket peer.
  if (command === 0 || family === 0 || family === 3) return ok(headerBytes, null, 0);
  const body = V2_FIXED_BYTES;
  if (family === 1) {
    const address = `${bytes[body]}.${bytes[body + 1]}.${bytes[body + 2]}.${bytes[body + 3]}`;
    return ok(headerBytes, address, (bytes[body + 8]! << 8) | bytes[body + 9]!);
  }
  return ok(headerBytes, formatIpv6(bytes, body), (bytes[body + 32]! << 8) | bytes[body + 33]!);
}

/** RFC 5952 text of the 16 bytes at `offset` (longest run of two or more zero groups as ::). */
export function formatIpv6(bytes: Uint8Array, offset: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(":");
  if (bestStart < 0) return hex(0, 8);
  // IPv4-mapped: show the dotted form Bun uses for such peers.
  if (bestStart === 0 && bestLength === 5 && groups[5] === 0xffff) {
    return `::ffff:${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  }
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

function isIpv4Text(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((part) => /^(0|[1-9]\d{0,2})$/.test(part) && Number(part) <= 255);
}

function isIpv6Text(text: string): boolean {
  return text.includes(":") && /^[0-9a-fA-F:.]+$/.test(text) && isAddress(text);
}

function parsePort(text: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return -1;
  const port = Number(text);
  return port <= 65535 ? port : -1;
}

/**
 * Per-connection reader for the PROXY header across TCP chunks. Feed each chunk to `push` until it answers
 * OK (then `rest` is the application data that came after the header, a view of the chunk or of the
 * reader's buffer) or ERROR (close the connection). Buffers at most one header (<= 16 + 65535 bytes).
 */
export class ProxyHeaderReader {
  private buffered: Uint8Array | null = null;
  /** Application bytes after the header once `push` answered OK; empty otherwise. */
  rest: Uint8Array = new Uint8Array(0);

  /**
   * `isStable`: the caller will not change `chunk` after this call, so an incomplete header is kept as a view of
   * it. Bun hands each socket data event a fresh chunk that nothing reuses (the listener passes true; echo.ts relies
   * on the same). Without it the reader copies what it keeps.
   */
  push(chunk: Uint8Array, isStable = false): ProxyHeader {
    let bytes = chunk;
    if (this.buffered !== null) {
      bytes = new Uint8Array(this.buffered.length + chunk.length);
      bytes.set(this.buffered);
      bytes.set(chunk, this.buffered.length);
    }
    const header = parseProxyHeader(bytes);
    if (header.result === ProxyParse.NEED_MORE) {
      // A concatenation is the reader's own already; a lone chunk is copied only when the caller may change it.
      this.buffered = bytes !== chunk || isStable ? bytes : chunk.slice();
    } else {
      this.buffered = null;
      if (header.result === ProxyParse.OK) this.rest = bytes.subarray(header.headerBytes);
    }
    return header;
  }
}
