// PROXY protocol v1/v2 parsing: addresses, header length, incremental input, malformed headers.
import { describe, expect, test } from "bun:test";
import { formatIpv6, parseProxyHeader, ProxyHeaderReader, ProxyParse } from "../../src/net/proxy-protocol.ts";

const text = (s: string) => new TextEncoder().encode(s);
const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

function v2(command: number, familyTransport: number, body: number[]): Uint8Array {
  return new Uint8Array([...SIGNATURE, 0x20 | command, familyTransport, body.length >> 8, body.length & 0xff, ...body]);
}

const V4_BODY = [192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50]; // 192.0.2.7:8080 -> 10.0.0.1:80
const V6_BODY = [
  0x20,
  0x01,
  0x0d,
  0xb8,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0x05,
  ...new Array(16).fill(0),
  0x30,
  0x39,
  0x00,
  0x50,
];

describe("v1", () => {
  test("TCP4 and TCP6: address, port and header length; data after it is left alone", () => {
    const header = "PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n";
    const result = parseProxyHeader(text(`${header}GET / HTTP/1.1\r\n`));
    expect(result).toMatchObject({
      result: ProxyParse.OK,
      address: "192.0.2.7",
      port: 56324,
      headerBytes: header.length,
    });
    const six = parseProxyHeader(text("PROXY TCP6 2001:DB8::5 2001:db8::1 1 2\r\n"));
    expect(six).toMatchObject({ result: ProxyParse.OK, address: "2001:db8::5", port: 1 });
  });

  test("UNKNOWN keeps the socket peer", () => {
    const result = parseProxyHeader(text("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"));
    expect(result).toMatchObject({ result: ProxyParse.OK, address: null, headerBytes: 35 });
    expect(parseProxyHeader(text("PROXY UNKNOWN\r\n"))).toMatchObject({
      result: ProxyParse.OK,
      address: null,
      headerBytes: 15,
    });
  });

  test("every strict prefix of a valid header needs more bytes", () => {
    const bytes = text("PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n");
    for (let n = 1; n < bytes.length; n++)
      expect([n, parseProxyHeader(bytes.subarray(0, n)).result]).toEqual([n, ProxyParse.NEED_MORE]);
    expect(parseProxyHeader(bytes).result).toBe(ProxyParse.OK);
  });

  test("malformed headers are errors", () => {
    for (const bad of [
      "PROXX TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
      "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
      "PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n",
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n",
      "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
      "PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
      "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX",
      "GET / HTTP/1.1\r\n",
      `PROXY TCP4 ${"1".repeat(120)}`,
    ]) {
      expect([bad, parseProxyHeader(text(bad)).result]).toEqual([bad, ProxyParse.ERROR]);
    }
  });
});

describe("v2", () => {
  test("PROXY TCP4 and TCP6 with the header length including TLVs", () => {
    const four = parseProxyHeader(v2(1, 0x11, V4_BODY));
    expect(four).toMatchObject({ result: ProxyParse.OK, address: "192.0.2.7", port: 8080, headerBytes: 28 });
    const six = parseProxyHeader(v2(1, 0x21, [...V6_BODY, 0x04, 0x00, 0x01, 0xaa])); // plus a 4-byte TLV
    expect(six).toMatchObject({ result: ProxyParse.OK, address: "2001:db8::5", port: 12345, headerBytes: 16 + 36 + 4 });
  });

  test("LOCAL and unspecified families keep the socket peer", () => {
    expect(parseProxyHeader(v2(0, 0x11, V4_BODY))).toMatchObject({
      result: ProxyParse.OK,
      address: null,
      headerBytes: 28,
    });
    expect(parseProxyHeader(v2(1, 0x00, []))).toMatchObject({ result: ProxyParse.OK, address: null, headerBytes: 16 });
  });

  test("every strict prefix needs more bytes", () => {
    const bytes = v2(1, 0x11, V4_BODY);
    for (let n = 1; n < bytes.length; n++)
      expect([n, parseProxyHeader(bytes.subarray(0, n)).result]).toEqual([n, ProxyParse.NEED_MORE]);
  });

  test("malformed headers are errors as soon as they are seen", () => {
    const badSignature = v2(1, 0x11, V4_BODY);
    badSignature[7] = 0x52;
    expect(parseProxyHeader(badSignature.subarray(0, 8)).result).toBe(ProxyParse.ERROR);
    const badVersion = v2(1, 0x11, V4_BODY);
    badVersion[12] = 0x11;
    expect(parseProxyHeader(badVersion).result).toBe(ProxyParse.ERROR);
    expect(parseProxyHeader(v2(2, 0x11, V4_BODY)).result).toBe(ProxyParse.ERROR); // command 2
    expect(parseProxyHeader(v2(1, 0x41, V4_BODY)).result).toBe(ProxyParse.ERROR); // family 4
    expect(parseProxyHeader(v2(1, 0x21, V4_BODY)).result).toBe(ProxyParse.ERROR); // TCP6 with a 12-byte body
  });
});

test("formatIpv6 compresses the longest zero run and shows IPv4-mapped dotted", () => {
  const bytes = (groups: number[]) => new Uint8Array(groups.flatMap((g) => [g >> 8, g & 0xff]));
  expect(formatIpv6(bytes([0x2001, 0xdb8, 0, 0, 1, 0, 0, 0]), 0)).toBe("2001:db8:0:0:1::");
  expect(formatIpv6(bytes([0, 0, 0, 0, 0, 0, 0, 1]), 0)).toBe("::1");
  expect(formatIpv6(bytes([1, 0, 2, 3, 4, 5, 6, 7]), 0)).toBe("1:0:2:3:4:5:6:7");
  expect(formatIpv6(bytes([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]), 0)).toBe("::ffff:1.2.3.4");
});

describe("ProxyHeaderReader", () => {
  test("a header split over many chunks, application data after it kept", () => {
    const all = new Uint8Array([...text("PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"), ...text("hello")]);
    const reader = new ProxyHeaderReader();
    let result = ProxyParse.NEED_MORE as number;
    let offset = 0;
    let last = parseProxyHeader(new Uint8Array(0));
    while (result === ProxyParse.NEED_MORE && offset < all.length) {
      const chunk = all.slice(offset, offset + 3); // a fresh buffer per chunk, like the socket gives
      offset += 3;
      last = reader.push(chunk);
      chunk.fill(0); // the socket may reuse its buffer after the callback
      result = last.result;
    }
    expect(last).toMatchObject({ result: ProxyParse.OK, address: "192.0.2.7", port: 56324 });
    const restAndUnread = new Uint8Array([...reader.rest, ...all.subarray(offset)]);
    expect(new TextDecoder().decode(restAndUnread)).toBe("hello");
  });

  test("a whole v2 header in one chunk with data", () => {
    const reader = new ProxyHeaderReader();
    const header = v2(1, 0x11, V4_BODY);
    const result = reader.push(new Uint8Array([...header, 1, 2, 3]));
    expect(result).toMatchObject({ result: ProxyParse.OK, address: "192.0.2.7" });
    expect([...reader.rest]).toEqual([1, 2, 3]);
  });

  test("garbage is an error at once", () => {
    expect(new ProxyHeaderReader().push(text("GET / HTTP/1.1\r\n")).result).toBe(ProxyParse.ERROR);
  });
});
