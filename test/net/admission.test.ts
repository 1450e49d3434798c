// Admission: allow/deny, connection limits, rate limit, client address, counters and the gauge.
import { describe, expect, test } from "bun:test";
import type { GaugeRegistry } from "../../src/context.ts";
import { Admission, Refusal, retryAfterSeconds } from "../../src/net/admission.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { testConfig } from "../helpers/common.ts";
import type { ConfigOverrides } from "../../src/config/schema.ts";

function admission(overrides: ConfigOverrides = {}, gauges?: GaugeRegistry) {
  const stats = Stats.create();
  return { stats, admission: new Admission(testConfig(overrides), stats, gauges) };
}

describe("connection limits", () => {
  test("max_connections refuses past the total and counts it; release makes room", () => {
    const { stats, admission: a } = admission({ limits: { max_connections: 3, max_connections_per_ip: 3 } });
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.2")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.3")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.4")).toBe(Refusal.MAX_CONNECTIONS);
    expect(stats.total(Counter.connectionsRefused)).toBe(1);
    expect(stats.total(Counter.refusedMaxConnections)).toBe(1);
    expect(stats.total(Counter.refusedPerIp)).toBe(0);
    expect(a.openConnections).toBe(3);
    a.releaseConnection("10.0.0.2");
    expect(a.admitConnection("10.0.0.4")).toBe(Refusal.NONE);
    expect(a.openConnections).toBe(3);
  });

  test("max_connections_per_ip refuses one address while others are admitted", () => {
    const { stats, admission: a } = admission({ limits: { max_connections: 100, max_connections_per_ip: 2 } });
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.PER_IP);
    expect(a.admitConnection("10.0.0.2")).toBe(Refusal.NONE);
    expect(stats.total(Counter.connectionsRefused)).toBe(1);
    expect(stats.total(Counter.refusedPerIp)).toBe(1);
    expect(a.openFrom("10.0.0.1")).toBe(2);
    a.releaseConnection("10.0.0.1");
    expect(a.openFrom("10.0.0.1")).toBe(1);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
  });

  test("a refused admission is not counted as open, and a stray release changes nothing", () => {
    const { admission: a } = admission({ limits: { max_connections: 1, max_connections_per_ip: 1 } });
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.MAX_CONNECTIONS);
    a.releaseConnection("10.9.9.9");
    expect(a.openConnections).toBe(1);
    a.releaseConnection("10.0.0.1");
    a.releaseConnection("10.0.0.1");
    expect(a.openConnections).toBe(0);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
  });
});

describe("allow and deny lists", () => {
  test("deny refuses at once and is checked before allow", () => {
    const { stats, admission: a } = admission({
      net: { deny: ["10.0.0.0/8"], allow: ["10.1.0.0/16", "192.168.0.0/16"] },
    });
    expect(a.admitConnection("10.1.2.3")).toBe(Refusal.DENIED);
    expect(a.admitConnection("192.168.1.1")).toBe(Refusal.NONE);
    expect(a.admitConnection("172.16.0.1")).toBe(Refusal.DENIED); // not in allow
    expect(stats.total(Counter.refusedDenied)).toBe(2);
    expect(stats.total(Counter.connectionsRefused)).toBe(2);
    expect(a.openConnections).toBe(1);
  });

  test("IPv4-mapped IPv6 peers match IPv4 CIDRs; IPv6 CIDRs match IPv6 peers", () => {
    const { admission: a } = admission({ net: { deny: ["203.0.113.0/24", "2001:db8::/32"] } });
    expect(a.admitConnection("::ffff:203.0.113.9")).toBe(Refusal.DENIED);
    expect(a.admitConnection("2001:db8:1::5")).toBe(Refusal.DENIED);
    expect(a.admitConnection("2001:db9::5")).toBe(Refusal.NONE);
    expect(a.admitConnection("::ffff:198.51.100.1")).toBe(Refusal.NONE);
  });

  test("with an allow list, a peer that is not an address (unix socket) is refused", () => {
    const { admission: a } = admission({ net: { allow: ["127.0.0.1"] } });
    expect(a.isAllowed("")).toBe(false);
    expect(a.isAllowed("127.0.0.1")).toBe(true);
    expect(a.isAllowed("::ffff:127.0.0.1")).toBe(true);
    expect(a.isAllowed("127.0.0.2")).toBe(false);
  });

  test("decisions stay right past the decision cache's capacity (cleared and refilled)", () => {
    const { admission: a } = admission({ net: { deny: ["10.0.0.0/9"] } });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 10_000; i++) {
        const ip = `10.${i & 255}.${i >> 8}.1`;
        expect(a.isAllowed(ip)).toBe((i & 255) >= 128);
      }
    }
  });

  test("empty lists allow everyone", () => {
    const { admission: a } = admission();
    expect(a.isAllowed("anything")).toBe(true);
    expect(a.admitConnection("::1")).toBe(Refusal.NONE);
  });
});

describe("rate limit", () => {
  test("disabled: every token is granted and nothing is tracked", () => {
    const gauges: GaugeRegistry = new Map();
    const { stats, admission: a } = admission({}, gauges);
    for (let i = 0; i < 1000; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(stats.total(Counter.rateLimited)).toBe(0);
    expect(gauges.get("rateLimiter")!()).toEqual({ trackedIps: 0 });
    expect(a.rateLimitHeaders("10.0.0.1", 0)).toEqual({ limit: 0, remaining: 0, resetSeconds: 0 });
  });

  test("burst = requests by default; over it the wait until the next token is returned and counted", () => {
    const { stats, admission: a } = admission({ rate_limit: { enabled: true, requests: 10, window_s: 1 } });
    const now = 1_000_000;
    for (let i = 0; i < 10; i++) expect(a.takeToken("10.0.0.1", now)).toBe(0);
    expect(a.takeToken("10.0.0.1", now)).toBe(100); // one token per 100 ms
    expect(a.takeToken("10.0.0.1", now + 40)).toBe(60);
    expect(stats.total(Counter.rateLimited)).toBe(2);
    expect(a.takeToken("10.0.0.1", now + 100)).toBe(0);
    expect(a.takeToken("10.0.0.2", now)).toBe(0); // another address has its own bucket
  });

  test("burst sets the bucket size separately from the sustained rate", () => {
    const { admission: a } = admission({ rate_limit: { enabled: true, requests: 2, window_s: 1, burst: 5 } });
    for (let i = 0; i < 5; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.takeToken("10.0.0.1", 0)).toBe(500);
    expect(a.takeToken("10.0.0.1", 500)).toBe(0);
    expect(a.takeToken("10.0.0.1", 500)).toBe(500);
  });

  test("headers: limit, remaining and seconds until the bucket is full", () => {
    const { admission: a } = admission({ rate_limit: { enabled: true, requests: 4, window_s: 2, headers: true } });
    expect(a.rateLimitHeadersEnabled).toBe(true);
    expect({ ...a.rateLimitHeaders("10.0.0.1", 0) }).toEqual({ limit: 4, remaining: 4, resetSeconds: 0 });
    a.takeToken("10.0.0.1", 0);
    expect({ ...a.rateLimitHeaders("10.0.0.1", 0) }).toEqual({ limit: 4, remaining: 3, resetSeconds: 1 });
    a.takeToken("10.0.0.1", 0);
    a.takeToken("10.0.0.1", 0);
    a.takeToken("10.0.0.1", 0);
    expect({ ...a.rateLimitHeaders("10.0.0.1", 0) }).toEqual({ limit: 4, remaining: 0, resetSeconds: 2 });
    expect({ ...a.rateLimitHeaders("10.0.0.1", 600) }).toEqual({ limit: 4, remaining: 1, resetSeconds: 2 });
    expect({ ...a.rateLimitHeaders("10.0.0.1", 2000) }).toEqual({ limit: 4, remaining: 4, resetSeconds: 0 });
  });

  test("the tracked-IP table is bounded and reported in the rateLimiter gauge", () => {
    const gauges: GaugeRegistry = new Map();
    const { admission: a } = admission(
      { rate_limit: { enabled: true, requests: 1, window_s: 60, max_tracked_ips: 50 } },
      gauges,
    );
    for (let i = 0; i < 5000; i++) a.takeToken(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(a.trackedIps).toBe(50);
    expect(gauges.get("rateLimiter")!()).toEqual({ trackedIps: 50 });
  });

  test("retryAfterSeconds rounds up and is at least 1", () => {
    expect(retryAfterSeconds(1)).toBe(1);
    expect(retryAfterSeconds(1000)).toBe(1);
    expect(retryAfterSeconds(1001)).toBe(2);
    expect(retryAfterSeconds(59_500)).toBe(60);
  });
});

describe("client address", () => {
  test("X-Forwarded-For from an untrusted peer is ignored", () => {
    const { admission: a } = admission({ net: { trusted_proxies: ["10.0.0.0/8"] } });
    expect(a.clientAddress("192.0.2.7", "1.2.3.4")).toBe("192.0.2.7");
    expect(a.clientAddress("::ffff:192.0.2.7", "1.2.3.4")).toBe("192.0.2.7");
  });

  test("no trusted proxies: the peer, whatever the header says", () => {
    const { admission: a } = admission();
    expect(a.clientAddress("10.0.0.1", "1.2.3.4")).toBe("10.0.0.1");
    expect(a.clientAddress("::1", null)).toBe("::1");
  });

  test("from a trusted proxy: the right-most untrusted hop", () => {
    const { admission: a } = admission({ net: { trusted_proxies: ["10.0.0.0/8", "fd00::/8"] } });
    expect(a.clientAddress("::ffff:10.0.0.1", "198.51.100.1, 203.0.113.5, 10.2.2.2")).toBe("203.0.113.5");
    expect(a.clientAddress("10.0.0.1", null)).toBe("10.0.0.1");
    expect(a.clientAddress("fd00::1", "2001:db8::1")).toBe("2001:db8::1");
  });

  test("trusted peer flags", () => {
    const { admission: a } = admission({ net: { trusted_proxies: ["127.0.0.1"], proxy_protocol: true } });
    expect(a.isTrustedProxy("::ffff:127.0.0.1")).toBe(true);
    expect(a.expectsProxyHeader("127.0.0.1")).toBe(true);
    expect(a.expectsProxyHeader("127.0.0.2")).toBe(false);
    const { admission: off } = admission({ net: { trusted_proxies: ["127.0.0.1"] } });
    expect(off.expectsProxyHeader("127.0.0.1")).toBe(false);
  });
});
