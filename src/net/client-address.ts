// The client's address for HTTP: the socket peer, or X-Forwarded-For when (and only as far as) proxies are trusted.
import { type CidrList, parseAddressInto, unmapIpv4 } from "./cidr.ts";

const SPACE = 32;
const TAB = 9;
const OPEN_BRACKET = 91;

const scratchWords = new Int32Array(4);

/**
 * The address X-Forwarded-For names as the client, walking from the right (the hop nearest to us):
 * trusted proxies are skipped; the first untrusted address is the client. When every hop is trusted the
 * left-most is the client. An entry that is not an address stops the walk: the hop to its right, which
 * appended it, is the client (its claim cannot be believed). Entries may be "1.2.3.4", "1.2.3.4:port",
 * "2001:db8::1" or "[2001:db8::1]:port".
 *
 * Only call this when the socket peer itself is a trusted proxy. Returns `peer` when nothing usable is found.
 */
export function forwardedClient(peer: string, forwardedFor: string, trusted: CidrList): string {
  let end = forwardedFor.length;
  let client = peer;
  while (end > 0) {
    const comma = forwardedFor.lastIndexOf(",", end - 1);
    let start = comma + 1;
    let stop = end;
    while (start < stop && isBlank(forwardedFor.charCodeAt(start))) start++;
    while (stop > start && isBlank(forwardedFor.charCodeAt(stop - 1))) stop--;
    end = Math.max(comma, 0);
    if (start === stop) continue; // "a,,b": empty entries are skipped
    // Strip [v6]:port or v4:port.
    if (forwardedFor.charCodeAt(start) === OPEN_BRACKET) {
      const close = forwardedFor.indexOf("]", start);
      if (close < 0 || close >= stop) return client;
      start++;
      stop = close;
    } else {
      stop = withoutIpv4Port(forwardedFor, start, stop);
    }
    if (!parseAddressInto(forwardedFor, scratchWords, start, stop)) return client;
    client = unmapIpv4(forwardedFor.slice(start, stop));
    if (!trusted.containsWords(scratchWords)) return client;
  }
  return client;
}

/** For "1.2.3.4:5678" in text[start, stop) returns the end of the address; otherwise `stop`. */
function withoutIpv4Port(text: string, start: number, stop: number): number {
  const colon = text.indexOf(":", start);
  if (colon < 0 || colon >= stop) return stop;
  const secondColon = text.indexOf(":", colon + 1);
  if (secondColon >= 0 && secondColon < stop) return stop; // IPv6
  const dot = text.indexOf(".", start);
  return dot >= 0 && dot < colon ? colon : stop;
}

function isBlank(code: number): boolean {
  return code === SPACE || code === TAB;
}
