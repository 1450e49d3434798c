// Admission.reconfigure: lists, limits, rate limiter and PROXY flag follow a reloaded config; what is counted stays.
import { describe, expect, test } from "bun:test";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import type { GaugeRegistry } from "../../src/context.ts";
import { HpsClient } from "../../src/client/hps-client.ts";
import { Logger } from "../../src/log.ts";
import { Admission, Refusal } from "../../src/net/admission.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { FrameStatus, Opcode } from "../../src/tcp/frame.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { testConfig } from "../helpers/common.ts";

function admission(overrides: ConfigOverrides = {}, gauges?: GaugeRegistry) {
  const stats = Stats.create();
  return { stats, admission: new Admission(testConfig(overrides), stats, gauges) };
}

describe("access lists", () => {
  test("a deny list added by reconfigure refuses an address admitted before; removing it admits again", () => {
    // A deny list from the start, so the decision for 10.0.0.1 is cached and must be forgotten.
    const { stats, admission: a } = admission({ net: { deny: ["172.16.0.0/12"] } });
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.isAllowed("10.0.0.1")).toBe(true);
    a.reconfigure(testConfig({ net: { deny: ["10.0.0.0/8"] } }));
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.DENIED);
    expect(a.admitRequest("10.0.0.1")).toBe(Refusal.DENIED);
    expect(a.admitConnection("192.0.2.1")).toBe(Refusal.NONE);
    expect(stats.total(Counter.refusedDenied)).toBe(2);
    // The connection admitted before the deny stays counted and is released normally.
    expect(a.openFrom("10.0.0.1")).toBe(1);
    a.releaseConnection("10.0.0.1");
    expect(a.openFrom("10.0.0.1")).toBe(0);
    a.reconfigure(testConfig());
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.admitRequest("10.0.0.1")).toBe(Refusal.NONE);
  });

  test("an allow list replaces the previous one, decisions cached under the old list included", () => {
    const { admission: a } = admission({ net: { allow: ["10.0.0.0/8"] } });
    expect(a.isAllowed("10.0.0.1")).toBe(true);
    expect(a.isAllowed("192.0.2.1")).toBe(false);
    a.reconfigure(testConfig({ net: { allow: ["192.0.2.0/24"] } }));
    expect(a.isAllowed("10.0.0.1")).toBe(false);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.DENIED);
    expect(a.isAllowed("192.0.2.1")).toBe(true);
    expect(a.admitConnection("192.0.2.1")).toBe(Refusal.NONE);
    a.reconfigure(testConfig());
    expect(a.isAllowed("10.0.0.1")).toBe(true);
  });

  test("trusted proxies change which peer's X-Forwarded-For is believed", () => {
    const { admission: a } = admission({ net: { trusted_proxies: ["172.16.0.0/12"] } });
    expect(a.clientAddress("10.0.0.1", "203.0.113.5")).toBe("10.0.0.1");
    a.reconfigure(testConfig({ net: { trusted_proxies: ["10.0.0.0/8"] } }));
    expect(a.isTrustedProxy("10.0.0.1")).toBe(true);
    expect(a.clientAddress("10.0.0.1", "203.0.113.5")).toBe("203.0.113.5");
    a.reconfigure(testConfig({ net: { trusted_proxies: ["172.16.0.0/12"] } }));
    expect(a.isTrustedProxy("10.0.0.1")).toBe(false);
    expect(a.clientAddress("10.0.0.1", "203.0.113.5")).toBe("10.0.0.1");
    expect(a.clientAddress("172.16.0.1", "203.0.113.5")).toBe("203.0.113.5");
  });

  test("net.proxy_protocol follows the new config", () => {
    const trusted = { trusted_proxies: ["10.0.0.0/8"] };
    const { admission: a } = admission({ net: trusted });
    expect(a.proxyProtocol).toBe(false);
    expect(a.expectsProxyHeader("10.0.0.1")).toBe(false);
    a.reconfigure(testConfig({ net: { ...trusted, proxy_protocol: true } }));
    expect(a.proxyProtocol).toBe(true);
    expect(a.expectsProxyHeader("10.0.0.1")).toBe(true);
    expect(a.expectsProxyHeader("192.0.2.1")).toBe(false);
    a.reconfigure(testConfig({ net: trusted }));
    expect(a.expectsProxyHeader("10.0.0.1")).toBe(false);
  });
});

describe("connection limits", () => {
  test("max_connections lowered below the count refuses newcomers until enough leave; counts never go negative", () => {
    const { stats, admission: a } = admission({ limits: { max_connections: 10 } });
    for (let i = 1; i <= 4; i++) expect(a.admitConnection(`10.0.0.${i}`)).toBe(Refusal.NONE);
    a.reconfigure(testConfig({ limits: { max_connections: 2 } }));
    expect(a.openConnections).toBe(4);
    expect(a.admitConnection("10.0.0.9")).toBe(Refusal.MAX_CONNECTIONS);
    expect(stats.total(Counter.refusedMaxConnections)).toBe(1);
    expect(stats.total(Counter.connectionsRefused)).toBe(1);
    a.releaseConnection("10.0.0.1");
    a.releaseConnection("10.0.0.2");
    expect(a.openConnections).toBe(2);
    expect(a.admitConnection("10.0.0.9")).toBe(Refusal.MAX_CONNECTIONS);
    a.releaseConnection("10.0.0.3");
    expect(a.admitConnection("10.0.0.9")).toBe(Refusal.NONE);
    expect(a.openConnections).toBe(2);
    for (const ip of ["10.0.0.4", "10.0.0.9", "10.0.0.4", "10.0.0.9"]) a.releaseConnection(ip);
    expect(a.openConnections).toBe(0);
    expect(a.openFrom("10.0.0.4")).toBe(0);
    // Raised again: the full new limit is available.
    a.reconfigure(testConfig({ limits: { max_connections: 3 } }));
    for (let i = 0; i < 3; i++) expect(a.admitConnection("10.0.1.1")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.1.2")).toBe(Refusal.MAX_CONNECTIONS);
  });

  test("max_connections_per_ip lowered below an address's count refuses it until its connections leave", () => {
    const { stats, admission: a } = admission({ limits: { max_connections: 100, max_connections_per_ip: 5 } });
    for (let i = 0; i < 3; i++) expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    a.reconfigure(testConfig({ limits: { max_connections: 100, max_connections_per_ip: 1 } }));
    expect(a.openFrom("10.0.0.1")).toBe(3);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.PER_IP);
    expect(stats.total(Counter.refusedPerIp)).toBe(1);
    expect(a.admitConnection("10.0.0.2")).toBe(Refusal.NONE);
    expect(a.admitConnection("10.0.0.2")).toBe(Refusal.PER_IP);
    a.releaseConnection("10.0.0.1");
    a.releaseConnection("10.0.0.1");
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.PER_IP);
    a.releaseConnection("10.0.0.1");
    expect(a.openFrom("10.0.0.1")).toBe(0);
    expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    // 0 = no per-address limit but max_connections.
    a.reconfigure(testConfig({ limits: { max_connections: 100, max_connections_per_ip: 0 } }));
    for (let i = 0; i < 5; i++) expect(a.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    expect(a.openFrom("10.0.0.1")).toBe(6);
  });

  test("with a total shared by several threads, counts stay shared and a lowered limit applies to the sum", () => {
    const shared = new Int32Array(new SharedArrayBuffer(4));
    const config = testConfig({ limits: { max_connections: 10 } });
    const first = new Admission(config, Stats.create(), undefined, shared);
    const second = new Admission(config, Stats.create(), undefined, shared);
    for (let i = 0; i < 3; i++) expect(first.admitConnection("10.0.0.1")).toBe(Refusal.NONE);
    for (let i = 0; i < 2; i++) expect(second.admitConnection("10.0.0.2")).toBe(Refusal.NONE);
    const lowered = testConfig({ limits: { max_connections: 4 } });
    first.reconfigure(lowered);
    second.reconfigure(lowered);
    expect(Atomics.load(shared, 0)).toBe(5);
    expect(first.admitConnection("10.0.0.3")).toBe(Refusal.MAX_CONNECTIONS);
    expect(second.admitConnection("10.0.0.3")).toBe(Refusal.MAX_CONNECTIONS);
    expect(Atomics.load(shared, 0)).toBe(5);
    first.releaseConnection("10.0.0.1");
    first.releaseConnection("10.0.0.1");
    expect(second.admitConnection("10.0.0.3")).toBe(Refusal.NONE);
    expect(Atomics.load(shared, 0)).toBe(4);
    first.releaseConnection("10.0.0.1");
    first.releaseConnection("10.0.0.1"); // stray: ignored
    for (const ip of ["10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.3"]) second.releaseConnection(ip);
    expect(Atomics.load(shared, 0)).toBe(0);
    expect(first.openConnections + second.openConnections).toBe(0);
  });
});

describe("rate limit", () => {
  const rate = { enabled: true, requests: 3, window_s: 60, burst: 3 };

  test("the limiter and its spent tokens are kept when its settings are unchanged and others change", () => {
    const gauges: GaugeRegistry = new Map();
    const { admission: a } = admission({ rate_limit: rate }, gauges);
    for (let i = 0; i < 3; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    a.reconfigure(
      testConfig({
        rate_limit: { ...rate, headers: true },
        net: { deny: ["192.0.2.0/24"] },
        limits: { max_connections: 5 },
      }),
    );
    expect(a.takeToken("10.0.0.1", 0)).toBeGreaterThan(0);
    expect(a.rateLimitHeaders("10.0.0.1", 0).remaining).toBe(0);
    expect(a.rateLimitHeadersEnabled).toBe(true);
    expect(gauges.get("rateLimiter")!()).toEqual({ trackedIps: 1 });
  });

  test("a new limiter (every bucket full) when requests changes", () => {
    const gauges: GaugeRegistry = new Map();
    const { admission: a } = admission({ rate_limit: rate }, gauges);
    for (let i = 0; i < 3; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.takeToken("10.0.0.1", 0)).toBeGreaterThan(0);
    a.reconfigure(testConfig({ rate_limit: { ...rate, requests: 5, burst: 0 } }));
    expect(gauges.get("rateLimiter")!()).toEqual({ trackedIps: 0 });
    for (let i = 0; i < 5; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.takeToken("10.0.0.1", 0)).toBeGreaterThan(0);
    expect(a.rateLimitHeaders("10.0.0.1", 0).limit).toBe(5);
  });

  test("disabled: takeToken admits everything and rateLimitEnabled is false; enabled again limits", () => {
    const gauges: GaugeRegistry = new Map();
    const { stats, admission: a } = admission({ rate_limit: { ...rate, headers: true } }, gauges);
    for (let i = 0; i < 3; i++) a.takeToken("10.0.0.1", 0);
    expect(a.takeToken("10.0.0.1", 0)).toBeGreaterThan(0);
    a.reconfigure(testConfig({ rate_limit: { ...rate, enabled: false, headers: true } }));
    expect(a.rateLimitEnabled).toBe(false);
    expect(a.rateLimitHeadersEnabled).toBe(false);
    for (let i = 0; i < 10; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.rateLimitHeaders("10.0.0.1", 0)).toEqual({ limit: 0, remaining: 0, resetSeconds: 0 });
    expect(gauges.get("rateLimiter")!()).toEqual({ trackedIps: 0 });
    expect(stats.total(Counter.rateLimited)).toBe(1);
    a.reconfigure(testConfig({ rate_limit: rate }));
    expect(a.rateLimitEnabled).toBe(true);
    for (let i = 0; i < 3; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.takeToken("10.0.0.1", 0)).toBeGreaterThan(0);
    expect(stats.total(Counter.rateLimited)).toBe(2);
  });

  test("enabled from disabled at construction", () => {
    const gauges: GaugeRegistry = new Map();
    const { admission: a } = admission({}, gauges);
    expect(a.rateLimitEnabled).toBe(false);
    for (let i = 0; i < 10; i++) expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    a.reconfigure(testConfig({ rate_limit: { ...rate, requests: 2, burst: 0 } }));
    expect(a.rateLimitEnabled).toBe(true);
    expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.takeToken("10.0.0.1", 0)).toBe(0);
    expect(a.takeToken("10.0.0.1", 0)).toBeGreaterThan(0);
    expect(gauges.get("rateLimiter")!()).toEqual({ trackedIps: 1 });
  });
});

describe("custom protocol over a socket", () => {
  test("rate limiting turned on by reconfigure answers frames past the limit with status 5; turned off, it stops", async () => {
    const config = testConfig({ server: { protocol: "custom" } });
    const stats = Stats.create();
    const context = {
      config,
      stats,
      logger: Logger.silent(),
      gauges: new Map(),
      admission: new Admission(config, stats),
    };
    await using server = await startTcp(context, new InlineRunner());
    using client = await HpsClient.connect("127.0.0.1", server.port, { timeoutMs: 5000 });
    const pings = async (count: number) => {
      const statuses: number[] = [];
      for (let i = 0; i < count; i++) statuses.push((await client.request(Opcode.PING)).status);
      return statuses;
    };
    expect(await pings(5)).toEqual([0, 0, 0, 0, 0]);
    context.admission.reconfigure(
      testConfig({
        server: { protocol: "custom" },
        rate_limit: { enabled: true, requests: 3, window_s: 60, burst: 3 },
      }),
    );
    expect(await pings(5)).toEqual([0, 0, 0, FrameStatus.RATE_LIMITED, FrameStatus.RATE_LIMITED]);
    expect(stats.total(Counter.rateLimited)).toBe(2);
    context.admission.reconfigure(testConfig({ server: { protocol: "custom" } }));
    expect(await pings(5)).toEqual([0, 0, 0, 0, 0]);
    expect(stats.total(Counter.rateLimited)).toBe(2);
  });
});
