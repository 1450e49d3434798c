// IPv4/IPv6 address and CIDR parsing, and allocation-free matching of an address against a CIDR list.
//
// Every address is held as four 32-bit words of an IPv6 address; an IPv4 address a.b.c.d is stored as its
// IPv4-mapped form ::ffff:a.b.c.d and an IPv4 CIDR /n as the mapped /96+n. So "::ffff:1.2.3.4" (what Bun
// reports for IPv4 peers on dual-stack sockets) and "1.2.3.4" are the same address and match the same CIDRs.

/** Words of an address: [0] = bits 127..96, ..., [3] = bits 31..0 (Int32 so `a & m` compares without conversion). */
export type AddressWords = Int32Array;

const COLON = 58;
const DOT = 46;
const _PERCENT = 37;

// Scratch for the 16-bit groups of an IPv6 address while it is parsed (one parse at a time: JS is single-threaded).
const groupScratch = new Uint16Array(8);

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  const lower = code | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/** Parses dotted IPv4 in text[start, end); returns the 32-bit value (unsigned) or -1. */
function parseIpv4(text: string, start: number, end: number): number {
  let value = 0;
  let octets = 0;
  let i = start;
  while (octets < 4) {
    let octet = 0;
    let digits = 0;
    while (i < end) {
      const code = text.charCodeAt(i);
      if (code < 48 || code > 57) break;
      octet = octet * 10 + (code - 48);
      digits++;
      i++;
    }
    if (digits === 0 || digits > 3 || octet > 255) return -1;
    value = value * 256 + octet;
    octets++;
    if (octets === 4) break;
    if (i >= end || text.charCodeAt(i) !== DOT) return -1;
    i++;
  }
  return i === end ? value : -1;
}

/** Parses IPv6 in text[start, end) into groupScratch (8 groups); a "%zone" suffix is ignored. */
function parseIpv6Groups(text: string, start: number, end: number): boolean {
  const percent = text.indexOf("%", start);
  if (percent >= 0 && percent < end) end = percent;
  const groups = groupScratch;
  let count = 0;
  let gapAt = -1;
  let i = start;
  if (end - start >= 2 && text.charCodeAt(i) === COLON) {
    if (text.charCodeAt(i + 1) !== COLON) return false;
    gapAt = 0;
    i += 2;
  }
  while (i < end) {
    let value = 0;
    let digits = 0;
    let j = i;
    while (j < end) {
      const digit = hexValue(text.charCodeAt(j));
      if (digit < 0) break;
      value = value * 16 + digit;
      digits++;
      j++;
    }
    if (j < end && text.charCodeAt(j) === DOT) {
      // Embedded IPv4 in the last 32 bits (::ffff:1.2.3.4).
      if (count > 6) return false;
      const v4 = parseIpv4(text, i, end);
      if (v4 < 0) return false;
      groups[count++] = v4 >>> 16;
      groups[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (digits === 0 || digits > 4 || count === 8) return false;
    groups[count++] = value;
    if (j === end) {
      i = end;
      break;
    }
    if (text.charCodeAt(j) !== COLON) return false;
    j++;
    if (j < end && text.charCodeAt(j) === COLON) {
      if (gapAt >= 0) return false;
      gapAt = count;
      j++;
    } else if (j === end) {
      return false; // a trailing single colon
    }
    i = j;
  }
  if (gapAt < 0) return count === 8;
  if (count > 7) return false;
  // Move the groups after the gap to the end and zero the gap.
  const after = count - gapAt;
  for (let k = 0; k < after; k++) groups[7 - k] = groups[count - 1 - k]!;
  for (let k = gapAt; k < 8 - after; k++) groups[k] = 0;
  return true;
}

/**
 * Parses an IPv4 or IPv6 address in text[start, end) into `out` (four words, IPv4 as ::ffff:a.b.c.d).
 * Allocates nothing. Returns false when the text is not an address.
 */
export function parseAddressInto(text: string, out: AddressWords, start = 0, end = text.length): boolean {
  if (end <= start) return false;
  const colon = text.indexOf(":", start);
  if (colon < 0 || colon >= end) {
    const v4 = parseIpv4(text, start, end);
    if (v4 < 0) return false;
    out[0] = 0;
    out[1] = 0;
    out[2] = 0xffff;
    out[3] = v4 | 0;
    return true;
  }
  if (!parseIpv6Groups(text, start, end)) return false;
  const groups = groupScratch;
  for (let k = 0; k < 4; k++) out[k] = (groups[2 * k]! << 16) | groups[2 * k + 1]!;
  return true;
}

/** True when the text is an IPv4 or IPv6 address. */
export function isAddress(text: string): boolean {
  return parseAddressInto(text, matchScratch);
}

/** One parsed CIDR: network words (host bits cleared) and mask words. */
export interface Cidr {
  readonly network: AddressWords;
  readonly mask: AddressWords;
  /** Prefix length in the 128-bit space (an IPv4 /n is 96 + n). */
  readonly prefixBits: number;
}

/** Parses "10.0.0.0/8", "fd00::/8" or a plain address (a /32 or /128); null when malformed. */
export function parseCidr(text: string): Cidr | null {
  const trimmed = text.trim();
  const slash = trimmed.indexOf("/");
  const addressEnd = slash < 0 ? trimmed.length : slash;
  const network = new Int32Array(4);
  if (!parseAddressInto(trimmed, network, 0, addressEnd)) return null;
  const isV4 = trimmed.indexOf(":") < 0;
  const maxBits = isV4 ? 32 : 128;
  let bits = maxBits;
  if (slash >= 0) {
    const bitsText = trimmed.slice(slash + 1);
    if (!/^\d{1,3}$/.test(bitsText)) return null;
    bits = Number(bitsText);
    if (bits > maxBits) return null;
  }
  const prefixBits = isV4 ? 96 + bits : bits;
  const mask = new Int32Array(4);
  for (let k = 0; k < 4; k++) {
    const wordBits = Math.max(0, Math.min(32, prefixBits - 32 * k));
    mask[k] = wordBits === 0 ? 0 : (0xffffffff << (32 - wordBits)) | 0;
    network[k] = network[k]! & mask[k]!;
  }
  return { network, mask, prefixBits };
}

// Scratch for matching: a parsed address lives here only during one call.
const matchScratch: AddressWords = new Int32Array(4);

/** A fixed list of CIDRs; `contains` parses the address into scratch words and compares, allocating nothing. */
export class CidrList {
  /** Number of CIDRs in the list. */
  readonly size: number;
  private readonly networks: Int32Array;
  private readonly masks: Int32Array;

  /** Throws on a malformed entry, naming it (the config schema has already shape-checked the list). */
  constructor(texts: readonly string[]) {
    this.size = texts.length;
    this.networks = new Int32Array(texts.length * 4);
    this.masks = new Int32Array(texts.length * 4);
    texts.forEach((text, index) => {
      const cidr = parseCidr(text);
      if (cidr === null) throw new Error(`not an IPv4 or IPv6 address or CIDR: ${JSON.stringify(text)}`);
      this.networks.set(cidr.network, index * 4);
      this.masks.set(cidr.mask, index * 4);
    });
  }

  /** True when the address text[start, end) is valid and inside one of the CIDRs. */
  contains(text: string, start = 0, end = text.length): boolean {
    if (this.size === 0) return false;
    if (!parseAddressInto(text, matchScratch, start, end)) return false;
    return this.containsWords(matchScratch);
  }

  /** True when the parsed address is inside one of the CIDRs. */
  containsWords(words: AddressWords): boolean {
    const networks = this.networks;
    const masks = this.masks;
    const w0 = words[0]!;
    const w1 = words[1]!;
    const w2 = words[2]!;
    const w3 = words[3]!;
    for (let base = 0; base < networks.length; base += 4) {
      if (
        (w3 & masks[base + 3]!) === networks[base + 3] &&
        (w2 & masks[base + 2]!) === networks[base + 2] &&
        (w1 & masks[base + 1]!) === networks[base + 1] &&
        (w0 & masks[base]!) === networks[base]
      ) {
        return true;
      }
    }
    return false;
  }
}

/** "::ffff:1.2.3.4" -> "1.2.3.4"; any other text is returned as it is. */
export function unmapIpv4(address: string): string {
  if (
    address.length > 7 &&
    address.charCodeAt(0) === COLON &&
    address.startsWith("::ffff:") &&
    address.indexOf(".", 7) > 0
  ) {
    return address.slice(7);
  }
  return address;
}
