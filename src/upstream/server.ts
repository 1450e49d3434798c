// One server of an upstream group: its address and weight, what is in flight to it, its health.
import { parseHostPort } from "../config/host-port.ts";
import { ServerHealth } from "./health.ts";
import type { ServerSettings, UpstreamSettings } from "./types.ts";

/** Weight of the newest response time in the moving average. */
const RESPONSE_AVERAGE_WEIGHT = 0.2;

export class UpstreamServer {
  /** As configured ("127.0.0.1:9001"): the server's name in stats and logs. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  weight: number;
  /** 0 = no limit. */
  maxConnections: number;
  readonly health: ServerHealth;
  /** Requests (HTTP) or client connections (TCP) being served by this server now. */
  inFlight = 0;
  /** Connections open to the server now: idle in the pool, busy, or still connecting. */
  connections = 0;
  /** Idle pooled connections (kept by the pool, read here for max_connections). */
  idleConnections = 0;
  /** Smooth weighted round robin's running weight (see balancer.ts). */
  currentWeight = 0;
  /** Moving average of HTTP response times (random_two breaks ties of in-flight load with it), microseconds. */
  responseMicrosAverage = 0;
  /** This server's seed for rendezvous hashing: from its address, so it never depends on the other servers. */
  readonly hashSeed: number;
  /** A reload removed it from its group: it gets nothing new; its connections close as their requests finish. */
  isRemoved = false;

  constructor(settings: ServerSettings, group: UpstreamSettings) {
    const parsed = parseHostPort(settings.address);
    if (typeof parsed === "string") throw new Error(`upstream ${group.name}: server ${settings.address} ${parsed}`);
    this.address = settings.address;
    this.host = parsed.host;
    this.port = parsed.port;
    this.weight = settings.weight;
    this.maxConnections = settings.max_connections;
    this.health = new ServerHealth(group.max_fails, group.fail_timeout_s);
    this.hashSeed = hashString(settings.address, 0x5bd1e995);
  }

  /** Folds one response time into responseMicrosAverage (exponentially weighted, recent responses count most). */
  responded(micros: number): void {
    this.responseMicrosAverage += (micros - this.responseMicrosAverage) * RESPONSE_AVERAGE_WEIGHT;
  }

  /** Whether a new request (or TCP connection) may go to this server now. */
  isAvailable(nowMs: number): boolean {
    if (this.isRemoved || !this.health.isUp(nowMs)) return false;
    const max = this.maxConnections;
    return max === 0 || this.connections < max || this.idleConnections > 0;
  }
}

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32: a well-mixed 32-bit hash of a short string. */
export function hashString(text: string, seed = 0): number {
  let hash = 0x811c9dc5 ^ seed;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return fmix32(hash);
}

/** murmur3's 32-bit finalizer: every input bit affects every output bit. */
export function fmix32(value: number): number {
  let h = value;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
