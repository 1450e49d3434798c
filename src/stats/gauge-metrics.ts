// The metric each registered gauge (pool, arena, HTTP cache, fleet, ...) is exported as, with its type and help.

export interface GaugeMetric {
  group: string;
  key: string;
  name: string;
  type: "counter" | "gauge";
  help: string;
}

/** The "fleet" group (src/fleet/fleet.ts): exported only when it is there (fleet.redis_url set). */
export const FLEET_METRICS: readonly GaugeMetric[] = (
  [
    {
      key: "redisUp",
      name: "hps_fleet_redis_up",
      type: "gauge",
      help: "1 while every I/O thread's link to Redis answers.",
    },
    {
      key: "redisErrors",
      name: "hps_fleet_redis_errors_total",
      type: "counter",
      help: "Calls to Redis and connection attempts that failed or timed out (fleet.redis_timeout_ms).",
    },
    {
      key: "outages",
      name: "hps_fleet_redis_outages_total",
      type: "counter",
      help: "Times Redis became unavailable (each logged once; fleet.on_redis_down applied meanwhile).",
    },
    { key: "redisCalls", name: "hps_fleet_redis_calls_total", type: "counter", help: "Script calls sent to Redis." },
    {
      key: "redisRoundTripSeconds",
      name: "hps_fleet_redis_round_trip_seconds",
      type: "gauge",
      help: "Smoothed round trip of a call to Redis (the slowest I/O thread's).",
    },
    {
      key: "creditAdmitted",
      name: "hps_fleet_credit_admitted_total",
      type: "counter",
      help: "Requests and connections admitted before the fleet granted them (charged to the fleet afterwards).",
    },
    {
      key: "fallbackDecisions",
      name: "hps_fleet_fallback_decisions_total",
      type: "counter",
      help: "Rate and connection decisions made by fleet.on_redis_down while Redis was unavailable.",
    },
    {
      key: "rateAddresses",
      name: "hps_fleet_rate_addresses",
      type: "gauge",
      help: "Client addresses this instance holds rate-limit leases for.",
    },
    {
      key: "leasedTokens",
      name: "hps_fleet_leased_tokens",
      type: "gauge",
      help: "Rate-limit tokens leased from the fleet and not yet spent.",
    },
    {
      key: "slotAddresses",
      name: "hps_fleet_slot_addresses",
      type: "gauge",
      help: "Client addresses this instance holds connection slots for.",
    },
    {
      key: "leasedSlots",
      name: "hps_fleet_leased_slots",
      type: "gauge",
      help: "Connection slots recorded for this instance in the fleet (open connections and spares).",
    },
    {
      key: "holders",
      name: "hps_fleet_holders",
      type: "gauge",
      help: "Lease holders alive in the fleet (each I/O thread of each instance).",
    },
    {
      key: "repairedKeys",
      name: "hps_fleet_repaired_keys_total",
      type: "counter",
      help: "Keys under fleet.key_prefix that held a wrong type or value and were replaced.",
    },
  ] satisfies Array<Omit<GaugeMetric, "group">>
).map((metric) => ({ group: "fleet", ...metric }));

/** The gauge groups other modules register, with the metric each key becomes. Missing groups read as 0 so names stay stable. */
export const GAUGE_METRICS: ReadonlyArray<{
  group: string;
  key: string;
  name: string;
  type: "counter" | "gauge";
  help: string;
}> = [
  {
    group: "pool",
    key: "queued",
    name: "hps_pool_queued_tasks",
    type: "gauge",
    help: "Tasks accepted by the worker pool and not yet started by a worker (bounded by pool.max_queue).",
  },
  {
    group: "pool",
    key: "running",
    name: "hps_pool_running_tasks",
    type: "gauge",
    help: "Tasks running on pool workers now.",
  },
  {
    group: "pool",
    key: "busyWorkers",
    name: "hps_pool_busy_workers",
    type: "gauge",
    help: "Pool workers with at least one task.",
  },
  { group: "pool", key: "workers", name: "hps_pool_workers", type: "gauge", help: "Pool worker threads alive." },
  {
    group: "pool",
    key: "lostWakeups",
    name: "hps_pool_lost_wakeups_total",
    type: "counter",
    help: "Pool workers found asleep with tasks in their ring and woken by the watchdog (0 in normal operation).",
  },
  {
    group: "pool",
    key: "spins",
    name: "hps_pool_spins_total",
    type: "counter",
    help: "Times a pool worker polled its empty ring for a next task before sleeping (pool.spin_us).",
  },
  {
    group: "pool",
    key: "spinCatches",
    name: "hps_pool_spin_catches_total",
    type: "counter",
    help: "Polls of an empty ring that found a task, saving a wake-up.",
  },
  {
    group: "arena",
    key: "bytesInUse",
    name: "hps_arena_bytes_in_use",
    type: "gauge",
    help: "Bytes of the shared-memory arena allocated now.",
  },
  {
    group: "arena",
    key: "peakBytes",
    name: "hps_arena_peak_bytes",
    type: "gauge",
    help: "Most arena bytes allocated at once.",
  },
  {
    group: "arena",
    key: "capacityBytes",
    name: "hps_arena_capacity_bytes",
    type: "gauge",
    help: "Size of the shared-memory arena.",
  },
  {
    group: "arena",
    key: "allocations",
    name: "hps_arena_allocations_total",
    type: "counter",
    help: "Arena allocations.",
  },
  { group: "arena", key: "frees", name: "hps_arena_frees_total", type: "counter", help: "Arena frees." },
  {
    group: "arena",
    key: "failures",
    name: "hps_arena_failures_total",
    type: "counter",
    help: "Arena allocations that failed because it was full.",
  },
  {
    group: "arena",
    key: "heapBytesInUse",
    name: "hps_arena_heap_bytes_in_use",
    type: "gauge",
    help: "Bytes of payloads over 64 KiB held in ordinary memory now.",
  },
  {
    group: "arena",
    key: "heapBudgetBytes",
    name: "hps_arena_heap_budget_bytes",
    type: "gauge",
    help: "Budget for payloads over 64 KiB held in ordinary memory (memory.arena_bytes).",
  },
  {
    group: "arena",
    key: "heapFailures",
    name: "hps_arena_heap_failures_total",
    type: "counter",
    help: "Payloads over 64 KiB refused because their budget was in use.",
  },
  {
    group: "rateLimiter",
    key: "trackedIps",
    name: "hps_rate_limiter_tracked_ips",
    type: "gauge",
    help: "Client addresses the rate limiter remembers.",
  },
  {
    group: "httpCache",
    key: "entries",
    name: "hps_http_cache_entries",
    type: "gauge",
    help: "Files in the in-memory HTTP response cache.",
  },
  {
    group: "httpCache",
    key: "bytes",
    name: "hps_http_cache_bytes",
    type: "gauge",
    help: "Bytes of file content in the HTTP response cache.",
  },
  {
    group: "httpCache",
    key: "hits",
    name: "hps_http_cache_hits_total",
    type: "counter",
    help: "HTTP response cache hits.",
  },
  {
    group: "httpCache",
    key: "misses",
    name: "hps_http_cache_misses_total",
    type: "counter",
    help: "HTTP response cache misses.",
  },
  {
    group: "httpCache",
    key: "fileBackedEntries",
    name: "hps_http_cache_file_backed_entries",
    type: "gauge",
    help: "Files too large for memory whose metadata (path, headers, 304) is cached.",
  },
];
