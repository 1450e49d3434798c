// Admission at the edge: allow/deny lists, connection limits, per-address rate limit and the client's address.
//
// One Admission per listener thread. It decides and counts refusals; the listener turns a refusal into its
// protocol's answer (HTTP 503/403/429, an error frame, a close). TCP (echo, custom) calls admitConnection at open
// and releaseConnection at close. HTTP: Bun.serve has no connection events, so a connection is a peer address and
// port (server.requestIP). When http.connection_limits is on, the first request seen from a new (address, port)
// calls admitConnection (allow/deny, max_connections, max_connections_per_ip), and releaseConnection follows when
// the listener forgets that connection (asked or told to close, gone during a long response, or idle past
// http.keepalive_timeout_s; see src/http/keepalive.ts). Every other HTTP request goes through admitRequest
// (allow/deny only, when the client address can differ from the one its connection was admitted under, or when
// connections are not counted) and the rate limiter (takeToken). Every refusal is counted here.
import { changedParts } from "../config/reload.ts";
import type { Config } from "../config/schema.ts";
import type { GaugeRegistry } from "../context.ts";
import { Counter, type Stats } from "../stats/stats.ts";
import { CidrList, parseAddressInto, unmapIpv4 } from "./cidr.ts";
import { forwardedClient } from "./client-address.ts";
import { ConnectionGate, GateResult, type ConnectionBudget } from "./connection-gate.ts";
import { RateLimiter, SharedRateLimiter, type AddressRateLimiter, type RateLimitState } from "./rate-limiter.ts";
import type { SharedAddressTable } from "./shared-address-table.ts";

/** Why a connection (or HTTP request) was refused; NONE = admitted. */
export const Refusal = { NONE: 0, DENIED: 1, MAX_CONNECTIONS: 2, PER_IP: 3 } as const;

/**
 * Decisions remembered per address (allow/deny, trusted proxy); they depend only on the address and the lists.
 * A cache hit (~Map.get) is several times cheaper than parsing the address. Cleared when full and by reconfigure.
 */
const DECISION_CACHE_ENTRIES = 4096;

/**
 * Where per-address state is kept beyond this instance: a fleet of instances (src/fleet) swaps in its rate limiter
 * and its connection budget here, and nothing else in the request path changes. Both decide without network waits.
 */
export interface AdmissionStores {
  /** The rate limiter to use, given the one this thread would use alone (the fleet's falls back to it). */
  rateLimiter(local: AddressRateLimiter, rate: Config["rate_limit"]): AddressRateLimiter;
  /** limits.max_connections_per_ip across instances; null leaves it to this instance. */
  readonly connections: ConnectionBudget | null;
}

/** Answer of rateLimitHeaders when rate limiting is off (nothing to report). */
const NO_RATE_LIMIT: Readonly<RateLimitState> = Object.freeze({ limit: 0, remaining: 0, resetSeconds: 0 });

export class Admission {
  /** rate_limit.enabled: takeToken refuses over the rate. Written only by reconfigure; read it per request or frame. */
  rateLimitEnabled: boolean;
  /** rate_limit.headers (and enabled): admitted HTTP responses carry RateLimit-* headers too. Written only by reconfigure. */
  rateLimitHeadersEnabled: boolean;
  /** net.proxy_protocol: TCP connections from trusted proxies start with a PROXY v1/v2 header. Written only by reconfigure. */
  proxyProtocol: boolean;
  private readonly stats: Stats;
  private readonly gate: ConnectionGate;
  private limiter: AddressRateLimiter | null;
  /** With several I/O threads: per-address state every thread shares (connections per address, rate limits). */
  private readonly sharedAddresses: SharedAddressTable | null;
  /** With a fleet: the stores shared by every instance. */
  private readonly stores: AdmissionStores | null;
  /** The configuration the limiter was made for; reconfigure keeps the limiter unless its part must be rebuilt. */
  private limiterConfig: Config;
  private allow: CidrList;
  private deny: CidrList;
  private trustedProxies: CidrList;
  private hasAccessLists: boolean;
  private readonly words = new Int32Array(4);
  private readonly allowedCache = new Map<string, boolean>();
  private readonly trustedCache = new Map<string, boolean>();

  /**
   * `gauges`: where the "rateLimiter" group { trackedIps } is registered (when given).
   * `sharedConnections`: with several I/O threads, the shared count that limits.max_connections applies to;
   * `sharedAddresses`: the table where they count connections per address and rate limits together.
   * `stores`: with a fleet (fleet.redis_url), its rate limiter and connection budget.
   */
  constructor(
    config: Config,
    stats: Stats,
    gauges?: GaugeRegistry,
    sharedConnections: Int32Array | null = null,
    sharedAddresses: SharedAddressTable | null = null,
    stores: AdmissionStores | null = null,
  ) {
    this.stats = stats;
    this.sharedAddresses = sharedAddresses;
    this.stores = stores;
    this.gate = new ConnectionGate(
      config.limits.max_connections,
      perIpLimit(config.limits),
      sharedConnections,
      sharedAddresses,
      stores?.connections ?? null,
    );
    const rate = config.rate_limit;
    this.limiterConfig = config;
    this.limiter = createLimiter(rate, sharedAddresses, stores);
    this.rateLimitEnabled = rate.enabled;
    this.rateLimitHeadersEnabled = rate.enabled && rate.headers;
    this.allow = new CidrList(config.net.allow);
    this.deny = new CidrList(config.net.deny);
    this.trustedProxies = new CidrList(config.net.trusted_proxies);
    this.hasAccessLists = this.allow.size > 0 || this.deny.size > 0;
    this.proxyProtocol = config.net.proxy_protocol;
    gauges?.set("rateLimiter", () => ({ trackedIps: this.trackedIps }));
  }

  /**
   * A reloaded configuration: every decision after this call follows `config`, while what is counted now stays.
   * Open connections stay counted and are released as usual; a limit lowered below the current count refuses new
   * connections until enough have left (nobody is disconnected). The rate limiter, with every address's tokens, is
   * kept unless a changed setting's reload rule rebuilds the "rate-limiter" part (src/config/schema.ts), in which
   * case it is replaced (every address starts with a full bucket) or dropped. net.proxy_protocol applies to connections opened after the call.
   * With several I/O threads, each thread's Admission must be reconfigured; the shared total is left as it is.
   * Throws (changing nothing) on a malformed CIDR, which a validated Config does not have.
   */
  reconfigure(config: Config): void {
    const net = config.net;
    // Built before anything changes, so a throw leaves the previous configuration whole.
    const allow = new CidrList(net.allow);
    const deny = new CidrList(net.deny);
    const trustedProxies = new CidrList(net.trusted_proxies);
    this.allow = allow;
    this.deny = deny;
    this.trustedProxies = trustedProxies;
    this.hasAccessLists = allow.size > 0 || deny.size > 0;
    this.allowedCache.clear();
    this.trustedCache.clear();
    this.proxyProtocol = net.proxy_protocol;
    this.gate.setLimits(config.limits.max_connections, perIpLimit(config.limits));
    const rate = config.rate_limit;
    if (changedParts(this.limiterConfig, config).has("rate-limiter")) {
      // Shared: the thread that created the table (the main thread, which commits first) clears it, once.
      if (this.sharedAddresses?.isCreator === true) this.sharedAddresses.clearRates();
      this.limiter = createLimiter(rate, this.sharedAddresses, this.stores);
    }
    this.limiterConfig = config;
    this.rateLimitEnabled = rate.enabled;
    this.rateLimitHeadersEnabled = rate.enabled && rate.headers;
  }

  /**
   * At connection open (TCP) or a new connection's first request (HTTP): deny/allow first, then the total
   * and per-address limits. Returns a Refusal; NONE means admitted and counted, and must be matched by one
   * releaseConnection(ip). A refusal is counted in stats (connectionsRefused + its own counter).
   */
  admitConnection(ip: string): number {
    if (this.hasAccessLists && !this.isAllowed(ip)) {
      this.stats.inc(Counter.connectionsRefused);
      this.stats.inc(Counter.refusedDenied);
      return Refusal.DENIED;
    }
    const result = this.gate.enter(ip);
    if (result === GateResult.ADMITTED) return Refusal.NONE;
    this.stats.inc(Counter.connectionsRefused);
    if (result === GateResult.MAX_CONNECTIONS) {
      this.stats.inc(Counter.refusedMaxConnections);
      return Refusal.MAX_CONNECTIONS;
    }
    this.stats.inc(Counter.refusedPerIp);
    return Refusal.PER_IP;
  }

  /**
   * Per request (HTTP), with no connection bookkeeping: net.deny / net.allow. Returns Refusal.NONE or
   * Refusal.DENIED; a refusal is counted like admitConnection's (connectionsRefused + refusedDenied).
   */
  admitRequest(ip: string): number {
    if (!this.hasAccessLists || this.isAllowed(ip)) return Refusal.NONE;
    this.stats.inc(Counter.connectionsRefused);
    this.stats.inc(Counter.refusedDenied);
    return Refusal.DENIED;
  }

  /** Ends what an admitted admitConnection(ip) started. */
  releaseConnection(ip: string): void {
    this.gate.leave(ip);
  }

  /**
   * Rate limiter: 0 = admitted; otherwise milliseconds (>= 1) until a token is available (counted as rate limited).
   * `nowMs` is any millisecond clock that never goes back, the same one for every call: pass the
   * performance.now() already read for the request's latency rather than reading a clock again (~40 ns here).
   */
  takeToken(ip: string, nowMs: number): number {
    const limiter = this.limiter;
    if (limiter === null) return 0;
    const waitMs = limiter.take(ip, nowMs);
    if (waitMs !== 0) this.stats.inc(Counter.rateLimited);
    return waitMs;
  }

  /**
   * Values for RateLimit-Limit / -Remaining / -Reset after this request's takeToken. The object is reused
   * by the next call: read it at once. All zero when rate limiting is off.
   */
  rateLimitHeaders(
    ip: string,
    nowMs: number,
  ): { readonly limit: number; readonly remaining: number; readonly resetSeconds: number } {
    return this.limiter === null ? NO_RATE_LIMIT : this.limiter.peek(ip, nowMs);
  }

  /**
   * The client's address: X-Forwarded-For (right-most untrusted hop) when the peer is in net.trusted_proxies,
   * else the peer. IPv4-mapped IPv6 ("::ffff:1.2.3.4") comes back as plain IPv4.
   */
  clientAddress(peerIp: string, forwardedFor: string | null): string {
    const peer = unmapIpv4(peerIp);
    if (forwardedFor === null || this.trustedProxies.size === 0 || !this.isTrustedProxy(peer)) return peer;
    return forwardedClient(peer, forwardedFor, this.trustedProxies);
  }

  /** net.deny / net.allow alone (deny first; an empty allow list allows everyone not denied). */
  isAllowed(ip: string): boolean {
    if (!this.hasAccessLists) return true;
    const cache = this.allowedCache;
    let allowed = cache.get(ip);
    if (allowed === undefined) {
      const isAddress = parseAddressInto(ip, this.words);
      if (isAddress && this.deny.containsWords(this.words)) allowed = false;
      else allowed = this.allow.size === 0 || (isAddress && this.allow.containsWords(this.words));
      if (cache.size >= DECISION_CACHE_ENTRIES) cache.clear();
      cache.set(ip, allowed);
    }
    return allowed;
  }

  /** True when `peerIp` is a trusted proxy that must send a PROXY header first (TCP, net.proxy_protocol). */
  expectsProxyHeader(peerIp: string): boolean {
    return this.proxyProtocol && this.isTrustedProxy(peerIp);
  }

  /** True when `peerIp` is in net.trusted_proxies. */
  isTrustedProxy(peerIp: string): boolean {
    if (this.trustedProxies.size === 0) return false;
    const cache = this.trustedCache;
    let trusted = cache.get(peerIp);
    if (trusted === undefined) {
      trusted = this.trustedProxies.contains(peerIp);
      if (cache.size >= DECISION_CACHE_ENTRIES) cache.clear();
      cache.set(peerIp, trusted);
    }
    return trusted;
  }

  /** Connections admitted and not yet released. */
  get openConnections(): number {
    return this.gate.openTotal;
  }

  /** Open connections from one address. */
  openFrom(ip: string): number {
    return this.gate.openFrom(ip);
  }

  /** Addresses the rate limiter remembers now (0 when it is off). */
  get trackedIps(): number {
    return this.limiter === null ? 0 : this.limiter.size;
  }
}

type RateLimitSettings = Config["rate_limit"];

/** limits.max_connections_per_ip, where 0 (no per-address limit) means max_connections. */
function perIpLimit(limits: Config["limits"]): number {
  return limits.max_connections_per_ip === 0 ? limits.max_connections : limits.max_connections_per_ip;
}

function createLimiter(
  rate: RateLimitSettings,
  shared: SharedAddressTable | null,
  stores: AdmissionStores | null,
): AddressRateLimiter | null {
  if (!rate.enabled) return null;
  const local =
    shared !== null
      ? new SharedRateLimiter(shared, rate.requests, rate.window_s, rate.burst)
      : new RateLimiter(rate.requests, rate.window_s, rate.burst, rate.max_tracked_ips);
  return stores === null ? local : stores.rateLimiter(local, rate);
}

/**
 * Addresses the table shared by I/O threads holds: every address that may have a connection open plus
 * rate_limit.max_tracked_ips, at most SHARED_ADDRESSES_MAX (about 80 MiB of shared memory).
 */
export const SHARED_ADDRESSES_MAX = 1 << 20;
export function sharedAddressEntries(config: Config): number {
  return Math.min(SHARED_ADDRESSES_MAX, config.limits.max_connections + config.rate_limit.max_tracked_ips);
}

/** Seconds for a Retry-After header from takeToken's milliseconds (at least 1). */
export function retryAfterSeconds(waitMs: number): number {
  return waitMs <= 1000 ? 1 : Math.ceil(waitMs / 1000);
}
