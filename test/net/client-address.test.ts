// X-Forwarded-For walking: right-most untrusted hop, entry forms, malformed entries.
import { describe, expect, test } from "bun:test";
import { CidrList } from "../../src/net/cidr.ts";
import { forwardedClient } from "../../src/net/client-address.ts";

const trusted = new CidrList(["10.0.0.0/8", "fd00::/8"]);

describe("forwardedClient", () => {
  test("the right-most address that is not a trusted proxy", () => {
    expect(forwardedClient("10.0.0.1", "203.0.113.5", trusted)).toBe("203.0.113.5");
    expect(forwardedClient("10.0.0.1", "198.51.100.9, 203.0.113.5", trusted)).toBe("203.0.113.5");
    expect(forwardedClient("10.0.0.1", "198.51.100.9,203.0.113.5, 10.1.1.1 ,10.2.2.2", trusted)).toBe("203.0.113.5");
  });

  test("a client cannot spoof past the first untrusted hop", () => {
    // The client sent "X-Forwarded-For: 10.9.9.9" hoping to look trusted; our proxy appended its real address.
    expect(forwardedClient("10.0.0.1", "1.1.1.1, 10.9.9.9, 198.51.100.9", trusted)).toBe("198.51.100.9");
  });

  test("all hops trusted: the left-most", () => {
    expect(forwardedClient("10.0.0.1", "10.3.3.3, 10.2.2.2", trusted)).toBe("10.3.3.3");
  });

  test("entry forms: ports, brackets, IPv6, IPv4-mapped, blanks and empty entries", () => {
    expect(forwardedClient("10.0.0.1", "203.0.113.5:4711", trusted)).toBe("203.0.113.5");
    expect(forwardedClient("10.0.0.1", "[2001:db8::7]:443", trusted)).toBe("2001:db8::7");
    expect(forwardedClient("10.0.0.1", "2001:db8::7", trusted)).toBe("2001:db8::7");
    expect(forwardedClient("10.0.0.1", "::ffff:203.0.113.5", trusted)).toBe("203.0.113.5");
    expect(forwardedClient("10.0.0.1", " 203.0.113.5 ,, \t", trusted)).toBe("203.0.113.5");
    expect(forwardedClient("10.0.0.1", "203.0.113.5, fd00::3", trusted)).toBe("203.0.113.5");
  });

  test("a malformed entry stops the walk at the hop that appended it", () => {
    expect(forwardedClient("10.0.0.1", "garbage", trusted)).toBe("10.0.0.1");
    expect(forwardedClient("10.0.0.1", "203.0.113.5, garbage, 10.2.2.2", trusted)).toBe("10.2.2.2");
    expect(forwardedClient("10.0.0.1", "[2001:db8::7", trusted)).toBe("10.0.0.1");
    expect(forwardedClient("10.0.0.1", "", trusted)).toBe("10.0.0.1");
  });
});
