// CIDR and address parsing/matching for IPv4, IPv6 and IPv4-mapped IPv6.
import { describe, expect, test } from "bun:test";
import { CidrList, isAddress, parseAddressInto, parseCidr, unmapIpv4 } from "../../src/net/cidr.ts";

function words(text: string): number[] | null {
  const out = new Int32Array(4);
  return parseAddressInto(text, out) ? Array.from(out, (w) => w >>> 0) : null;
}

describe("address parsing", () => {
  test("IPv4 becomes the IPv4-mapped words", () => {
    expect(words("1.2.3.4")).toEqual([0, 0, 0xffff, 0x01020304]);
    expect(words("255.255.255.255")).toEqual([0, 0, 0xffff, 0xffffffff]);
    expect(words("::ffff:1.2.3.4")).toEqual(words("1.2.3.4"));
    expect(words("::ffff:102:304")).toEqual(words("1.2.3.4"));
  });

  test("IPv6 forms: full, compressed at start/middle/end, zone id", () => {
    expect(words("2001:db8:0:0:0:0:0:1")).toEqual([0x20010db8, 0, 0, 1]);
    expect(words("2001:db8::1")).toEqual([0x20010db8, 0, 0, 1]);
    expect(words("::")).toEqual([0, 0, 0, 0]);
    expect(words("::1")).toEqual([0, 0, 0, 1]);
    expect(words("fe80::")).toEqual([0xfe800000, 0, 0, 0]);
    expect(words("FE80::1%eth0")).toEqual([0xfe800000, 0, 0, 1]);
    expect(words("1:2:3:4:5:6:7:8")).toEqual([0x00010002, 0x00030004, 0x00050006, 0x00070008]);
    expect(words("1::8")).toEqual([0x00010000, 0, 0, 8]);
  });

  test("malformed addresses are refused", () => {
    for (const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "1.2.3.-4",
      "1..2.3",
      "01234.1.1.1",
      "a.b.c.d",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      ":1",
      "1:",
      "1:::2",
      "12345::1",
      "g::1",
      "1:2:3:4:5:6:7:1.2.3.4",
      "::1.2.3",
      "1.2.3.4 ",
    ]) {
      expect([bad, isAddress(bad)]).toEqual([bad, false]);
    }
  });

  test("parses a range of a longer string", () => {
    const out = new Int32Array(4);
    expect(parseAddressInto("x=10.0.0.1;", out, 2, 10)).toBe(true);
    expect(out[3]! >>> 0).toBe(0x0a000001);
  });
});

describe("CIDR", () => {
  test("IPv4 prefixes", () => {
    const list = new CidrList(["10.0.0.0/8", "192.168.1.0/24", "203.0.113.7"]);
    expect(list.contains("10.255.1.2")).toBe(true);
    expect(list.contains("11.0.0.0")).toBe(false);
    expect(list.contains("192.168.1.200")).toBe(true);
    expect(list.contains("192.168.2.1")).toBe(false);
    expect(list.contains("203.0.113.7")).toBe(true);
    expect(list.contains("203.0.113.8")).toBe(false);
    expect(list.contains("::ffff:10.1.1.1")).toBe(true);
    expect(list.contains("not an address")).toBe(false);
  });

  test("IPv6 prefixes, including odd lengths and /0", () => {
    const list = new CidrList(["2001:db8::/33", "fe80::/10"]);
    expect(list.contains("2001:db8:7fff::1")).toBe(true);
    expect(list.contains("2001:db8:8000::1")).toBe(false);
    expect(list.contains("febf::1")).toBe(true);
    expect(list.contains("fec0::1")).toBe(false);
    expect(new CidrList(["::/0"]).contains("1.2.3.4")).toBe(true);
    expect(new CidrList(["0.0.0.0/0"]).contains("1.2.3.4")).toBe(true);
    expect(new CidrList(["0.0.0.0/0"]).contains("2001:db8::1")).toBe(false);
  });

  test("host bits are cleared; prefix lengths are checked", () => {
    expect(new CidrList(["10.1.2.3/8"]).contains("10.9.9.9")).toBe(true);
    expect(parseCidr("10.0.0.0/33")).toBeNull();
    expect(parseCidr("::/129")).toBeNull();
    expect(parseCidr("10.0.0.0/x")).toBeNull();
    expect(parseCidr("10.0.0/8")).toBeNull();
    expect(parseCidr("10.0.0.0/8")!.prefixBits).toBe(104);
    expect(() => new CidrList(["10.0.0.0/8", "bogus"])).toThrow(/bogus/);
  });

  test("an empty list contains nothing", () => {
    expect(new CidrList([]).contains("1.2.3.4")).toBe(false);
  });

  test("unmapIpv4 strips only the IPv4-mapped prefix", () => {
    expect(unmapIpv4("::ffff:1.2.3.4")).toBe("1.2.3.4");
    expect(unmapIpv4("::ffff:102:304")).toBe("::ffff:102:304");
    expect(unmapIpv4("1.2.3.4")).toBe("1.2.3.4");
    expect(unmapIpv4("::1")).toBe("::1");
  });
});
