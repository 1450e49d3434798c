// Upstream statistics in shared memory: per (upstream, server) counters, a response-time histogram and gauges, which
// every I/O thread writes into its own shard (as src/stats/stats.ts does) and any thread can read.
//
// Slots are named in the buffer itself (upstream and server address), so threads agree on them without messages: a
// thread that meets a new server (at start or after a reload) registers it under a lock that only registration takes.

/** Upper bounds of hps_upstream_response_seconds buckets, in seconds (+Inf is the count). */
export const RESPONSE_BUCKETS_SECONDS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
] as const;
const RESPONSE_BUCKETS_MICROS = RESPONSE_BUCKETS_SECONDS.map((seconds) => Math.round(seconds * 1e6));

/** Field offsets within a slot. Counters only grow; gauges say so. */
export const Field = {
  /** Responses from the server by status class. */
  responses1xx: 0,
  responses2xx: 1,
  responses3xx: 2,
  responses4xx: 3,
  responses5xx: 4,
  /** Answers hps made itself after the server failed (502, 504) or when no server was available (503, slot "-"). */
  answered502: 5,
  answered503: 6,
  answered504: 7,
  /** Connection attempts that failed (refused, unreachable) or timed out (connect_timeout_s). */
  connectFailures: 8,
  connectTimeouts: 9,
  /** Connections lost before the response was complete (closed, reset). */
  lost: 10,
  /** read_timeout_s passed waiting for the server. */
  readTimeouts: 11,
  /** Bytes that were not an HTTP response. */
  badResponses: 12,
  /** Requests (or TCP connections) sent to another server after this one failed. */
  retries: 13,
  /** Times passive health ejected the server. */
  ejections: 14,
  /** Requests replayed on a fresh connection after a pooled one turned out closed by the server. */
  staleRetries: 15,
  /** TCP proxy: connections relayed to this server, and bytes each way. */
  tcpConnections: 16,
  bytesToServer: 17,
  bytesFromServer: 18,
  /** Sum of response times (request sent to response complete), microseconds; the count is the last bucket. */
  responseMicrosSum: 19,
  /** gauge: requests (HTTP) or connections (TCP) being served by the server now. */
  inFlight: 20,
  /** gauge: connections open to the server (idle + busy + connecting). */
  connections: 21,
  /** gauge: idle pooled connections. */
  idle: 22,
  /** gauge: 0 up, 1 ejected by failures, 2 failing active health checks (the thread's view; see HealthState). */
  health: 23,
  /** gauge: 1 while the thread has this server in a group. */
  present: 24,
  /** Histogram buckets, cumulative only when read; RESPONSE_BUCKETS_SECONDS.length + 1 slots (the last is +Inf). */
  bucket0: 25,
} as const;
const FIELDS = Field.bucket0 + RESPONSE_BUCKETS_SECONDS.length + 1;
const GAUGES: readonly number[] = [Field.inFlight, Field.connections, Field.idle, Field.health, Field.present];

/** Server name of the slot that counts an upstream's answers when no server was available. */
export const NO_SERVER = "-";

const MAX_SLOTS = 256;
const NAME_BYTES = 256;
const HEADER_INT32S = 4; // [0] lock, [1] slots used, [2] shards taken, [3] shards in the buffer
const NAMES_OFFSET = HEADER_INT32S * 4;
const SHARDS_OFFSET = NAMES_OFFSET + MAX_SLOTS * NAME_BYTES; // a multiple of 8
const SHARD_FLOATS = MAX_SLOTS * FIELDS;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One (upstream, server) pair's numbers, summed over the threads. */
export interface ServerNumbers {
  readonly upstream: string;
  readonly server: string;
  readonly counters: Record<keyof typeof Field, number>;
  /** Counts per bucket of RESPONSE_BUCKETS_SECONDS (not cumulative), +Inf last. */
  readonly buckets: number[];
  /** Worst health state any thread holds for the server (0 up). */
  readonly health: number;
}

export class UpstreamStats {
  readonly buffer: SharedArrayBuffer;
  private readonly header: Int32Array;
  private readonly names: Uint8Array;
  /** This thread's shard. */
  private readonly shard: Float64Array;
  private readonly slots = new Map<string, number>();
  private isFullReported = false;
  /** Called before every read: this thread's groups write their gauges (other threads publish on a timer). */
  private readonly refreshers = new Set<() => void>();

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.header = new Int32Array(buffer, 0, HEADER_INT32S);
    this.names = new Uint8Array(buffer, NAMES_OFFSET, MAX_SLOTS * NAME_BYTES);
    // Out of shards (a thread more than the buffer was made for): share the last one, as src/stats/stats.ts does.
    const index = Math.min(Atomics.add(this.header, 2, 1), this.shardCount() - 1);
    this.shard = new Float64Array(buffer, SHARDS_OFFSET + index * SHARD_FLOATS * 8, SHARD_FLOATS);
  }

  /** New statistics with a shard for each of `threads` writing threads (server.io_threads). */
  static create(threads = 1): UpstreamStats {
    const buffer = new SharedArrayBuffer(SHARDS_OFFSET + threads * SHARD_FLOATS * 8);
    new Int32Array(buffer, 0, HEADER_INT32S)[3] = threads;
    return new UpstreamStats(buffer);
  }

  private shardCount(): number {
    return Atomics.load(this.header, 3);
  }

  /** Joins statistics created in another thread; this thread gets a shard of its own. */
  static attach(buffer: SharedArrayBuffer): UpstreamStats {
    return new UpstreamStats(buffer);
  }

  /**
   * The slot of (upstream, server), registered on first use; its fields start at the returned offset in this
   * thread's shard. -1 when every slot is taken (nothing is counted for it; `onFull` is called once).
   */
  slotOf(upstream: string, server: string, onFull?: () => void): number {
    const key = `${upstream}\n${server}`;
    const known = this.slots.get(key);
    if (known !== undefined) return known;
    const slot = this.register(key);
    if (slot < 0) {
      if (!this.isFullReported) onFull?.();
      this.isFullReported = true;
      return -1;
    }
    const offset = slot * FIELDS;
    this.slots.set(key, offset);
    return offset;
  }

  add(offset: number, field: number, amount: number): void {
    if (offset >= 0) this.shard[offset + field]! += amount;
  }

  set(offset: number, field: number, value: number): void {
    if (offset >= 0) this.shard[offset + field] = value;
  }

  /** A response (or an answer hps made) with this status, after `micros` (negative: not timed). */
  response(offset: number, status: number, micros: number): void {
    if (offset < 0) return;
    const shard = this.shard;
    if (status < 200) shard[offset + Field.responses1xx]! += 1;
    else if (status < 300) shard[offset + Field.responses2xx]! += 1;
    else if (status < 400) shard[offset + Field.responses3xx]! += 1;
    else if (status < 500) shard[offset + Field.responses4xx]! += 1;
    else shard[offset + Field.responses5xx]! += 1;
    if (micros >= 0) this.timed(offset, micros);
  }

  /** One response time into the histogram. */
  timed(offset: number, micros: number): void {
    if (offset < 0) return;
    const shard = this.shard;
    shard[offset + Field.responseMicrosSum]! += micros;
    let bucket = 0;
    while (bucket < RESPONSE_BUCKETS_MICROS.length && micros > RESPONSE_BUCKETS_MICROS[bucket]!) bucket++;
    shard[offset + Field.bucket0 + bucket]! += 1;
  }

  /** Runs `refresh` before every read on this thread; returns how to stop it. */
  onRead(refresh: () => void): () => void {
    this.refreshers.add(refresh);
    return () => this.refreshers.delete(refresh);
  }

  /** Every registered pair's numbers summed over the threads (gauges of threads that dropped the server excluded). */
  read(): ServerNumbers[] {
    for (const refresh of this.refreshers) refresh();
    const used = Math.min(Atomics.load(this.header, 1), MAX_SLOTS);
    const shards = Math.min(Atomics.load(this.header, 2), this.shardCount());
    const all = new Float64Array(this.buffer, SHARDS_OFFSET, this.shardCount() * SHARD_FLOATS);
    const result: ServerNumbers[] = [];
    const fieldNames = Object.keys(Field) as (keyof typeof Field)[];
    for (let slot = 0; slot < used; slot++) {
      const [upstream = "", server = ""] = this.nameOf(slot).split("\n");
      const totals = new Float64Array(FIELDS);
      let health = 0;
      for (let s = 0; s < shards; s++) {
        const base = s * SHARD_FLOATS + slot * FIELDS;
        const present = all[base + Field.present]! > 0;
        for (let f = 0; f < FIELDS; f++) {
          if (GAUGES.includes(f) && !present) continue;
          totals[f]! += all[base + f]!;
        }
        if (present) health = Math.max(health, all[base + Field.health]!);
      }
      const counters = {} as Record<keyof typeof Field, number>;
      for (const name of fieldNames) counters[name] = totals[Field[name]]!;
      const buckets = Array.from(totals.subarray(Field.bucket0, FIELDS));
      result.push({ upstream, server, counters, buckets, health });
    }
    return result;
  }

  private nameOf(slot: number): string {
    const bytes = this.names.subarray(slot * NAME_BYTES, (slot + 1) * NAME_BYTES);
    const length = bytes.indexOf(0);
    return decoder.decode(bytes.slice(0, length < 0 ? NAME_BYTES : length));
  }

  /** Finds or appends `key` in the shared directory, under the registration lock. */
  private register(key: string): number {
    const encoded = encoder.encode(key).subarray(0, NAME_BYTES - 1);
    const header = this.header;
    while (Atomics.compareExchange(header, 0, 0, 1) !== 0) Atomics.wait(header, 0, 1, 1);
    try {
      const used = Atomics.load(header, 1);
      for (let slot = 0; slot < used; slot++) {
        const start = slot * NAME_BYTES;
        if (this.names[start + encoded.length] !== 0) continue;
        let same = true;
        for (let i = 0; i < encoded.length && same; i++) same = this.names[start + i] === encoded[i];
        if (same) return slot;
      }
      if (used >= MAX_SLOTS) return -1;
      this.names.set(encoded, used * NAME_BYTES);
      Atomics.store(header, 1, used + 1);
      return used;
    } finally {
      Atomics.store(header, 0, 0);
      Atomics.notify(header, 0, 1);
    }
  }
}
