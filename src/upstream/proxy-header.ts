// PROXY protocol v2 headers hps sends to an upstream server (proxy.send_proxy_protocol): who the client is.
// Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (section 2.2). src/net/proxy-protocol.ts reads them.
import { type AddressWords, parseAddressInto } from "../net/cidr.ts";

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const VERSION_2_PROXY = 0x21;
const VERSION_2_LOCAL = 0x20;
const TCP_OVER_IPV4 = 0x11;
const TCP_OVER_IPV6 = 0x21;

const sourceWords = new Int32Array(4) as AddressWords;
const destinationWords = new Int32Array(4) as AddressWords;

/**
 * The v2 header for a TCP connection from source:sourcePort that reached hps at destination:destinationPort.
 * IPv4 (or IPv4-mapped) on both ends gives the IPv4 form, otherwise IPv6 (a v4 end mapped to ::ffff:a.b.c.d). An
 * address that does not parse gives a LOCAL header (the server then uses the connection's own addresses).
 */
export function proxyV2Header(
  source: string,
  sourcePort: number,
  destination: string,
  destinationPort: number,
): Uint8Array {
  if (!parseAddressInto(source, sourceWords) || !parseAddressInto(destination, destinationWords)) {
    return Uint8Array.from([...SIGNATURE, VERSION_2_LOCAL, 0x00, 0x00, 0x00]);
  }
  const isV4 = isMappedV4(sourceWords) && isMappedV4(destinationWords);
  const addressBytes = isV4 ? 12 : 36;
  const header = new Uint8Array(16 + addressBytes);
  header.set(SIGNATURE);
  header[12] = VERSION_2_PROXY;
  header[13] = isV4 ? TCP_OVER_IPV4 : TCP_OVER_IPV6;
  header[14] = 0;
  header[15] = addressBytes;
  const view = new DataView(header.buffer);
  if (isV4) {
    view.setInt32(16, sourceWords[3]!);
    view.setInt32(20, destinationWords[3]!);
    view.setUint16(24, sourcePort);
    view.setUint16(26, destinationPort);
  } else {
    for (let i = 0; i < 4; i++) {
      view.setInt32(16 + 4 * i, sourceWords[i]!);
      view.setInt32(32 + 4 * i, destinationWords[i]!);
    }
    view.setUint16(48, sourcePort);
    view.setUint16(50, destinationPort);
  }
  return header;
}

function isMappedV4(words: AddressWords): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}
